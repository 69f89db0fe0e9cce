"""PAN scan (I6): after real runs, no card number or IBAN anywhere we keep or publish data.

1. In process: every test card (and two IBANs) through the whole pipeline -- declines,
   failovers, unknown outcomes, manual capture, cancel, refunds, a poison record to
   the DLQ, a redrive -- with every log record captured, then every SQLite file (each
   row of each table and the raw bytes of the .db/-wal files), every topic record
   (DLQ entries decoded from base64), every webhook body and every log line scanned.
2. After the session's real runs -- the e2e suite's local stack (with `payctl demo`) and
   the crash test (SIGKILLed workers), whose data dirs and logs stay under one session
   root (tests/runs.py) -- every file there: SQLite rows, bus topics and DLQ records,
   logs, the stacks' output. Run alone, the test makes those runs itself first.
Expected hits: 0. The scanner itself is shown to find a planted PAN, so 0 means 0.
"""
from __future__ import annotations

import json
import logging
import uuid

import pytest

from chalicelib.ports import OutRecord
from chalicelib.observability import logmask

from ..integration.conftest import card_body, stack  # noqa: F401 - the in-process platform fixture
from ..runs import mark_run, new_run, runs_in
from .pan_scan import TEST_IBANS, TEST_PANS, Hit, scan_bus, scan_bytes, scan_files, scan_sqlite, scan_tree, \
    scan_value, sqlite_files

FIGURES: dict[str, int] = {}


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) - {"msg", "args", "exc_text"}


class _JsonLines(logging.Handler):
    """Every record as a log pipeline would ship it: the formatted line (with traceback) and every
    `extra` field. Thread ids, pids and float timestamps are left out: they are not data."""

    def __init__(self, path):
        super().__init__(logging.DEBUG)
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in the test

    def emit(self, record: logging.LogRecord) -> None:
        doc = {k: str(v) for k, v in vars(record).items() if k not in _STANDARD}
        doc["formatted"] = logging.Formatter().format(record)
        self.file.write(json.dumps(doc) + "\n")


def _every_card_through_the_pipeline(stack) -> list[str]:
    ids = [stack.pay(pan, reference=f"scan-{pan[-4:]}-{i}") for i, pan in enumerate(TEST_PANS)]
    for iban in TEST_IBANS:
        body = card_body()
        body["payment_method"] = {"type": "bank_account", "bank_account": {"iban": iban, "holder_name": "A B"}}
        r = stack.post("/v1/payments", body, **{"Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 202, r.body
        ids.append(json.loads(r.body)["id"])
    manual = [stack.pay("4242424242424242", capture="manual") for _ in range(2)]
    ids += manual
    # Refused at the edge (Luhn) and a replay: neither may leave the number behind.
    assert stack.post("/v1/payments", card_body("4242424242424241"),
                      **{"Idempotency-Key": "scan-bad-luhn"}).status_code == 422
    stack.pay("5555555555554444", key="scan-replay")
    stack.pay("5555555555554444", key="scan-replay")
    stack.runner.drain()
    assert stack.post(f"/v1/payments/{manual[0]}/capture", {"amount": 1000}).status_code == 202
    assert stack.post(f"/v1/payments/{manual[1]}/cancel", {}).status_code == 202
    stack.runner.drain()
    settled = [i for i in ids if stack.payment(i)["status"] == "settled"]
    assert len(settled) >= 5
    for pid in settled[:3]:
        assert stack.post(f"/v1/payments/{pid}/refunds", {"amount": 100}).status_code == 202
    # A poison record (wrong tenant header) goes to the DLQ with its original bytes; then redrive.
    first = stack.platform.bus.read_all("payments.initiated")[0]
    stack.platform.bus.publish([OutRecord("payments.initiated", first.key, first.value,
                                          (("tenant_id", b"ten_somebody_else"),))])
    stack.runner.drain()
    assert stack.all_dlq_entries()
    return ids


def test_no_pan_anywhere_after_an_in_process_run(stack, tmp_path):
    handler = _JsonLines(tmp_path / "data" / "records.jsonl")
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    logmask.install()  # as bootstrap does for the handlers present when the process starts
    try:
        ids = _every_card_through_the_pipeline(stack)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.file.close()
    hits: list[Hit] = []
    rows = 0
    files = sqlite_files(tmp_path)
    assert {p.name for p in files} >= {"store.db", "bus.db", "sim.db"}
    for path in files:
        h, n = scan_sqlite(path)
        hits, rows = hits + h, rows + n
    bus_hits, records = scan_bus(stack.platform.bus)
    hits += bus_hits
    hits += [h for i, call in enumerate(stack.poster.calls) for h in scan_value(f"webhook[{i}]", list(call))]
    hits += scan_files((tmp_path / "data").glob("*.jsonl"))
    for pid in ids:  # what the API answers, timeline included
        hits += scan_value(f"GET {pid}", stack.get(f"/v1/payments/{pid}").body)
    FIGURES.update(in_process_rows=rows, in_process_records=records, in_process_payments=len(ids))
    print(f"\nPAN scan (in process): {len(files)} SQLite files, {rows} rows, {records} topic records, "
          f"{len(stack.poster.calls)} webhooks, {len(ids)} payments -> {len(hits)} hits")
    assert rows > 100 and records > 50 and stack.poster.calls
    assert not hits, "\n".join(map(str, hits[:20]))


def _local_stack_run(data) -> None:
    """`make local`, every test card over HTTP, then `payctl demo` (run when the e2e suite did not)."""
    from ..stack import start_local, stop_local
    local = start_local(data)
    try:
        ids = []
        for pan in TEST_PANS:
            status, _, body = local.pay(pan)
            assert status == 202, body
            ids.append(json.loads(body)["id"])
        for pid in ids[:3]:  # the rest (timeouts, unknown outcomes) may take longer; their data counts anyway
            local.wait_status(pid, timeout_s=60)
        demo = local.payctl("demo", "--count", "20", "--concurrency", "4")
        assert demo["count"] == 20
        mark_run(data, "demo")
        local.payctl("dlq", "list", "--all")
    finally:
        stop_local(local)


def _crash_run(data) -> None:
    """The crash test's shape, smaller (run when the fault suite did not): stage workers SIGKILLed
    and restarted while every test card is paid concurrently."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    from ..fault.test_crash import Killer
    from ..stack import start_processes
    stack = start_processes(data, members=2, LOG_LEVEL="INFO", UNKNOWN_CHECK_SCHEDULE_S="0.5,1,2",
                            RETRY_BASE_MS="50", RETRY_MAX_MS="500")
    try:
        killer = Killer(stack, random.Random(6), kills=4, mean_gap_s=0.5)
        killer.start()
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: stack.pay(TEST_PANS[i % len(TEST_PANS)]), range(66)))
        killer.join(60)
        assert killer.error is None and killer.done == 4
        ids = [json.loads(body)["id"] for status, _, body in answers if status == 202]
        assert len(ids) == 66
        for pid in ids[:5]:
            stack.wait_status(pid, timeout_s=60)
    finally:
        stack.stop()


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_no_pan_anywhere_after_the_e2e_suite_the_crash_test_and_the_demo(runs_root):
    """Scans the data dirs the session's real runs kept under `runs_root` (tests/runs.py): the e2e
    suite's local stack (which also ran `payctl demo`) and the crash test's SIGKILLed workers. Run
    alone (no such runs in this session), it makes its own of each first."""
    runs = runs_in(runs_root)
    own = []
    if not (runs.get("e2e") and runs.get("demo")):
        _local_stack_run(new_run(runs_root, "e2e", "pan-scan"))
        own.append("e2e+demo")
    if not runs.get("crash"):
        _crash_run(new_run(runs_root, "crash", "pan-scan"))
        own.append("crash")
    runs = runs_in(runs_root)
    hits, figures = scan_tree(runs_root)
    kinds = {k: len(v) for k, v in sorted(runs.items())}
    FIGURES.update(figures)
    print(f"\nPAN scan of {runs_root} -- runs {kinds} ({'own: ' + ', '.join(own) if own else 'all from this session'}): "
          f"{figures['sqlite_files']} SQLite files ({figures['rows']} rows), {figures['topic_records']} topic records "
          f"({figures['dlq_records']} DLQ), {figures['log_files']} log files, {figures['other_files']} other files, "
          f"{figures['bytes']:,} bytes -> {len(hits)} hits")
    assert {"e2e", "demo", "crash"} <= set(runs)
    assert figures["rows"] > 500 and figures["topic_records"] > 100 and figures["log_files"] >= 3
    assert not hits, "\n".join(map(str, hits[:20]))


_RUN13 = b"8890112345000"  # Luhn-valid


# -- the scanner can fail ------------------------------------------------------------------------
@pytest.mark.parametrize("planted", [b"x 4242424242424242 y", b"abcdef5555555555554444", b'{"n":"378282246310005"}',
                                     b"4000000000000002", b"pay 6011111111111117\n", b"\x004111111111111111\x00",
                                     # not ULIDs: a card number can't spell a ULID's time, needs "_" before, 26 chars
                                     b"order_4242424242424242ABCDEFGHJK", b"x01M" + _RUN13 + b"ABCDEFGHJK",
                                     b"evt_01M" + _RUN13 + b"ABCDEFGHJ", b"evt_01M" + _RUN13])
def test_scanner_finds_a_planted_pan(planted):
    assert scan_bytes("planted", planted)


def test_scanner_finds_a_pan_inside_base64_and_json():
    import base64
    entry = {"value": base64.b64encode(b'{"card": {"number": "4000000000000077"}}').decode()}
    assert scan_value("dlq", json.dumps(entry).encode())


def test_scanner_finds_a_pan_in_a_sqlite_row_and_in_wal_bytes(tmp_path):
    import sqlite3
    conn = sqlite3.connect(tmp_path / "x.db")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (a TEXT)")
    conn.execute("INSERT INTO t VALUES ('5555555555554444')")
    conn.commit()
    hits, rows = scan_sqlite(tmp_path / "x.db")
    conn.close()
    assert rows == 1 and any("x.db:t" in h.where for h in hits)


@pytest.mark.parametrize("clean", [b"pay_01JD0000000000000000000001", b"1764030000123", b"2026-11-25T10:00:00Z",
                                   b"1764030000127", b"4242424242424241", b"last4 4242 bin 424242",
                                   b"v1=ab5555555555554449cdef0123456789abcdef0123456789abcdef01234567",
                                   b'"psp_reference":"ch_2ef724100000000000017abc"',
                                   # a ULID whose time and random characters happen to make a Luhn-valid run
                                   # (CI met one in an event id), in JSON and in raw SQLite bytes
                                   b'"event_id":"evt_01M' + _RUN13 + b'ABCDEFGHJK"',
                                   b"riskevt_01M" + _RUN13 + b"ABCDEFGHJK2026-12-04T00:00:00.000000Z"])
def test_scanner_ignores_ids_timestamps_and_non_luhn_runs(clean):
    assert not scan_bytes("clean", clean)
