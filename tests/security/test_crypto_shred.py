"""Crypto-shredding: `payctl tenant delete` destroys the tenant's data key; its secrets are gone for good."""
from __future__ import annotations

import base64
import json

import pytest

from payctl import cli
from chalicelib.adapters.keyring import DecryptionError, LocalKeyring

from ..integration.conftest import stack  # noqa: F401 - the in-process platform fixture


def run(capsys, *argv: str):
    code = cli.main([*argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def test_deleted_tenant_secrets_cannot_be_decrypted(stack, capsys, tmp_path):
    a, b = stack.tenant_id, stack.other["tenant_id"]
    mine = stack.pay("4242424242424242")
    r = stack.post("/v1/payments", {"amount": 500, "currency": "EUR", "payment_method": {
        "type": "card", "card": {"number": "5555555555554444", "exp_month": 1, "exp_year": 2031}}},
        stack.other, **{"Idempotency-Key": "b-1"})
    assert r.status_code == 202
    other_pid = json.loads(r.body)["id"]
    stack.runner.drain()
    vault = stack.platform.vault
    token = stack.stored(mine).payment_method["card"]["token"]
    other_token = stack.stored(other_pid, stack.other).payment_method["card"]["token"]
    hook = base64.b64decode(stack.platform.store.tenants.get_tenant(a)["webhook"]["secret_enc"])
    assert vault.reveal(a, token) == "4242424242424242"  # readable before
    stack.platform.keys.decrypt(a, hook)

    code, out = run(capsys, "tenant", "delete", a)
    assert code == 2 and "--yes" in out["error"]
    assert vault.reveal(a, token) == "4242424242424242"  # nothing happened without --yes
    code, deleted = run(capsys, "tenant", "delete", a, "--yes")
    assert code == 0 and deleted["data_key"] == "destroyed" and deleted["keys_revoked"] == 1

    # The ciphertext is still stored, and nothing opens it: this process, a fresh keyring, any tenant.
    blob = stack.platform.store.secrets.get_secret(a, token)
    assert blob is not None
    fresh = LocalKeyring(tmp_path / "data" / "keyring.json")
    for keys in (stack.platform.keys, fresh):
        with pytest.raises(DecryptionError):
            keys.decrypt(a, blob)
        with pytest.raises(DecryptionError):
            keys.decrypt(a, hook)
        with pytest.raises(DecryptionError):
            keys.decrypt(b, blob)
        with pytest.raises(DecryptionError):  # and no new data key is made for the deleted tenant
            keys.encrypt(a, b"new secret")
    with pytest.raises(DecryptionError):
        vault.reveal(a, token)
    assert b"4242424242424242" not in (tmp_path / "data" / "keyring.json").read_bytes()
    # Its keys are refused; the other tenant is untouched.
    assert stack.get("/v1/payments").status_code == 401
    assert vault.reveal(b, other_token) == "5555555555554444"
    assert stack.get("/v1/payments", stack.other).status_code == 200
    assert stack.platform.store.tenants.get_tenant(a)["deleted_at"] == deleted["deleted_at"]


def test_delete_unknown_tenant_fails(stack, capsys):
    code, out = run(capsys, "tenant", "delete", "ten_nobody", "--yes")
    assert code == 2 and "no tenant" in out["error"]
