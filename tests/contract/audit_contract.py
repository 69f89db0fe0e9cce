"""Contract suite for the AuditLog port: append-only hash chains per tenant, signed heads.

Subclass and implement `make_audit(tmp_path, signer)`; the same tmp_path opens the same
log (another process's view), different tmp_paths are isolated.
"""
from __future__ import annotations

import threading
from pathlib import Path

import orjson
import pytest

from chalicelib.audit.chain import GENESIS, HeadSigner, chain_hash, chain_name
from chalicelib.ports import AuditLog, AuditTampered
from chalicelib.services.audit import verify_tenant

from .factories import KnownBugs, close_quietly

KEY = b"k" * 32


def body(n: int, **extra) -> dict:
    return {"action": "payment.validate", "subject": f"pay_{n}", "actor": "stage:validation",
            "at": f"2030-01-01T00:00:{n % 60:02d}Z", "correlation_id": f"corr_{n}", **extra}


class AuditLogContract(KnownBugs):
    def make_audit(self, tmp_path: Path, signer: HeadSigner, region: str = "local-1") -> AuditLog:
        raise NotImplementedError

    @pytest.fixture
    def audit(self, tmp_path: Path):
        a = self.make_audit(tmp_path, HeadSigner(KEY))
        yield a
        close_quietly(a)

    def test_entries_chain_in_order_with_a_signed_head(self, audit):
        added = audit.append("ten_a", [("pay_1@1#0", body(1)), ("pay_1@2#0", body(2))])
        added += audit.append("ten_a", [(None, body(3, action="key.create"))])
        assert [e["seq"] for e in added] == [1, 2, 3]
        rows = audit.rows("ten_a")
        previous = GENESIS
        for (seq, raw, digest), e in zip(rows, added):
            assert orjson.loads(raw)["seq"] == seq and orjson.loads(raw)["tenant_id"] == "ten_a"
            assert digest == chain_hash(previous, raw) == e["hash"]
            previous = digest
        seq, digest, mac = audit.head("ten_a")
        chain = chain_name("ten_a", audit.region)
        assert (seq, digest) == (3, previous) and HeadSigner(KEY).valid(chain, seq, digest, mac)
        assert not HeadSigner(b"x" * 32).valid(chain, seq, digest, mac)
        assert verify_tenant(audit, "ten_a")["ok"]

    def test_tenants_have_separate_chains(self, audit):
        audit.append("ten_a", [(None, body(1))])
        audit.append("ten_b", [(None, body(2)), (None, body(3))])
        assert audit.tenants() == ["ten_a", "ten_b"]
        assert [r[0] for r in audit.rows("ten_a")] == [1] and [r[0] for r in audit.rows("ten_b")] == [1, 2]
        assert audit.head("ten_c") is None and audit.rows("ten_c") == []

    def test_each_region_appends_to_its_own_chain_of_a_tenant(self, tmp_path):
        """Two regions on one replicated log: each appends only to its own chain (two appenders of
        one chain would both take the next seq and fork it under last-writer-wins)."""
        a = self.make_audit(tmp_path, HeadSigner(KEY), region="eu-west-1")
        b = self.make_audit(tmp_path, HeadSigner(KEY), region="us-east-1")
        try:
            a.append("ten_a", [("pay_1@1#0", body(1)), (None, body(2))])
            b.append("ten_a", [("pay_1@1#0", body(1))])  # the same source, in the other region's chain
            b.append("ten_b", [(None, body(3))])
            assert [r[0] for r in a.rows("ten_a")] == [1, 2] and [r[0] for r in b.rows("ten_a")] == [1]
            assert [r[0] for r in a.rows("ten_a", "us-east-1")] == [1]
            assert orjson.loads(b.rows("ten_a")[0][1])["region"] == "us-east-1"
            assert a.tenants() == b.tenants() == ["ten_a", "ten_b"]
            assert a.regions("ten_a") == ["eu-west-1", "us-east-1"] and b.regions("ten_b") == ["us-east-1"]
            for region in ("eu-west-1", "us-east-1"):
                assert verify_tenant(a, "ten_a", region=region)["ok"]
            # A head signed for one region's chain does not verify as the other's.
            seq, digest, mac = a.head("ten_a", "us-east-1")
            assert not HeadSigner(KEY).valid(chain_name("ten_a", "eu-west-1"), seq, digest, mac)
        finally:
            close_quietly(a)
            close_quietly(b)

    def test_a_source_is_chained_once(self, audit):
        """A chainer that crashed after appending, before forgetting its rows, runs again: no duplicates."""
        first = audit.append("ten_a", [("pay_1@1#c", body(1)), ("pay_1@1#0", body(2))])
        again = audit.append("ten_a", [("pay_1@1#c", body(1)), ("pay_1@1#0", body(2)), ("pay_1@2#0", body(3))])
        assert len(first) == 2 and [e["seq"] for e in again] == [3]
        assert audit.append("ten_a", [("pay_1@2#0", body(3))]) == []
        assert audit.append("ten_b", [("pay_1@1#c", body(1))])[0]["seq"] == 1  # sources are per tenant

    def test_long_batches_are_chained_whole(self, audit):
        added = audit.append("ten_a", [(f"pay_{n}@1#c", body(n)) for n in range(120)])
        assert [e["seq"] for e in added] == list(range(1, 121)) and audit.head("ten_a")[0] == 120
        assert verify_tenant(audit, "ten_a")["entries"] == 120

    def test_another_process_sees_the_same_log(self, audit, tmp_path):
        audit.append("ten_a", [(None, body(1))])
        other = self.make_audit(tmp_path, HeadSigner(KEY))
        other.append("ten_a", [(None, body(2))])
        assert [r[0] for r in audit.rows("ten_a")] == [1, 2] and verify_tenant(audit, "ten_a")["ok"]
        close_quietly(other)

    def test_concurrent_writers_never_fork_a_chain(self, audit, tmp_path):
        logs = [audit] + [self.make_audit(tmp_path, HeadSigner(KEY)) for _ in range(3)]
        errors: list[BaseException] = []

        def write(log, w: int) -> None:
            try:
                for n in range(5):
                    log.append("ten_a", [(f"w{w}-{n}", body(n))])
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
        threads = [threading.Thread(target=write, args=(log, w)) for w, log in enumerate(logs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        result = verify_tenant(audit, "ten_a")
        assert result["ok"] and result["entries"] == 20
        for log in logs[1:]:
            close_quietly(log)

    def test_a_head_signed_under_another_key_is_refused(self, audit, tmp_path):
        audit.append("ten_a", [(None, body(1))])
        forger = self.make_audit(tmp_path, HeadSigner(b"f" * 32))
        with pytest.raises(AuditTampered):
            forger.append("ten_a", [(None, body(2))])
        assert [r[0] for r in audit.rows("ten_a")] == [1]
        close_quietly(forger)

    def test_meta_first_writer_wins(self, audit, tmp_path):
        assert audit.meta("head-mac-key") is None
        assert audit.put_meta_if_absent("head-mac-key", b"\x00first") == b"\x00first"
        other = self.make_audit(tmp_path, HeadSigner(KEY))
        assert other.put_meta_if_absent("head-mac-key", b"second") == b"\x00first"
        assert audit.meta("head-mac-key") == b"\x00first"
        close_quietly(other)
