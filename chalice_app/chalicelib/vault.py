"""Tokenization: a PAN or IBAN becomes a token; only ciphertext is stored.

The secret is envelope-encrypted under the tenant's data key and written in
the same unit of work as the payment that refers to it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import ids

if TYPE_CHECKING:  # the ports import Vault for Platform.vault
    from .ports import KeyService, Secrets


class Vault:
    def __init__(self, secrets: Secrets, keys: KeyService):
        self.secrets, self.keys = secrets, keys

    def tokenize(self, tenant_id: str, secret: str) -> tuple[str, tuple[str, str, bytes]]:
        """A new token and the (tenant, token, ciphertext) row to commit with the payment."""
        token = ids.new_id("tok")
        return token, (tenant_id, token, self.keys.encrypt(tenant_id, secret.encode()))

    def reveal(self, tenant_id: str, token: str) -> str:
        """Decrypt a token's secret for one PSP call or check. LookupError if unknown."""
        blob = self.secrets.get_secret(tenant_id, token)
        if blob is None:
            raise LookupError(f"vault has no token {token} for tenant {tenant_id}")
        return self.keys.decrypt(tenant_id, blob).decode()
