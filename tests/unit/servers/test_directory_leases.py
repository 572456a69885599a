"""The Directory's lease check: another admin's lease refuses the write, the operator (no
user) is refused too, and unreachable leases let the write pass (with a warning)."""

from __future__ import annotations

import logging

import pytest

from procall.errors import FailedPrecondition, Unavailable
from procall.leases import EditLeases
from procall.servers.directory.leased import LeaseCheck
from tests.helpers.leases import MemoryLeaseStore


class _Down:
    async def fencing_for(self, resource: str, user_id: str, lease_id: str) -> int | None:
        raise Unavailable.backend("Redis (edit leases)")


async def test_a_leased_user_or_group_is_refused_to_everyone_but_the_holder() -> None:
    leases = EditLeases(MemoryLeaseStore(), "uc-1")
    await leases.acquire("root", "user/u1")
    await leases.acquire("root", "group/g1")
    check = LeaseCheck(leases)  # no caller bound: the local operator, who holds no lease
    with pytest.raises(FailedPrecondition) as refused:
        await check.user("u1")
    assert refused.value.metadata["holder_user_id"] == "root"
    with pytest.raises(FailedPrecondition):
        await check.group("g1")
    await check.user("u2")  # nobody leased it
    await check.user("")  # no id, no bad shape: the write's own validation answers
    await check.user("a/b")
    await LeaseCheck(None).user("u1")  # no leases configured


async def test_unreachable_leases_let_the_write_pass_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        await LeaseCheck(_Down()).user("u1")
    assert "user/u1" in caplog.text
