"""Password hashing (argon2id) and the password policy.

Hashes are argon2id in the PHC string format (``$argon2id$v=19$m=...,t=...,p=...$salt$hash``),
so every stored hash carries the parameters it was made with: when the configured
parameters change, a successful login rehashes the password with the new ones. Hashing
is deliberately slow, so it runs in a worker thread (argon2-cffi releases the GIL) and
never blocks the event loop. Passwords are never logged, stored in clear or returned.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from procall.directory.validation import has_control_chars
from procall.errors import InvalidArgument

__all__ = ["HashParameters", "PasswordHasher", "PasswordPolicy"]

#: Longest password accepted; longer input is refused before it costs a hash.
MAX_PASSWORD_CHARS = 1024


@dataclass(frozen=True)
class HashParameters:
    """argon2id cost parameters (defaults: argon2-cffi's RFC 9106 "low memory" profile)."""

    time_cost: int = argon2.DEFAULT_TIME_COST
    memory_kib: int = argon2.DEFAULT_MEMORY_COST
    parallelism: int = argon2.DEFAULT_PARALLELISM


class PasswordHasher:
    """argon2id hashing, verification and the "does this hash need a rehash" check."""

    def __init__(self, parameters: HashParameters = HashParameters()) -> None:
        self.parameters = parameters
        self._hasher = argon2.PasswordHasher(
            time_cost=parameters.time_cost,
            memory_cost=parameters.memory_kib,
            parallelism=parameters.parallelism,
            type=argon2.Type.ID,
        )
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        """A new salted argon2id hash of ``password`` with the configured parameters."""
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        """Whether ``password`` matches ``password_hash`` (``False`` for a malformed hash)."""

        def check() -> bool:
            try:
                return self._hasher.verify(password_hash, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(check)

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether ``password_hash`` was made with other parameters than the configured ones."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except (InvalidHashError, ValueError):
            return True

    async def waste_time(self, password: str) -> None:
        """Spend about one verification's time, for logins of unknown users.

        Answering an unknown user faster than a known one would tell an attacker which
        names exist; this keeps both paths equally slow.
        """
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash("procall-dummy-password")
        await self.verify(self._dummy_hash, password)


@dataclass(frozen=True)
class PasswordPolicy:
    """What a new password must look like."""

    min_chars: int = 8
    max_chars: int = MAX_PASSWORD_CHARS

    def check(self, field: str, password: str) -> None:
        """Raise ``InvalidArgument`` naming ``field`` unless ``password`` is acceptable."""
        if len(password) < self.min_chars:
            raise InvalidArgument.field(field, f"must be at least {self.min_chars} characters")
        if len(password) > self.max_chars:
            raise InvalidArgument.field(field, f"must be at most {self.max_chars} characters")
        if has_control_chars(password):
            raise InvalidArgument.field(field, "must not contain control characters")
