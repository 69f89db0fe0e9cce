"""KeyService on AWS KMS: envelope encryption with one data key per tenant.

The data key comes from GenerateDataKey under the platform key (KMS_KEY_ID) with
EncryptionContext {"tenant_id": ...}; only its KMS-wrapped form is stored, as the
tenant's datakey item in the payments table, so every worker and Lambda shares
it. Plaintext data keys are cached (bounded size and age) to spare KMS calls;
each use still reads the wrapped key item (one consistent GetItem), so a
crypto-shred — deleting the wrapped key — is seen by every warm instance at once.

Ciphertext: b"kms1" + 12-byte nonce + AES-256-GCM(plaintext), associated data =
tenant id, the same shape as the local keyring's.
"""
from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from typing import Any, Callable

from botocore.exceptions import BotoCoreError, ClientError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import KeyServiceUnavailable
from ..keyring import DecryptionError

_VERSION = b"kms1"
_NONCE = 12


class KmsDecryptionError(DecryptionError):
    """Ciphertext cannot be opened: wrong tenant, tampered, or the tenant's key was destroyed."""


class KmsKeys:
    def __init__(self, kms: Any, dynamodb: Any, table: str, key_id: str, cache_size: int = 1_000,
                 cache_ttl_s: float = 300.0, clock: Callable[[], float] = time.monotonic):
        self.kms, self.dynamodb, self.table, self.key_id = kms, dynamodb, table, key_id
        self.cache_size, self.cache_ttl_s, self.clock = cache_size, cache_ttl_s, clock
        self._cache: OrderedDict[bytes, tuple[bytes, float]] = OrderedDict()  # wrapped key -> (key, expires)
        self._lock = threading.Lock()

    # -- the tenant's wrapped key in the table --------------------------------------------
    def _key(self, tenant_id: str) -> dict[str, Any]:
        return {"pk": {"S": f"{tenant_id}#datakey"}, "sk": {"S": "datakey"}}

    def _wrapped(self, tenant_id: str) -> dict[str, Any] | None:
        try:
            return self.dynamodb.get_item(TableName=self.table, Key=self._key(tenant_id),
                                          ConsistentRead=True).get("Item")
        except (ClientError, BotoCoreError) as e:
            raise KeyServiceUnavailable(f"reading the data key of tenant {tenant_id}: {e}") from e

    def _create(self, tenant_id: str) -> bytes:
        try:
            out = self.kms.generate_data_key(KeyId=self.key_id, KeySpec="AES_256",
                                             EncryptionContext={"tenant_id": tenant_id})
        except (ClientError, BotoCoreError) as e:
            raise KeyServiceUnavailable(f"GenerateDataKey under {self.key_id} for {tenant_id}: {e}") from e
        wrapped = out["CiphertextBlob"]
        try:
            self.dynamodb.put_item(TableName=self.table, ConditionExpression="attribute_not_exists(pk)", Item={
                **self._key(tenant_id), "wrapped": {"B": wrapped}, "kms_key_id": {"S": out.get("KeyId", "")}})
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return b""  # another worker created (or shredded) it first: use what is stored
            raise KeyServiceUnavailable(f"storing the data key of tenant {tenant_id}: {e}") from e
        self._remember(wrapped, out["Plaintext"])
        return wrapped

    def _data_key(self, tenant_id: str, create: bool) -> bytes:
        item = self._wrapped(tenant_id)
        if item is None and create:
            self._create(tenant_id)
            item = self._wrapped(tenant_id)
        if item is None or "wrapped" not in item:
            raise KmsDecryptionError(f"no data key for tenant {tenant_id}")
        wrapped = bytes(item["wrapped"]["B"])
        with self._lock:
            hit = self._cache.get(wrapped)
            if hit and hit[1] > self.clock():
                self._cache.move_to_end(wrapped)
                return hit[0]
        try:
            key = self.kms.decrypt(CiphertextBlob=wrapped, EncryptionContext={"tenant_id": tenant_id})["Plaintext"]
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("InvalidCiphertextException", "IncorrectKeyException"):
                raise KmsDecryptionError(f"data key of tenant {tenant_id} does not open under its context") from None
            raise KeyServiceUnavailable(f"KMS Decrypt for tenant {tenant_id}: {e}") from e
        except BotoCoreError as e:
            raise KeyServiceUnavailable(f"KMS Decrypt for tenant {tenant_id}: {e}") from e
        self._remember(wrapped, key)
        return key

    def _remember(self, wrapped: bytes, key: bytes) -> None:
        with self._lock:
            self._cache[wrapped] = (key, self.clock() + self.cache_ttl_s)
            self._cache.move_to_end(wrapped)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    # -- KeyService ---------------------------------------------------------------------
    def encrypt(self, tenant_id: str, plaintext: bytes) -> bytes:
        """AES-GCM under the tenant's data key (created on first use); associated data = tenant id."""
        nonce = os.urandom(_NONCE)
        return _VERSION + nonce + AESGCM(self._data_key(tenant_id, create=True)).encrypt(
            nonce, plaintext, tenant_id.encode())

    def decrypt(self, tenant_id: str, blob: bytes) -> bytes:
        """Open a blob made by encrypt() for the same tenant."""
        if not blob.startswith(_VERSION) or len(blob) < len(_VERSION) + _NONCE + 16:
            raise KmsDecryptionError("not a KMS envelope ciphertext")
        start = len(_VERSION)
        try:
            return AESGCM(self._data_key(tenant_id, create=False)).decrypt(
                blob[start:start + _NONCE], blob[start + _NONCE:], tenant_id.encode())
        except InvalidTag:
            raise KmsDecryptionError(f"ciphertext does not belong to tenant {tenant_id}") from None

    def destroy_tenant_key(self, tenant_id: str) -> None:
        """Crypto-shred: replace the wrapped key by a tombstone (no new key is ever made) and evict it."""
        item = self._wrapped(tenant_id)
        try:
            self.dynamodb.put_item(TableName=self.table, Item={**self._key(tenant_id), "destroyed": {"BOOL": True}})
        except (ClientError, BotoCoreError) as e:
            raise KeyServiceUnavailable(f"destroying the data key of tenant {tenant_id}: {e}") from e
        if item and "wrapped" in item:
            with self._lock:
                self._cache.pop(bytes(item["wrapped"]["B"]), None)
