"""API keys: several per tenant, environment in the prefix, stored only as a keyed hash,
revocation effective at once, administered only through payctl (no admin HTTP API)."""
from __future__ import annotations

import json
import sqlite3

import pytest

import app as app_module
from payctl import cli
from chalicelib.services import tenants as tenancy

from ..integration.conftest import stack  # noqa: F401 - the in-process platform fixture


def run(capsys, *argv: str):
    code = cli.main([*argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def _status(stack, key: str) -> int:
    return stack.client.http.get("/v1/payments", headers={"Authorization": f"Bearer {key}"}).status_code


def test_keys_rotate_create_use_revoke_at_once(stack, capsys):
    tid, first = stack.tenant_id, stack.tenant["api_key"]
    code, made = run(capsys, "tenant", "key", "create", tid)
    assert code == 0 and made["api_key"].startswith("pk_test_") and made["environment"] == "test"
    code, live = run(capsys, "tenant", "key", "create", tid, "--live")
    assert code == 0 and live["api_key"].startswith("pk_live_") and live["environment"] == "live"
    assert _status(stack, first) == _status(stack, made["api_key"]) == _status(stack, live["api_key"]) == 200
    code, keys = run(capsys, "tenant", "key", "list", tid)
    assert code == 0 and len(keys) == 3 and all(k["revoked_at"] is None for k in keys)
    assert not any(k.get("api_key") or k.get("key_hash") for k in keys)  # never the key, never its hash
    # revoke by key id: the very next request with it is refused; the others still work
    code, revoked = run(capsys, "tenant", "key", "revoke", made["key_id"])
    assert code == 0 and revoked["tenant_id"] == tid
    assert _status(stack, made["api_key"]) == 401
    assert _status(stack, first) == _status(stack, live["api_key"]) == 200
    # revoke by prefix (as printed by `key list`)
    code, _ = run(capsys, "tenant", "key", "revoke", live["prefix"])
    assert code == 0 and _status(stack, live["api_key"]) == 401
    code, out = run(capsys, "tenant", "key", "revoke", made["key_id"])
    assert code == 2 and "already revoked" in out["error"]
    code, keys = run(capsys, "tenant", "key", "list", tid)
    assert [k["revoked_at"] is not None for k in keys].count(True) == 2


def test_revoke_refuses_ambiguous_short_or_unknown_names(stack, capsys):
    for name, says in [("pk_test_", "at least 9"), ("pk_", "at least 9"), ("key_0000000000000000", "no API key")]:
        code, out = run(capsys, "tenant", "key", "revoke", name)
        assert code == 2 and says in out["error"], (name, out)
    assert _status(stack, stack.tenant["api_key"]) == 200 and _status(stack, stack.other["api_key"]) == 200


def test_revoke_refuses_a_prefix_naming_two_keys(stack, capsys, monkeypatch):
    made = iter(["pk_test_SAMEaaaa", "pk_test_SAMEbbbb"])
    monkeypatch.setattr(tenancy, "new_api_key", lambda environment="test": next(made))
    a = tenancy.add_key(stack.platform, stack.tenant_id)
    b = tenancy.add_key(stack.platform, stack.other["tenant_id"])
    code, out = run(capsys, "tenant", "key", "revoke", "pk_test_SAME")
    assert code == 2 and "names 2 keys" in out["error"]
    assert _status(stack, a) == _status(stack, b) == 200


def test_key_create_for_an_unknown_tenant_fails(stack, capsys):
    code, out = run(capsys, "tenant", "key", "create", "ten_nobody")
    assert code == 2 and "no tenant" in out["error"]


def test_keys_are_stored_only_as_a_keyed_hash(stack, capsys, tmp_path):
    code, made = run(capsys, "tenant", "key", "create", stack.tenant_id)
    keys = [stack.tenant["api_key"], stack.other["api_key"], made["api_key"]]
    db = tmp_path / "data" / "store.db"
    raw = b"".join(p.read_bytes() for p in db.parent.glob("store.db*"))
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = conn.execute("SELECT key_hash, prefix FROM api_keys").fetchall()
    conn.close()
    pepper = stack.platform.settings.api_key_pepper
    for key in keys:
        assert key.encode() not in raw and key[12:].encode() not in raw
        assert (tenancy.hash_key(pepper, key), key[:12]) in rows or (tenancy.hash_key(pepper, key), key[:8]) in rows
    # keyed: the same key under another pepper hashes differently (a stolen table is not a dictionary)
    assert tenancy.hash_key(b"other-pepper", keys[0]) != tenancy.hash_key(pepper, keys[0])


@pytest.mark.parametrize("header", ["Bearer pk_prod_abc", "Bearer sk_test_abc", "Basic cGs6", "pk_test_x",
                                    "Bearer " + "pk_test_" + "a" * 200])
def test_keys_without_an_environment_prefix_are_refused(stack, header):
    r = stack.client.http.get("/v1/payments", headers={"Authorization": header})
    assert r.status_code == 401


def test_there_is_no_admin_http_api(stack):
    paths = set(app_module.app.routes)
    assert not [p for p in paths if any(w in p for w in ("admin", "tenant", "key", "dlq", "audit"))], paths
    # a tenant key cannot reach anything that creates keys or tenants
    for path in ("/v1/tenants", "/v1/keys", "/admin/keys", "/v1/tenants/keys"):
        r = stack.post(path, {"name": "x"})
        assert r.status_code in (403, 404), (path, r.status_code)


def test_key_ids_never_hold_a_card_number_shaped_digit_run():
    import re
    import secrets as _secrets
    from chalicelib.services import tenants as tenancy
    for _ in range(20000):
        kid = tenancy.key_id(_secrets.token_hex(32))
        assert re.fullmatch(r"key_[a-z2-7]{16}", kid) and not re.search(r"\d{13}", kid)
