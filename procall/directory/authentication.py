"""Password authentication against stored argon2id hashes (the SQL backend).

LDAP authenticates by binding as the user (``procall.storage.ldap``); the SQL
backend stores hashes, and this ``Authenticator`` checks them: verification in a
worker thread, equal time for unknown users, and a rehash with the configured
parameters after a successful login whose hash was made with other ones.
"""

from __future__ import annotations

import logging

from procall.directory.models import Account
from procall.directory.passwords import PasswordHasher
from procall.directory.ports import CredentialStore

__all__ = ["PasswordAuthenticator"]

_log = logging.getLogger(__name__)


class PasswordAuthenticator:
    """``Authenticator`` over a ``CredentialStore`` of argon2id hashes."""

    def __init__(self, store: CredentialStore, hasher: PasswordHasher) -> None:
        self._store = store
        self._hasher = hasher

    async def find_account(self, login: str) -> Account | None:
        """The account for ``login`` (username or principal name) with its hash."""
        return await self._store.find_credentials(login)

    async def check_password(self, account: Account | None, password: str) -> bool:
        """Verify against the stored hash; rehash on success when the parameters changed."""
        if account is None or not account.credential:
            await self._hasher.waste_time(password)
            return False
        if not await self._hasher.verify(account.credential, password):
            return False
        if self._hasher.needs_rehash(account.credential):
            new_hash = await self._hasher.hash(password)
            if await self._store.replace_password_hash(
                account.user.user_id, account.credential, new_hash
            ):
                _log.info("rehashed the password of user %s", account.user.user_id)
        return True
