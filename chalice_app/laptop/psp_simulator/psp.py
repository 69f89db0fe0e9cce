"""The simulated PSPs: charges, idempotency keys, test cards and network faults (no HTTP here).

Every PSP name is a separate PSP with its own charges and idempotency keys. Behaviour is
chosen by the card number (TEST_CARDS). Only the last four digits of a card are ever stored
or logged. server.py puts it behind HTTP.
"""
from __future__ import annotations

import random
import re
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Callable, Iterator

import orjson

TEST_CARDS: dict[str, tuple[str, str]] = {
    "4242424242424242": ("approve", "Approved on every PSP."),
    "4000000000000002": ("decline", "Hard decline, code card_declined."),
    "4000000000009995": ("insufficient_funds", "Hard decline, code insufficient_funds."),
    "4000000000000119": ("soft_decline_first_psp", "sim-a: 503 try_again_later, no charge; other PSPs approve."),
    "4000000000000077": ("timeout_charged", "Charged, but answered after timeout_delay; status() finds it."),
    "4000000000000101": ("timeout_not_charged", "Nothing charged; 504 after timeout_delay; status() finds none."),
}
FIRST_PSP = "sim-a"  # the PSP that soft-declines the soft_decline_first_psp card
MAX_BODY = 1 << 20
DECLINE_CODES = {"decline": "card_declined", "insufficient_funds": "insufficient_funds"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (id TEXT PRIMARY KEY, psp TEXT NOT NULL,
  idempotency_key TEXT NOT NULL, status TEXT NOT NULL, code TEXT, amount INTEGER NOT NULL,
  currency TEXT NOT NULL, captured_amount INTEGER NOT NULL DEFAULT 0,
  refunded_amount INTEGER NOT NULL DEFAULT 0, last4 TEXT NOT NULL, reference TEXT,
  correlation_id TEXT, created_at TEXT NOT NULL, UNIQUE (psp, idempotency_key));
CREATE TABLE IF NOT EXISTS operations (psp TEXT NOT NULL, idempotency_key TEXT NOT NULL,
  kind TEXT NOT NULL, charge_id TEXT NOT NULL, response BLOB NOT NULL,
  PRIMARY KEY (psp, idempotency_key));
CREATE TABLE IF NOT EXISTS faults (seq INTEGER PRIMARY KEY AUTOINCREMENT, psp TEXT NOT NULL,
  op TEXT NOT NULL, kind TEXT NOT NULL, idempotency_key TEXT, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS webhooks (seq INTEGER PRIMARY KEY AUTOINCREMENT,
  tenant_id TEXT NOT NULL, body TEXT NOT NULL, signature TEXT, correlation_id TEXT,
  status_code INTEGER NOT NULL, received_at TEXT NOT NULL);
"""
BY_KEY = "SELECT * FROM charges WHERE psp=? AND idempotency_key=?"


class ApiError(Exception):
    """An error answer: HTTP status plus a JSON body with code and message."""

    def __init__(self, http_status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.body = http_status, {"code": code, "message": message, **extra}


def luhn_valid(number: str) -> bool:
    """True if `number` is 12-19 digits with a valid Luhn check digit."""
    if not (number.isdigit() and 12 <= len(number) <= 19):
        return False
    digits = [int(c) * (2 if i % 2 else 1) for i, c in enumerate(reversed(number))]
    return sum(d - 9 if d > 9 else d for d in digits) % 10 == 0


def expired(card: dict, today: date) -> bool:
    """An issuer's view: the card is good through the last day of its expiry month. An expiry the
    simulator cannot read is left to the platform's own checks (it refuses those at the API)."""
    month, year = card.get("exp_month"), card.get("exp_year")
    if not (isinstance(month, int) and isinstance(year, int)):
        return False
    return (year, month) < (today.year, today.month)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _positive(body: dict, name: str, default: int | None = None) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ApiError(400, "invalid_request", f"{name} must be a positive integer (minor units)")
    return value


def _key(body: dict, headers: Any) -> str:
    key = body.get("idempotency_key") or headers.get("Idempotency-Key")
    if not isinstance(key, str) or not key or len(key) > 255:
        raise ApiError(400, "invalid_request", "idempotency_key is required")
    return key


def _charge(row: sqlite3.Row) -> tuple[int, dict[str, Any]]:
    body = {k: row[k] for k in row.keys() if k not in ("psp", "created_at") and row[k] is not None}
    return (402 if row["status"] == "declined" else 200), body


LOSE_REQUEST, LOSE_RESPONSE = "lose_request", "lose_response"
FAULTABLE_OPS = ("authorize", "capture")


@dataclass(frozen=True)
class Faults:
    """Injected network faults: each faultable call loses its request with probability
    lose_request, else loses its response with probability lose_response."""

    lose_request: float = 0.0
    lose_response: float = 0.0
    seed: int | None = None
    ops: tuple[str, ...] = ("authorize",)

    def __post_init__(self) -> None:
        if not (0 <= self.lose_request <= 1 and 0 <= self.lose_response <= 1
                and self.lose_request + self.lose_response <= 1):
            raise ValueError("fault probabilities must be in [0, 1] and sum to at most 1")
        unknown = set(self.ops) - set(FAULTABLE_OPS)
        if unknown:
            raise ValueError(f"faults apply only to {', '.join(FAULTABLE_OPS)}, not {', '.join(sorted(unknown))}")

    @property
    def active(self) -> bool:
        return bool(self.lose_request or self.lose_response)


class Simulator:
    """The PSP behaviour over SQLite; one connection serialized by a lock."""

    def __init__(self, db_path: str, timeout_delay: float, faults: Faults | None = None,
                 today: Callable[[], date] | None = None) -> None:
        self.timeout_delay = timeout_delay
        # The issuer's calendar: a card that expires while its payment is in flight is declined here
        # even though the API accepted it (tests pass their own day).
        self.today = today or (lambda: datetime.now(timezone.utc).date())
        self.faults = faults or Faults()
        self._rng = random.Random(self.faults.seed)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so other processes on the file serialize too
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def draw_fault(self, psp: str, op: str, key: str | None) -> str | None:
        """Decide (seeded) whether this call loses its request or its response; records the fault."""
        if not self.faults.active or op not in self.faults.ops:
            return None
        with self._lock:  # one seeded sequence however many handler threads draw from it
            x = self._rng.random()
        kind = LOSE_REQUEST if x < self.faults.lose_request else \
            LOSE_RESPONSE if x < self.faults.lose_request + self.faults.lose_response else None
        if kind is not None:
            with self._tx() as db:
                db.execute("INSERT INTO faults (psp, op, kind, idempotency_key, at) VALUES (?,?,?,?,?)",
                           (psp, op, kind, key, _now()))
        return kind

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def authorize(self, psp: str, body: dict, headers: Any) -> tuple[int, dict]:
        """Authorize once per (psp, idempotency key); replays return the stored outcome."""
        key, amount = _key(body, headers), _positive(body, "amount")
        currency, card, reference = body.get("currency"), body.get("card"), body.get("reference")
        if not (isinstance(currency, str) and re.fullmatch(r"[A-Za-z]{3}", currency)):
            raise ApiError(400, "invalid_request", "currency must be a 3-letter code")
        bank = body.get("bank_account")
        if isinstance(bank, dict) and isinstance(bank.get("iban"), str) and card is None:
            card = {"number": "BANK" + bank["iban"][-4:]}  # bank debits: approved, only last4 kept
        if not isinstance(card, dict) or not isinstance(card.get("number"), str):
            raise ApiError(400, "invalid_request", "card.number or bank_account.iban is required")
        if reference is not None and not isinstance(reference, str):
            raise ApiError(400, "invalid_request", "reference must be a string")
        number = re.sub(r"[\s-]", "", card["number"])
        behaviour = TEST_CARDS.get(number, ("approve", ""))[0]
        with self._tx() as db:  # a replay never re-runs the card behaviour
            row = db.execute(BY_KEY, (psp, key)).fetchone()
        if row is not None:
            return _charge(row)
        if behaviour == "timeout_not_charged":
            time.sleep(self.timeout_delay)
            raise ApiError(504, "gateway_timeout", "upstream acquirer timed out")
        if behaviour == "soft_decline_first_psp" and psp == FIRST_PSP:
            raise ApiError(503, "try_again_later", "issuer unavailable, try another route",
                           status="unavailable")
        valid = number.startswith("BANK") or luhn_valid(number)
        code = DECLINE_CODES.get(behaviour) if valid else "incorrect_number"
        if code is None and not number.startswith("BANK") and expired(card, self.today()):
            code = "expired_card"  # as issuers answer, whatever the card's test behaviour
        with self._tx() as db:
            # ON CONFLICT + re-read: a concurrent duplicate gets the winner's row
            db.execute("INSERT INTO charges (id, psp, idempotency_key, status, code, amount, currency,"
                       " last4, reference, correlation_id, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
                       " ON CONFLICT (psp, idempotency_key) DO NOTHING",
                       ("ch_" + secrets.token_hex(12), psp, key, "declined" if code else "authorized",
                        code, amount, currency.upper(), number[-4:], reference,
                        headers.get("X-Correlation-Id"), _now()))
            row = db.execute(BY_KEY, (psp, key)).fetchone()
        if behaviour == "timeout_charged":
            time.sleep(self.timeout_delay)
        return _charge(row)

    def status(self, psp: str, key: str) -> tuple[int, dict]:
        """What this PSP recorded for an authorization idempotency key (200 even if declined)."""
        with self._tx() as db:
            row = db.execute(BY_KEY, (psp, key)).fetchone()
        if row is None:
            raise ApiError(404, "not_found", "no authorization with this idempotency key")
        return 200, _charge(row)[1]

    def operate(self, psp: str, charge_id: str, kind: str, body: dict, headers: Any) -> tuple[int, dict]:
        """Capture, void or refund a charge; successful results are replayed by key."""
        key = _key(body, headers)
        with self._tx() as db:
            op = db.execute("SELECT * FROM operations WHERE psp=? AND idempotency_key=?", (psp, key)).fetchone()
            if op is not None:
                if (op["kind"], op["charge_id"]) != (kind, charge_id):
                    raise ApiError(409, "idempotency_conflict", "key already used for another operation")
                return 200, orjson.loads(op["response"])
            ch = db.execute("SELECT * FROM charges WHERE psp=? AND id=?", (psp, charge_id)).fetchone()
            if ch is None:
                raise ApiError(404, "not_found", "no such charge")
            if body.get("currency") not in (None, ch["currency"]):
                raise ApiError(400, "currency_mismatch", "currency differs from the authorization")
            result = self._apply(db, ch, kind, body)
            db.execute("INSERT INTO operations VALUES (?,?,?,?,?)",
                       (psp, key, kind, charge_id, orjson.dumps(result)))
        return 200, result

    @staticmethod
    def _apply(db: sqlite3.Connection, ch: sqlite3.Row, kind: str, body: dict) -> dict:
        state, captured, refunded = ch["status"], ch["captured_amount"], ch["refunded_amount"]
        if (state != "authorized") if kind != "refund" else (state not in ("captured", "refunded")):
            raise ApiError(409, "invalid_state", f"cannot {kind} a {state} charge")
        if kind == "void":
            db.execute("UPDATE charges SET status='voided' WHERE id=?", (ch["id"],))
            return {"id": ch["id"], "status": "voided"}
        if kind == "capture":
            amount = _positive(body, "amount", ch["amount"])
            if amount > ch["amount"]:
                raise ApiError(400, "amount_too_large", "capture exceeds the authorized amount")
            db.execute("UPDATE charges SET status='captured', captured_amount=? WHERE id=?", (amount, ch["id"]))
            return {"id": ch["id"], "status": "captured", "amount": amount}
        amount = _positive(body, "amount", captured - refunded)
        if refunded + amount > captured:
            raise ApiError(400, "amount_too_large", "refunds would exceed the captured amount")
        db.execute("UPDATE charges SET refunded_amount=?, status=? WHERE id=?",
                   (refunded + amount, "refunded" if refunded + amount == captured else "captured", ch["id"]))
        return {"id": "re_" + secrets.token_hex(12), "charge_id": ch["id"], "status": "refunded", "amount": amount}

    def stats(self, psp: str) -> tuple[int, dict]:
        """Authorizations this PSP charged (declines excluded), in total and per reference,
        and the network faults it injected, by kind and by operation."""
        with self._tx() as db:
            rows = db.execute("SELECT reference, count(*) AS n FROM charges WHERE psp=? AND"
                              " status != 'declined' GROUP BY reference", (psp,)).fetchall()
            faults = db.execute("SELECT op, kind, count(*) AS n FROM faults WHERE psp=? GROUP BY op, kind",
                                (psp,)).fetchall()
        by_kind = {LOSE_REQUEST: 0, LOSE_RESPONSE: 0}
        by_op: dict[str, dict[str, int]] = {}
        for f in faults:
            by_kind[f["kind"]] += f["n"]
            by_op.setdefault(f["op"], {})[f["kind"]] = f["n"]
        return 200, {"authorizations": sum(r["n"] for r in rows),
                     "by_reference": {r["reference"]: r["n"] for r in rows if r["reference"] is not None},
                     "faults": by_kind, "faults_by_op": by_op}

    def webhook(self, tenant: str, raw: bytes, headers: Any) -> tuple[int, dict]:
        """Store a merchant webhook delivery; tenants named fail-* answer 500 (attempt still listed)."""
        code = 500 if tenant.startswith("fail-") else 200
        with self._tx() as db:
            db.execute("INSERT INTO webhooks (tenant_id, body, signature, correlation_id, status_code,"
                       " received_at) VALUES (?,?,?,?,?,?)",
                       (tenant, raw.decode("utf-8", "replace"), headers.get("Webhook-Signature"),
                        headers.get("X-Correlation-Id"), code, _now()))
        if code == 500:
            raise ApiError(500, "sink_failure", "this sink is configured to fail")
        return 200, {"status": "received"}

    def deliveries(self, tenant: str) -> tuple[int, dict]:
        """Every delivery attempt for a tenant, in arrival order."""
        with self._tx() as db:
            rows = db.execute("SELECT body, signature, correlation_id, status_code, received_at"
                              " FROM webhooks WHERE tenant_id=? ORDER BY seq", (tenant,)).fetchall()
        return 200, {"deliveries": [dict(r) for r in rows]}
