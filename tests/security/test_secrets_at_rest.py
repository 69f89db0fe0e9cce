"""Webhook secrets and PSP credentials are stored only encrypted: the raw bytes of every stored
file hold neither, the platform still opens them, and crypto-shredding closes the tenant's for good."""
from __future__ import annotations

import base64
import io
import json

import orjson
import pytest

from payctl import cli
from chalicelib.services import tenants as tenancy
from chalicelib.adapters.keyring import DecryptionError
from chalicelib.config import ConfigError, Settings
from chalicelib.connectors import open_config, seal_credential
from chalicelib import bootstrap

from ..integration.conftest import stack  # noqa: F401 - the in-process platform fixture
from .pan_scan import sqlite_files


def _stored_bytes(root) -> bytes:
    """Every byte of every file under the data dir (SQLite .db, -wal, keyring, audit log)."""
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def _variants(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [raw, base64.b64encode(raw), raw.hex().encode(), secret.encode("utf-16-le")]


def test_webhook_secret_is_stored_only_encrypted_and_shreds_with_the_tenant(stack):
    platform, data = stack.platform, stack.platform.settings.data_dir
    made = tenancy.create_tenant(platform, "hooked", webhook_url="https://merchant.example/hooks")
    secret, tid = made["webhook_secret"], made["tenant_id"]
    assert secret.startswith("whsec_")
    stored = platform.store.tenants.get_tenant(tid)["webhook"]
    assert set(stored) == {"url", "secret_enc"}
    assert sqlite_files(data) and all(v not in _stored_bytes(data) for v in _variants(secret))
    blob = base64.b64decode(stored["secret_enc"])
    assert platform.keys.decrypt(tid, blob) == secret.encode()  # the notification stage can sign with it
    with pytest.raises(DecryptionError):
        platform.keys.decrypt(stack.tenant_id, blob)  # under this tenant's key only
    tenancy.delete_tenant(platform, tid)
    assert platform.store.tenants.get_tenant(tid)["webhook"]["secret_enc"] == stored["secret_enc"]  # still stored...
    with pytest.raises(DecryptionError):
        platform.keys.decrypt(tid, blob)  # ... and open for nobody


def test_psp_credential_is_written_down_only_sealed(stack, capsys, monkeypatch):
    credential = "sk_live_psp_Zq8Hc2ZLk3T4"
    monkeypatch.setattr("sys.stdin", io.StringIO(credential + "\n"))
    assert cli.main(["psp", "seal", "sim-a", "--json"]) == 0
    sealed = json.loads(capsys.readouterr().out)
    assert sealed["name"] == "sim-a" and credential not in json.dumps(sealed)
    config = [{"name": "sim-a", "type": "simulator", "base_url": stack.sim_url, "api_key_enc": sealed["api_key_enc"]}]
    monkeypatch.setenv("PSP_CONFIG", orjson.dumps(config).decode())
    platform = bootstrap.build(Settings.from_env())
    connector = platform.connector("sim-a")
    assert connector._api_key.reveal() == credential  # opened in the process that calls the PSP ...
    assert credential not in repr(connector) and credential not in repr(open_config(config[0], platform.keys))
    data = platform.settings.data_dir
    assert all(v not in _stored_bytes(data) for v in _variants(credential))  # ... and nowhere at rest


def test_a_sealed_credential_that_does_not_open_is_a_clear_config_error(stack, monkeypatch):
    good = seal_credential(stack.platform.keys, "sk_test_1")
    tampered = base64.b64encode(base64.b64decode(good)[:-1] + b"\x00").decode()
    for cfg, why in (({"api_key_enc": tampered}, "does not open"), ({"api_key_enc": "%%%"}, "not a sealed"),
                     ({"api_key_enc": good, "api_key": "sk_test_1"}, "not both")):
        monkeypatch.setenv("PSP_CONFIG", orjson.dumps([{"name": "sim-a", "type": "simulator",
                                                         "base_url": stack.sim_url, **cfg}]).decode())
        with pytest.raises(ConfigError, match=why) as e:
            bootstrap.build(Settings.from_env())
        assert "sk_test_1" not in str(e.value)
