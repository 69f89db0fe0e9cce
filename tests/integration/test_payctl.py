"""payctl against the same data the stack uses (DATA_DIR), every command with --json."""
from __future__ import annotations

import json

import pytest

from payctl import cli
from chalicelib.ports import OutRecord


def run(capsys, *argv: str) -> tuple[int, object]:
    code = cli.main([*argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def test_tenant_create_and_list(stack, capsys):
    code, created = run(capsys, "tenant", "create", "initech", "--webhook-url", "https://initech.example/hook")
    assert code == 0
    assert created["api_key"].startswith("pk_test_") and created["tenant_id"].startswith("ten_")
    assert created["webhook_secret"].startswith("whsec_")
    code, tenants = run(capsys, "tenant", "list")
    assert code == 0
    assert {"acme", "globex", "initech"} <= {t["name"] for t in tenants}
    # the new key works against the API at once
    assert stack.get("/v1/payments", tenant=created).status_code == 200


def test_tenant_create_rejects_bad_names(stack, capsys):
    code, out = run(capsys, "tenant", "create", "../etc")
    assert code == 2 and "tenant name" in out["error"]


def test_payments_show_and_trace_cover_all_seven_stages(stack, capsys):
    payment_id = stack.pay()
    stack.runner.drain()
    code, shown = run(capsys, "payments", "show", payment_id)
    assert code == 0 and shown["status"] == "settled" and shown["tenant_id"] == stack.tenant["tenant_id"]
    code, trace = run(capsys, "trace", payment_id)
    assert code == 0
    stages = []
    for step in trace["steps"]:
        if step["stage"] not in stages:
            stages.append(step["stage"])
        assert step["since_previous_ms"] >= 0
    assert stages == ["validation", "risk", "routing", "authorization", "capture", "settlement", "notification"]
    assert trace["total_ms"] >= max(s["since_previous_ms"] for s in trace["steps"])


def test_unknown_payment_is_a_clear_error(stack, capsys):
    code, out = run(capsys, "payments", "show", "pay_01JD0000000000000000000000")
    assert code == 2 and "no payment" in out["error"]


def test_dlq_list_and_redrive(stack, capsys):
    payment_id = stack.pay()
    stack.runner.drain()
    # A record this stage cannot read lands in its DLQ, naming the payment...
    stack.platform.bus.publish([OutRecord("payments.initiated", payment_id, b"{broken",
                                          (("tenant_id", stack.tenant["tenant_id"].encode()),))])
    stack.runner.drain()
    code, entries = run(capsys, "dlq", "list")
    assert code == 0 and len(entries) == 1
    entry = entries[0]
    assert entry["stage"] == "validation" and entry["key"] == payment_id and "not JSON" in entry["error"]
    code, filtered = run(capsys, "dlq", "list", "--stage", "risk")
    assert filtered == []
    # ...and redrive puts the original record back on its topic, once.
    code, report = run(capsys, "dlq", "redrive", "--id", entry["entry_id"])
    assert code == 0 and report["redriven"] == 1 and report["payments"] == [payment_id]
    replayed = [r for r in stack.platform.bus.read_all("payments.initiated") if r.value == b"{broken"]
    assert len(replayed) == 2
    code, entries = run(capsys, "dlq", "list")
    assert entries == []
    code, report = run(capsys, "dlq", "redrive", "--id", entry["entry_id"])
    assert code == 1 and report["redriven"] == 0


def test_ledger_check_finds_an_unbalanced_transaction(stack, capsys):
    stack.pay()
    stack.runner.drain()
    code, report = run(capsys, "ledger", "check")
    assert code == 0 and report["balanced"] and report["transactions"] == 1
    with stack.platform.store.unit_of_work.db.write() as conn:
        conn.execute("UPDATE postings SET amount = amount + 1 WHERE id = (SELECT MIN(id) FROM postings)")
    code, report = run(capsys, "ledger", "check")
    assert code == 1 and not report["balanced"] and len(report["unbalanced"]) == 1


def test_states_prints_the_table(stack, capsys):
    code, states = run(capsys, "states")
    assert code == 0 and states["mermaid"].startswith("stateDiagram-v2")
    assert ["authorizing", "authorize", "authorized"] in states["transitions"]


def test_demo_without_a_running_api_says_so(stack, capsys, tmp_path):
    code, out = run(capsys, "demo", "--count", "1", "--url", "http://127.0.0.1:9", "--api-key", "pk_test_x")
    assert code == 2 and "not answering" in out["error"]


@pytest.mark.parametrize("argv", [["tenant"], ["dlq"], ["nonsense"]])
def test_usage_errors_exit_non_zero(argv):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2


def test_ledger_check_finds_a_balance_that_drifted_from_its_postings(stack, capsys):
    stack.pay()
    stack.runner.drain()
    with stack.platform.store.unit_of_work.db.write() as conn:
        conn.execute("UPDATE balances SET balance = balance - 1 WHERE account = 'merchant_payable'")
    code, report = run(capsys, "ledger", "check")
    assert code == 1 and not report["balanced"] and report["unbalanced"] == []
    assert [d["account"] for d in report["drifted_balances"]] == ["merchant_payable"]


def test_tenant_create_and_delete_keep_the_infra_tenants_file(stack, capsys, tmp_path, monkeypatch):
    import shutil
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    declared = tmp_path / "tenants.json"
    shutil.copy(root / "infra" / "tenants.json", declared)
    monkeypatch.setenv("TENANTS_FILE", str(declared))
    code, created = run(capsys, "tenant", "create", "hooli")
    assert code == 0 and created["tenants_file"] == str(declared)
    sys.path.insert(0, str(root))
    try:
        from infra.settings import load_tenants  # what infra/ deploys one IAM role per tenant from
    finally:
        sys.path.remove(str(root))
    assert (created["tenant_id"], "hooli") in {(t.tenant_id, t.name) for t in load_tenants(declared)}
    code, _ = run(capsys, "tenant", "delete", created["tenant_id"], "--yes")
    assert code == 0
    assert created["tenant_id"] not in {t.tenant_id for t in load_tenants(declared)}
    assert len(load_tenants(declared)) == 2  # the declared ones stay


def test_payctl_follows_the_stack_running_in_its_data_dir(stack, capsys, monkeypatch):
    """Beside `make local-aws` payctl must not read the embedded store: the stack's stack.json says where it
    runs. Here it names an aws-local stack nobody serves, so payctl says so in one line (exit 2)."""
    import os

    from chalicelib.config import Settings
    from laptop import stackfile
    data_dir = Settings.from_env().data_dir
    monkeypatch.delenv("PLATFORM_MODE", raising=False)
    saved = dict(os.environ)

    def payctl(*argv):  # payctl adopts the stack's settings into its process environment: undo it
        try:
            return run(capsys, *argv)
        finally:
            os.environ.clear()
            os.environ.update(saved)
    code, tenants = payctl("tenant", "list")
    assert code == 0 and tenants  # no stack file: the embedded store in DATA_DIR
    stackfile.write(data_dir, {"PLATFORM_MODE": "aws-local", "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
                               "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}, os.getpid())
    try:
        code, out = payctl("tenant", "list")
        assert code == 2 and "make local-aws" in out["error"] and "127.0.0.1:9" in out["error"], out
        assert "\n" not in out["error"]
        try:
            cli.main(["tenant", "list"])  # and in a terminal: one line on stderr, no traceback
        finally:
            os.environ.clear()
            os.environ.update(saved)
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        saved["PLATFORM_MODE"] = os.environ["PLATFORM_MODE"] = "embedded"  # what the caller sets wins
        assert payctl("tenant", "list")[0] == 0
        del saved["PLATFORM_MODE"], os.environ["PLATFORM_MODE"]
        stackfile.remove(data_dir, os.getpid())
        stackfile.write(data_dir, {"PLATFORM_MODE": "aws-local"}, 2 ** 22 + 12345)  # its process is gone
        assert payctl("tenant", "list")[0] == 0
    finally:
        (data_dir / stackfile.STACK_FILE).unlink(missing_ok=True)
