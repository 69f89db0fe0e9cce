"""Audit log: admin and key operations are chained per tenant; `payctl audit verify` catches
every edit, removal and reorder of stored entries, and says which entry."""
from __future__ import annotations

import json
import sqlite3

import pytest

from chalicelib.services import audit
from chalicelib.services import tenants as tenancy
from payctl import cli

from ..integration.conftest import stack  # noqa: F401 - the in-process platform fixture


def run(capsys, *argv: str):
    code = cli.main([*argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


@pytest.fixture
def history(stack, capsys):
    """A tenant with a few audited operations: create (2 entries), key create, key revoke."""
    tid = stack.tenant_id
    code, made = run(capsys, "tenant", "key", "create", tid)
    code, _ = run(capsys, "tenant", "key", "revoke", made["key_id"])
    code, _ = run(capsys, "tenant", "key", "create", tid, "--live")
    rows = stack.platform.audit_log.rows(tid)
    assert len(rows) == 5
    return stack


def _tamper(stack, sql: str, *args) -> None:
    """What someone with the file can do: drop the append-only triggers and edit rows. A tenant id
    among the arguments names that tenant's chain in this region (the file's tenant_id column)."""
    region = stack.platform.settings.region
    args = tuple(audit.chain_name(a, region) if isinstance(a, str) and a.startswith("ten_") else a for a in args)
    conn = sqlite3.connect(stack.platform.settings.data_dir / "audit.db")
    conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    conn.execute(sql, args)
    conn.commit()
    conn.close()


def _verify(capsys, tenant: str):
    code, report = run(capsys, "audit", "verify", "--tenant", tenant)
    return code, report["results"][0]


def test_entries_name_actor_time_action_subject_and_correlation(history, capsys):
    log = history.platform.audit_log
    bodies = [json.loads(raw) for _, raw, _ in log.rows(history.tenant_id)]
    assert [b["action"] for b in bodies] == ["tenant.create", "key.create", "key.create", "key.revoke", "key.create"]
    for i, b in enumerate(bodies, 1):
        assert b["seq"] == i and b["tenant_id"] == history.tenant_id
        assert b["actor"].startswith("payctl:") and b["at"].endswith("Z") and b["correlation_id"]
    assert bodies[3]["subject"] == bodies[2]["subject"] and bodies[3]["subject"].startswith("key_")
    assert all(len(b["detail"].get("prefix", "")) <= 12 for b in bodies)  # a display prefix, never a key
    code, ok = _verify(capsys, history.tenant_id)
    assert code == 0 and ok["ok"] and ok["entries"] == 5
    code, whole = run(capsys, "audit", "verify")
    assert code == 0 and whole["tenants"] >= 2 and whole["ok"]


def test_the_log_refuses_update_and_delete(history):
    conn = sqlite3.connect(history.platform.settings.data_dir / "audit.db")
    for sql in ("UPDATE audit SET hash='x'", "DELETE FROM audit"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute(sql)
    conn.close()


def test_verify_catches_an_edited_entry(history, capsys):
    tid = history.tenant_id
    (raw,) = [r[1] for r in history.platform.audit_log.rows(tid) if r[0] == 3]
    forged = raw.replace(b"key.create", b"key.revoke")
    assert forged != raw
    _tamper(history, "UPDATE audit SET body=? WHERE tenant_id=? AND seq=3", forged, tid)
    code, result = _verify(capsys, tid)
    assert code == 1 and not result["ok"] and result["entry"] == 3 and "altered" in result["problem"]


def test_verify_catches_an_edit_that_also_recomputes_that_entrys_hash(history, capsys):
    tid = history.tenant_id
    rows = history.platform.audit_log.rows(tid)
    prev = rows[1][2]
    forged = rows[2][1].replace(b"key.create", b"key.revoke")
    _tamper(history, "UPDATE audit SET body=?, hash=? WHERE tenant_id=? AND seq=3",
            forged, audit.chain_hash(prev, forged), tid)
    code, result = _verify(capsys, tid)
    assert code == 1 and result["entry"] == 4 and "altered" in result["problem"]  # the next link breaks


def test_verify_catches_a_removed_entry(history, capsys):
    _tamper(history, "DELETE FROM audit WHERE tenant_id=? AND seq=2", history.tenant_id)
    code, result = _verify(capsys, history.tenant_id)
    assert code == 1 and result["entry"] == 3 and "entry 2 is missing" in result["problem"]


def test_verify_catches_a_removed_tail(history, capsys):
    _tamper(history, "DELETE FROM audit WHERE tenant_id=? AND seq=5", history.tenant_id)
    code, result = _verify(capsys, history.tenant_id)
    assert code == 1 and "removed" in result["problem"] and result["entry"] == 5


def test_verify_catches_swapped_entries(history, capsys):
    tid = history.tenant_id
    rows = {seq: (raw, h) for seq, raw, h in history.platform.audit_log.rows(tid)}
    _tamper(history, "UPDATE audit SET seq=-1 WHERE tenant_id=? AND seq=2", tid)
    _tamper(history, "UPDATE audit SET seq=2 WHERE tenant_id=? AND seq=3", tid)
    _tamper(history, "UPDATE audit SET seq=3 WHERE tenant_id=? AND seq=-1", tid)
    assert {seq for seq, _, _ in history.platform.audit_log.rows(tid)} == set(rows)
    code, result = _verify(capsys, tid)
    assert code == 1 and result["entry"] == 2 and "reordered" in result["problem"]


def test_verify_catches_an_entry_moved_to_another_tenant(history, capsys):
    _tamper(history, "UPDATE audit SET tenant_id=? WHERE tenant_id=? AND seq=5",
            history.other["tenant_id"], history.tenant_id)
    code, report = run(capsys, "audit", "verify")
    assert code == 1 and not report["ok"]
    bad = {r["tenant_id"]: r for r in report["results"] if not r["ok"]}
    assert set(bad) == {history.tenant_id, history.other["tenant_id"]}


def test_tenant_delete_is_audited(history, capsys):
    code, _ = run(capsys, "tenant", "delete", history.other["tenant_id"], "--yes")
    assert code == 0
    body = json.loads(history.platform.audit_log.rows(history.other["tenant_id"])[-1][1])
    assert body["action"] == "tenant.delete" and body["detail"]["data_key"] == "destroyed"
    assert tenancy.list_keys(history.platform, history.other["tenant_id"])[0]["revoked_at"]


def test_dlq_redrive_is_audited_under_the_entrys_tenant(stack, capsys):
    from chalicelib.ports import OutRecord
    payment_id = stack.pay()
    stack.runner.drain()
    stack.platform.bus.publish([OutRecord("payments.initiated", payment_id, b"{broken",
                                          (("tenant_id", stack.tenant_id.encode()),))])
    stack.runner.drain()
    code, report = run(capsys, "dlq", "redrive")
    assert code == 0 and report["redriven"] == 1
    body = json.loads(stack.platform.audit_log.rows(stack.tenant_id)[-1][1])
    assert body["action"] == "dlq.redrive" and body["subject"] == report["entries"][0]
    assert run(capsys, "audit", "verify")[0] == 0


# -- payment state changes --------------------------------------------------------------------
@pytest.fixture
def paid(stack):
    """Two payments through the whole pipeline, one captured by hand: every change chained."""
    auto = stack.pay()
    manual = stack.pay(capture="manual")
    stack.runner.drain()
    r = stack.post(f"/v1/payments/{manual}/capture", {})
    assert r.status_code == 202, r.body
    stack.runner.drain()
    return stack, auto, manual


def _bodies(stack, tid):
    return [json.loads(raw) for _, raw, _ in stack.platform.audit_log.rows(tid)]


def test_every_payment_state_change_is_chained_with_actor_and_correlation(paid, capsys):
    stack, auto, manual = paid
    tid = stack.tenant_id
    changes = [b for b in _bodies(stack, tid) if b["action"].startswith("payment.")]
    for pid in (auto, manual):
        timeline = stack.platform.store.payments.timeline(tid, pid)
        mine = [b for b in changes if b["subject"] == pid]
        assert mine[0]["action"] == "payment.create" and mine[0]["actor"].startswith("api:key_")
        assert [(b["from"], b["to"]) for b in mine[1:]] == [(t["from"], t["to"]) for t in timeline]
        assert all(b["correlation_id"] and b["at"] and b["version"] >= 1 for b in mine)
    actors = {b["actor"] for b in changes}
    assert {"stage:validation", "stage:risk", "stage:routing", "stage:authorization"} <= actors
    capture = [b for b in changes if b["subject"] == manual and b["action"] == "payment.request_capture"]
    assert len(capture) == 1 and capture[0]["actor"].startswith("api:key_")
    assert stack.platform.store.audit_queue.pending_audit_count(tid) == 0
    code, result = _verify(capsys, tid)
    assert code == 0 and result["ok"] and result["pending"] == 0 and result["entries"] == len(_bodies(stack, tid))


def test_verify_reports_state_changes_not_yet_chained(stack, capsys):
    stack.pay()  # committed by the API; the relay loop (and so the chainer) has not run
    code, result = _verify(capsys, stack.tenant_id)
    assert code == 0 and result["pending"] == 1
    assert audit.chain_pending(stack.platform) == 1
    assert _verify(capsys, stack.tenant_id)[1]["pending"] == 0


def test_a_chainer_crash_before_forgetting_its_rows_chains_nothing_twice(stack, capsys):
    stack.pay()
    pending = stack.platform.store.audit_queue.pending_audit(100)
    log = stack.platform.audit_log
    log.append(stack.tenant_id, [(r.source, r.body) for r in pending])  # ... and crashed before mark_audited
    n = len(log.rows(stack.tenant_id))
    assert audit.chain_pending(stack.platform) == len(pending)
    assert len(log.rows(stack.tenant_id)) == n and _verify(capsys, stack.tenant_id)[0] == 0


def _state_change_seqs(stack, tid):
    return [b["seq"] for b in _bodies(stack, tid) if b["action"].startswith("payment.")]


def test_verify_catches_an_edited_state_change(paid, capsys):
    stack, auto, _ = paid
    tid = stack.tenant_id
    seq = _state_change_seqs(stack, tid)[3]
    (raw,) = [r[1] for r in stack.platform.audit_log.rows(tid) if r[0] == seq]
    forged = json.loads(raw)
    forged["actor"] = "stage:someone-else"
    _tamper(stack, "UPDATE audit SET body=? WHERE tenant_id=? AND seq=?", audit.canonical(forged), tid, seq)
    code, result = _verify(capsys, tid)
    assert code == 1 and result["entry"] == seq and "altered" in result["problem"]


def test_verify_catches_a_removed_state_change(paid, capsys):
    stack, _, _ = paid
    seq = _state_change_seqs(stack, stack.tenant_id)[2]
    _tamper(stack, "DELETE FROM audit WHERE tenant_id=? AND seq=?", stack.tenant_id, seq)
    code, result = _verify(capsys, stack.tenant_id)
    assert code == 1 and result["entry"] == seq + 1 and f"entry {seq} is missing" in result["problem"]


def test_verify_catches_swapped_state_changes(paid, capsys):
    stack, _, _ = paid
    tid = stack.tenant_id
    a, b = _state_change_seqs(stack, tid)[4:6]
    _tamper(stack, "UPDATE audit SET seq=-1 WHERE tenant_id=? AND seq=?", tid, a)
    _tamper(stack, "UPDATE audit SET seq=? WHERE tenant_id=? AND seq=?", a, tid, b)
    _tamper(stack, "UPDATE audit SET seq=? WHERE tenant_id=? AND seq=-1", b, tid)
    code, result = _verify(capsys, tid)
    assert code == 1 and result["entry"] == a and "reordered" in result["problem"]


def test_a_cut_tail_with_a_rewritten_head_is_caught(paid, capsys):
    """Truncate the log and make the head agree with the cut: without the MAC key the head cannot be signed."""
    stack, _, _ = paid
    tid = stack.tenant_id
    rows = stack.platform.audit_log.rows(tid)
    keep = len(rows) - 3
    _tamper(stack, "DELETE FROM audit WHERE tenant_id=? AND seq>?", tid, keep)
    (old_mac,) = sqlite3.connect(stack.platform.settings.data_dir / "audit.db").execute(
        "SELECT mac FROM audit_heads WHERE tenant_id=?", (audit.chain_name(tid, stack.platform.settings.region),)).fetchone()
    _tamper(stack, "UPDATE audit_heads SET seq=?, hash=? WHERE tenant_id=?", keep, rows[keep - 1][2], tid)
    code, result = _verify(capsys, tid)
    assert code == 1 and result["entry"] == keep and "MAC does not verify" in result["problem"]
    guessed = audit.HeadSigner(b"\0" * 32).sign(tid, keep, rows[keep - 1][2])  # a guess at the key
    _tamper(stack, "UPDATE audit_heads SET mac=? WHERE tenant_id=?", guessed, tid)
    assert _verify(capsys, tid)[1]["ok"] is False and old_mac != guessed
    _tamper(stack, "DELETE FROM audit_heads WHERE tenant_id=?", tid)  # or drop the head altogether
    code, result = _verify(capsys, tid)
    assert code == 1 and "head is missing" in result["problem"]


def test_the_chainer_refuses_to_extend_a_forged_head(paid, capsys):
    stack, _, _ = paid
    tid = stack.tenant_id
    _tamper(stack, "UPDATE audit_heads SET mac=? WHERE tenant_id=?", "0" * 64, tid)
    n = len(stack.platform.audit_log.rows(tid))
    stack.pay()
    assert audit.chain_pending(stack.platform) == 0  # left pending: signing over a forged head would launder it
    assert len(stack.platform.audit_log.rows(tid)) == n
    code, result = _verify(capsys, tid)
    assert code == 1 and result["pending"] == 1 and "MAC" in result["problem"]


def test_a_tenants_whole_chain_removed_is_caught(history, capsys):
    _tamper(history, "DELETE FROM audit WHERE tenant_id=?", history.tenant_id)
    _tamper(history, "DELETE FROM audit_heads WHERE tenant_id=?", history.tenant_id)
    code, result = _verify(capsys, history.tenant_id)
    assert code == 1 and result["entry"] == 1 and "no audit entries" in result["problem"]
