"""What a payment costs in AWS, from what the aws-local run counted, at the prices in aws_prices.json.

Two parts:
- `dynamodb_call_units`: the request units one DynamoDB call consumes, computed from the items it
  wrote or read (DynamoDB's own size rules: attribute names + values, 1 KB per write unit, 4 KB per
  read unit, transactions twice, one write per global secondary index an item is in). A write that
  changes an item whose size the request does not carry (UpdateItem, DeleteItem, a transaction's
  Update/Delete/ConditionCheck) is sized from the item last written under that key in this run,
  or from its own values when larger; at least 1 KB, so exact for items under 1 KB.
- `bill`: USD per million payments from per-payment counts: DynamoDB units, Lambda invocations and
  GB-seconds (measured handler time, memory from infra/config.json), MSK bytes in and out, KMS and
  API Gateway requests.
"""
from __future__ import annotations

import base64
import json
import math
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PRICES_FILE = Path(__file__).with_name("aws_prices.json")
INFRA_CONFIG = ROOT / "infra" / "config.json"
GSI_KEYS = ("gsi1pk", "gsi1sk")  # chalicelib.config.STATUS_INDEX_PK/SK: the table's one GSI (projection ALL)
KB = 1024
GB = 1024 ** 3


# -- item sizes (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html)
def _number_size(text: str) -> int:
    """A number's stored size: about one byte per two significant digits, plus one."""
    digits = text.lstrip("-").replace(".", "").lstrip("0").rstrip("0") or "0"
    return min(21, math.ceil(len(digits) / 2) + 1)


def _binary_len(v: Any) -> int:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return len(v)
    return len(base64.b64decode(v))  # the wire form, should a caller hand one over


def value_size(v: dict[str, Any]) -> int:
    """Bytes of one typed attribute value ({"S": ...}, {"N": ...}, {"M": ...}, ...)."""
    (kind, x), = v.items()
    if kind == "S":
        return len(x.encode())
    if kind == "N":
        return _number_size(x)
    if kind == "B":
        return _binary_len(x)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in x)
    if kind == "NS":
        return sum(_number_size(s) for s in x)
    if kind == "BS":
        return sum(_binary_len(b) for b in x)
    if kind == "M":
        return 3 + sum(len(k.encode()) + value_size(e) + 1 for k, e in x.items())
    if kind == "L":
        return 3 + sum(value_size(e) + 1 for e in x)
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def item_size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB bills it: every attribute's name and value."""
    return sum(len(name.encode()) + value_size(v) for name, v in item.items())


def write_units(size: int, transactional: bool = False) -> int:
    return max(1, math.ceil(size / KB)) * (2 if transactional else 1)


def read_units(size: int, consistent: bool, transactional: bool = False) -> float:
    per_4kb = 2.0 if transactional else (1.0 if consistent else 0.5)
    return max(1, math.ceil(size / (4 * KB))) * per_4kb


class _Sizes:
    """The last size written under each key in this run (for updates and deletes, which carry none)."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, str], tuple[int, bool]] = {}  # key -> (bytes, in the GSI?)
        self.lock = threading.Lock()

    @staticmethod
    def key(k: dict[str, Any]) -> tuple[str, str]:
        return (json.dumps(k.get("pk"), sort_keys=True), json.dumps(k.get("sk"), sort_keys=True))


SIZES = _Sizes()


def item_kind(params: dict[str, Any]) -> str | None:
    """The kind of item a single-item call or query touches, after chalicelib/adapters/aws/dynamodb_layout.py:
    a platform item by its partition prefix (`_outbox`, `_proc`, `_control`...), a payment's by its sort
    key (`payment`, `tl`, `list`...), another tenant item by its partition's second part (`cus`, `idem`...)."""
    key = params.get("Item") or params.get("Key")
    if key is None:
        values = params.get("ExpressionAttributeValues") or {}
        pk = (values.get(":pk") or values.get(":g") or {}).get("S")
        if pk is None:
            return None
        return pk.split("#")[0] if pk.startswith("_") else "query " + (pk.split("#")[1] if "#" in pk else pk)
    pk, sk = (key.get("pk") or {}).get("S", ""), (key.get("sk") or {}).get("S", "")
    parts = pk.split("#")
    if pk.startswith("_"):
        return parts[0]
    second = parts[1] if len(parts) > 1 else ""
    return sk.split("#")[0] if second.startswith("pay_") or not second else second


def item_kinds(op: str, params: dict[str, Any]) -> list[str]:
    """"<op> <kind>" for a call, or for each item a transaction or batch write carries."""
    if op == "TransactWriteItems":
        return [f"{op} {kind} {item_kind(body)}" for entry in params.get("TransactItems", [])
                for kind, body in entry.items()]
    if op == "BatchWriteItem":
        return [f"{op} {item_kind(r.get('PutRequest') or r.get('DeleteRequest') or {})}"
                for requests in params.get("RequestItems", {}).values() for r in requests]
    kind = item_kind(params)
    return [f"{op} {kind}"] if kind else []


def _put(item: dict[str, Any], transactional: bool) -> dict[str, float]:
    size = item_size(item)
    indexed = all(k in item for k in GSI_KEYS)
    with SIZES.lock:
        SIZES.by_key[SIZES.key(item)] = (size, indexed)
    return {"write": write_units(size, transactional), "gsi_write": write_units(size) if indexed else 0,
            "written_bytes": size}


def _change(key: dict[str, Any], values: dict[str, Any] | None, transactional: bool, delete: bool = False,
            check: bool = False) -> dict[str, float]:
    """An update, delete or condition check of the item at `key`, sized from what we know of it."""
    with SIZES.lock:
        known, indexed = SIZES.by_key.get(SIZES.key(key), (0, False))
        if delete:
            SIZES.by_key.pop(SIZES.key(key), None)
    own = item_size(key) + sum(value_size(v) for v in (values or {}).values())
    size = max(known, own)
    if not delete and not check:
        with SIZES.lock:
            SIZES.by_key[SIZES.key(key)] = (size, indexed)
    return {"write": write_units(size, transactional), "gsi_write": write_units(size) if indexed and not check else 0,
            "written_bytes": 0 if check else size}


def _add(total: dict[str, float], part: dict[str, float]) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0) + v


def dynamodb_call_units(op: str, params: dict[str, Any], parsed: dict[str, Any]) -> dict[str, float]:
    """Request units (and item bytes) of one DynamoDB call: `params` as the caller gave them, `parsed`
    the answer (items read are sized from it). Streams and table admin calls cost none here."""
    out: dict[str, float] = {}
    if op == "PutItem":
        _add(out, _put(params["Item"], False))
    elif op in ("UpdateItem", "DeleteItem"):
        _add(out, _change(params["Key"], params.get("ExpressionAttributeValues"), False, delete=op == "DeleteItem"))
    elif op == "TransactWriteItems":
        for entry in params["TransactItems"]:
            (kind, body), = entry.items()
            if kind == "Put":
                _add(out, _put(body["Item"], True))
            else:
                _add(out, _change(body["Key"], body.get("ExpressionAttributeValues"), True,
                                  delete=kind == "Delete", check=kind == "ConditionCheck"))
    elif op == "BatchWriteItem":
        for requests in params["RequestItems"].values():
            for r in requests:
                if "PutRequest" in r:
                    _add(out, _put(r["PutRequest"]["Item"], False))
                else:
                    _add(out, _change(r["DeleteRequest"]["Key"], None, False, delete=True))
    elif op == "GetItem":
        size = item_size(parsed.get("Item") or {})
        _add(out, {"read": read_units(size, bool(params.get("ConsistentRead"))), "read_bytes": size})
    elif op in ("Query", "Scan"):  # billed on the page's items together, rounded up once
        size = sum(item_size(i) for i in parsed.get("Items", []))
        _add(out, {"read": read_units(size, bool(params.get("ConsistentRead"))), "read_bytes": size})
    elif op == "BatchGetItem":  # each item rounded up on its own
        consistent = {t: bool(r.get("ConsistentRead")) for t, r in params["RequestItems"].items()}
        for table, items in parsed.get("Responses", {}).items():
            for i in items:
                size = item_size(i)
                _add(out, {"read": read_units(size, consistent.get(table, False)), "read_bytes": size})
    elif op == "TransactGetItems":
        for i in parsed.get("Responses", []):
            size = item_size(i.get("Item") or {})
            _add(out, {"read": read_units(size, True, transactional=True), "read_bytes": size})
    return out


# -- the bill ---------------------------------------------------------------------------------
def load_prices(path: Path = PRICES_FILE) -> dict[str, Any]:
    return json.loads(path.read_text())


def lambda_memory_mb(path: Path = INFRA_CONFIG) -> int:
    """The memory every function is deployed with (infra/stacks/lambdas.py reads the same key)."""
    return int(json.loads(path.read_text())["lambda"]["memory_mb"])


def lambda_use(stages: dict[str, dict[str, Any]], n: int, api_ms_per_payment: float | None) -> dict[str, Any]:
    """Invocations and billed GB-seconds per payment: each stage's measured batches (records ÷ mean
    batch) and handler time per invocation, rounded up to the ms, plus one API invocation per payment."""
    functions: dict[str, dict[str, float]] = {}
    for name, s in stages.items():
        if not s.get("records"):
            continue
        invocations = s["records"] / max(s.get("mean_batch") or 1, 1e-9)
        ms_each = s["processing_ms_per_record"] * s["records"] / invocations
        functions[name] = {"invocations": invocations / n, "billed_ms_each": math.ceil(ms_each)}
    if api_ms_per_payment is not None:
        functions["api"] = {"invocations": 1.0, "billed_ms_each": math.ceil(api_ms_per_payment)}
    return functions


def bill(per_payment: dict[str, Any], prices: dict[str, Any] | None = None, memory_mb: int | None = None
         ) -> dict[str, Any]:
    """USD per million payments, by service, from per-payment counts:
    dynamodb {write, read, gsi_write} request units; lambda {function: {invocations, billed_ms_each}};
    msk {bytes_in, bytes_out}; kms_requests; api_requests."""
    p = prices or load_prices()
    mem_gb = (memory_mb or lambda_memory_mb()) / 1024
    million = 1_000_000
    d = per_payment.get("dynamodb") or {}
    ddb = p["dynamodb_on_demand"]
    dynamodb = ((d.get("write", 0) + d.get("gsi_write", 0)) * ddb["write_request_unit_per_million"]
                + d.get("read", 0) * ddb["read_request_unit_per_million"])  # units per payment x $/M units
    lam = p["lambda_arm64"]
    fns = per_payment.get("lambda") or {}
    invocations = sum(f["invocations"] for f in fns.values())
    gb_s = sum(f["invocations"] * f["billed_ms_each"] / 1000 * mem_gb for f in fns.values())
    lambda_usd = invocations * lam["request_per_million"] + gb_s * million * lam["gb_second"]
    m = per_payment.get("msk") or {}
    msk = p["msk_serverless"]
    msk_usd = (m.get("bytes_in", 0) * msk["data_in_per_gb"] + m.get("bytes_out", 0) * msk["data_out_per_gb"]) \
        * million / GB
    kms_usd = per_payment.get("kms_requests", 0) * million / 10_000 * p["kms"]["request_per_10k"]
    api_usd = per_payment.get("api_requests", 0) * p["api_gateway_rest"]["request_per_million"]
    lines = {"dynamodb": dynamodb, "lambda": lambda_usd, "msk": msk_usd, "kms": kms_usd, "api_gateway": api_usd}
    return {"total": round(sum(lines.values()), 2), **{k: round(v, 2) for k, v in lines.items()},
            "inputs_per_payment": {"dynamodb_write_units": d.get("write", 0), "dynamodb_gsi_write_units":
                                   d.get("gsi_write", 0), "dynamodb_read_units": d.get("read", 0),
                                   "lambda_invocations": round(invocations, 3), "lambda_gb_s": round(gb_s, 6),
                                   "msk_bytes_in": m.get("bytes_in", 0), "msk_bytes_out": m.get("bytes_out", 0),
                                   "kms_requests": per_payment.get("kms_requests", 0),
                                   "api_requests": per_payment.get("api_requests", 0)},
            "lambda_memory_mb": round(mem_gb * 1024), "region": p["region"], "prices_read_on": p["read_on"],
            "prices": str(PRICES_FILE.relative_to(ROOT))}

