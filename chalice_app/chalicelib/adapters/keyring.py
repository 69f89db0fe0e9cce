"""Embedded KeyService: envelope encryption with a local keyring file.

The keyring holds a platform key and, per tenant, a data key wrapped by it:
the same shape as KMS GenerateDataKey under a CMK. Ciphertexts are AES-256-GCM
with the tenant id as associated data, so a blob moved to another tenant
fails to decrypt. Destroying a tenant's wrapped key shreds its data.
"""
from __future__ import annotations

import base64
import fcntl
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = b"k1"


class DecryptionError(Exception):
    """Ciphertext cannot be opened: wrong tenant, tampered, or key destroyed."""


class LocalKeyring:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._cache: dict[str, bytes] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()
        with self._locked() as ring:
            if "platform_key" not in ring:
                ring["platform_key"] = base64.b64encode(AESGCM.generate_key(256)).decode()
                ring.setdefault("tenants", {})
                self._save(ring)

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        # An flock on a side file serialises processes; the ring is rewritten atomically.
        with self._lock, open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield orjson.loads(self.path.read_bytes()) if self.path.exists() else {}
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _save(self, ring: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(orjson.dumps(ring))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def _ring_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _data_key(self, tenant_id: str, create: bool) -> bytes:
        # The ring is replaced atomically on every change: a new inode means another
        # process may have shredded a key we cached, so forget them all.
        stamp = self._ring_stamp()
        if stamp != self._stamp:
            self._cache.clear()
            self._stamp = stamp
        key = self._cache.get(tenant_id)
        if key is not None:
            return key
        with self._locked() as ring:
            platform = AESGCM(base64.b64decode(ring["platform_key"]))
            entry = ring["tenants"].get(tenant_id)
            if entry is None or entry.get("destroyed"):
                if not create or (entry and entry.get("destroyed")):
                    raise DecryptionError(f"no data key for tenant {tenant_id}")
                key = AESGCM.generate_key(256)
                nonce = os.urandom(12)
                wrapped = nonce + platform.encrypt(nonce, key, tenant_id.encode())
                ring["tenants"][tenant_id] = {"wrapped": base64.b64encode(wrapped).decode()}
                self._save(ring)
            else:
                wrapped = base64.b64decode(entry["wrapped"])
                key = platform.decrypt(wrapped[:12], wrapped[12:], tenant_id.encode())
        self._cache[tenant_id] = key
        return key

    def encrypt(self, tenant_id: str, plaintext: bytes) -> bytes:
        """AES-GCM under the tenant's data key; associated data = tenant id."""
        nonce = os.urandom(12)
        return _VERSION + nonce + AESGCM(self._data_key(tenant_id, create=True)).encrypt(
            nonce, plaintext, tenant_id.encode())

    def decrypt(self, tenant_id: str, blob: bytes) -> bytes:
        """Open a blob made by encrypt() for the same tenant."""
        if not blob.startswith(_VERSION) or len(blob) < 2 + 12 + 16:
            raise DecryptionError("not a keyring ciphertext")
        try:
            return AESGCM(self._data_key(tenant_id, create=False)).decrypt(blob[2:14], blob[14:], tenant_id.encode())
        except InvalidTag:
            raise DecryptionError(f"ciphertext does not belong to tenant {tenant_id}") from None

    def destroy_tenant_key(self, tenant_id: str) -> None:
        """Crypto-shred: forget the tenant's wrapped data key for good."""
        with self._locked() as ring:
            ring["tenants"][tenant_id] = {"destroyed": True}
            self._save(ring)
        self._cache.pop(tenant_id, None)
