"""Contract suite for the KeyService port (envelope encryption, crypto-shredding).

Subclass, implement `make_keys` and name the adapter's error:

    class TestKmsKeys(KeyServiceContract):
        decryption_error = KmsDecryptionError
        def make_keys(self, tmp_path):
            return KmsKeyService(client=moto_kms, alias_prefix=f"alias/t{abs(hash(tmp_path))}")

Factory rule: a second call with the same `tmp_path` is another process's view
of the same keys (same keyring file, same KMS keys). Only Protocol methods are called.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.ports import KeyService

from .factories import KnownBugs, close_quietly

TENANTS = ("ten_a", "ten_b", "ten_ü")


class KeyServiceContract(KnownBugs):
    """What every KeyService must do (ports.KeyService)."""

    decryption_error: type[Exception] = Exception  # the adapter's own "cannot open this blob"

    def make_keys(self, tmp_path: Path) -> KeyService:
        raise NotImplementedError

    @pytest.fixture
    def keys(self, tmp_path: Path):
        k = self.make_keys(tmp_path)
        yield k
        close_quietly(k)

    @pytest.fixture
    def other_process(self, tmp_path: Path, keys):
        k = self.make_keys(tmp_path)
        yield k
        close_quietly(k)

    @settings(max_examples=25, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors])
    @given(plaintext=st.binary(max_size=512), tenant=st.sampled_from(TENANTS))
    def test_encrypt_decrypt_round_trip(self, keys, plaintext, tenant):
        blob = keys.encrypt(tenant, plaintext)
        assert isinstance(blob, bytes) and (len(plaintext) < 8 or plaintext not in blob)
        assert keys.decrypt(tenant, blob) == plaintext

    def test_same_plaintext_encrypts_differently(self, keys):
        pan = b"4242424242424242"
        one, two = keys.encrypt("ten_a", pan), keys.encrypt("ten_a", pan)
        assert one != two  # a fresh nonce each time: equal PANs are not linkable
        assert keys.decrypt("ten_a", one) == keys.decrypt("ten_a", two) == pan

    def test_another_tenant_cannot_decrypt(self, keys):
        blob = keys.encrypt("ten_a", b"DE89370400440532013000")
        with pytest.raises(self.decryption_error):
            keys.decrypt("ten_never_seen", blob)
        keys.encrypt("ten_b", b"b's own secret")
        with pytest.raises(self.decryption_error):
            keys.decrypt("ten_b", blob)
        assert keys.decrypt("ten_a", blob) == b"DE89370400440532013000"

    @pytest.mark.parametrize("tamper", ["first-byte", "middle-byte", "last-byte", "truncated", "extended",
                                        "empty", "other-ciphertext-tail"])
    def test_tampered_ciphertext_fails(self, keys, tamper):
        blob = keys.encrypt("ten_a", b"4242424242424242")
        flip = lambda b, i: b[:i] + bytes([b[i] ^ 0x01]) + b[i + 1:]  # noqa: E731
        bad = {"first-byte": lambda: flip(blob, 0), "middle-byte": lambda: flip(blob, len(blob) // 2),
               "last-byte": lambda: flip(blob, len(blob) - 1), "truncated": lambda: blob[:-1],
               "extended": lambda: blob + b"\x00", "empty": lambda: b"",
               "other-ciphertext-tail": lambda: blob[:len(blob) // 2] + keys.encrypt("ten_a", b"5555555555554444")[
                   len(blob) // 2:]}[tamper]()
        with pytest.raises(self.decryption_error):
            keys.decrypt("ten_a", bad)

    def test_destroy_shreds_only_that_tenant(self, keys):
        a1, a2 = keys.encrypt("ten_a", b"a-one"), keys.encrypt("ten_a", b"a-two")
        b = keys.encrypt("ten_b", b"b-one")
        keys.destroy_tenant_key("ten_a")
        for blob in (a1, a2):
            with pytest.raises(self.decryption_error):
                keys.decrypt("ten_a", blob)
        assert keys.decrypt("ten_b", b) == b"b-one"
        assert keys.decrypt("ten_b", keys.encrypt("ten_b", b"b-two")) == b"b-two"

    def test_second_instance_decrypts_what_the_first_encrypted(self, keys, other_process):
        blobs = {t: keys.encrypt(t, f"secret of {t}".encode()) for t in TENANTS}
        for t, blob in blobs.items():
            assert other_process.decrypt(t, blob) == f"secret of {t}".encode()
        back = other_process.encrypt("ten_a", os.urandom(32))
        assert len(keys.decrypt("ten_a", back)) == 32

    def test_destroy_is_seen_by_a_fresh_instance(self, keys, tmp_path):
        blob = keys.encrypt("ten_a", b"shred me")
        keys.encrypt("ten_b", b"keep me")
        keys.destroy_tenant_key("ten_a")
        fresh = self.make_keys(tmp_path)
        try:
            with pytest.raises(self.decryption_error):
                fresh.decrypt("ten_a", blob)
        finally:
            close_quietly(fresh)

    def test_destroy_is_seen_by_an_instance_that_already_used_the_key(self, keys, other_process):
        blob = keys.encrypt("ten_a", b"shred me")
        assert other_process.decrypt("ten_a", blob) == b"shred me"  # a warm worker
        keys.destroy_tenant_key("ten_a")
        with pytest.raises(self.decryption_error):
            other_process.decrypt("ten_a", blob)
