"""argon2id hashing, the password policy, and rehash on login (fake credential store)."""

from __future__ import annotations

import pytest

from procall.directory import Account, PasswordAuthenticator, User
from procall.directory.passwords import HashParameters, PasswordHasher, PasswordPolicy
from procall.errors import InvalidArgument

CHEAP = HashParameters(time_cost=1, memory_kib=64, parallelism=1)
CHEAPER = HashParameters(time_cost=2, memory_kib=32, parallelism=1)


class MemoryCredentials:
    """A ``CredentialStore`` in a dict (the seam between domain and SQL)."""

    def __init__(self) -> None:
        self.hashes: dict[str, str] = {}
        self.user = User("u1", "erin", "Erin")

    async def find_credentials(self, login: str) -> Account | None:
        if login != "erin":
            return None
        return Account(self.user, self.hashes.get("u1", ""))

    async def replace_password_hash(self, user_id: str, old_hash: str, new_hash: str) -> bool:
        if self.hashes.get(user_id) != old_hash:
            return False
        self.hashes[user_id] = new_hash
        return True


async def test_hashes_are_salted_argon2id_and_verify() -> None:
    hasher = PasswordHasher(CHEAP)
    first, second = await hasher.hash("correct horse"), await hasher.hash("correct horse")
    assert first.startswith("$argon2id$") and first != second
    assert "correct horse" not in first
    assert await hasher.verify(first, "correct horse")
    assert not await hasher.verify(first, "wrong horse")
    assert not await hasher.verify("not a hash", "correct horse")
    assert not hasher.needs_rehash(first)
    assert PasswordHasher(CHEAPER).needs_rehash(first)
    assert hasher.needs_rehash("garbage")


async def test_login_rehashes_when_the_parameters_changed() -> None:
    store = MemoryCredentials()
    store.hashes["u1"] = await PasswordHasher(CHEAPER).hash("erin-secret")
    old = store.hashes["u1"]
    auth = PasswordAuthenticator(store, PasswordHasher(CHEAP))
    account = await auth.find_account("erin")
    assert not await auth.check_password(account, "wrong")
    assert store.hashes["u1"] == old
    assert await auth.check_password(account, "erin-secret")
    assert store.hashes["u1"] != old and "m=64,t=1,p=1" in store.hashes["u1"]
    account = await auth.find_account("erin")
    assert await auth.check_password(account, "erin-secret")


async def test_unknown_users_and_users_without_password_never_pass() -> None:
    store = MemoryCredentials()
    auth = PasswordAuthenticator(store, PasswordHasher(CHEAP))
    assert await auth.find_account("nobody") is None
    assert not await auth.check_password(None, "anything")
    assert not await auth.check_password(await auth.find_account("erin"), "")


def test_policy_names_the_field() -> None:
    policy = PasswordPolicy(min_chars=8)
    policy.check("password", "long enough")
    for bad in ("short", "x" * 1025, "with\x00nul-byte"):
        with pytest.raises(InvalidArgument) as failure:
            policy.check("password", bad)
        assert [v.field for v in failure.value.violations] == ["password"]
