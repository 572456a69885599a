"""The edit-lease rules (``EditLeases``) over the in-memory store held to the Redis store's
behaviour suite, on a clock the tests move."""

from __future__ import annotations

import pytest

from procall.errors import FailedPrecondition, InvalidArgument, NotFound
from procall.leases import (
    EditLeases,
    check_resource,
    new_lease_id,
    resource_of_lease,
)
from tests.helpers.leases import MemoryLeaseStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> MemoryLeaseStore:
    return MemoryLeaseStore(clock)


def leases_on(store: MemoryLeaseStore, clock: Clock, server: str) -> EditLeases:
    return EditLeases(store, server, clock)


@pytest.fixture
def uc1(store: MemoryLeaseStore, clock: Clock) -> EditLeases:
    return leases_on(store, clock, "uc-1")


@pytest.fixture
def uc2(store: MemoryLeaseStore, clock: Clock) -> EditLeases:
    return leases_on(store, clock, "uc-2")


async def test_a_lease_held_by_another_admin_is_refused_naming_the_holder(
    uc1: EditLeases, uc2: EditLeases, clock: Clock
) -> None:
    lease = await uc1.acquire("root", "user/u1")
    assert lease.expire_time == clock.now + 60 and lease.fencing == 1
    assert lease.server_id == "uc-1"
    with pytest.raises(FailedPrecondition) as refused:
        await uc2.acquire("admin2", "user/u1")
    error = refused.value
    assert error.reason == "LEASE_HELD"
    assert error.metadata["holder_user_id"] == "root"
    assert error.metadata["resource"] == "user/u1"
    assert error.metadata["since"].startswith("2027-01-15T")
    assert "root" in error.message and "user/u1" in error.message


async def test_the_holder_acquiring_again_renews(
    uc1: EditLeases, uc2: EditLeases, clock: Clock
) -> None:
    first = await uc1.acquire("root", "group/g1", 10)
    clock.now += 5
    again = await uc2.acquire("root", "group/g1", 100)
    assert again.lease_id == first.lease_id and again.fencing == first.fencing
    assert again.expire_time == clock.now + 100


@pytest.mark.parametrize("ttl", [0.5, 601, -1])
async def test_ttl_out_of_range_is_invalid(uc1: EditLeases, ttl: float) -> None:
    with pytest.raises(InvalidArgument) as bad:
        await uc1.acquire("root", "user/u1", ttl)
    assert bad.value.violations[0].field == "ttl_seconds"


async def test_ttl_bounds_and_default(uc1: EditLeases, clock: Clock) -> None:
    assert (await uc1.acquire("root", "user/a", 1)).expire_time == clock.now + 1
    assert (await uc1.acquire("root", "user/b", 600)).expire_time == clock.now + 600
    assert (await uc1.acquire("root", "user/c", 0)).expire_time == clock.now + 60
    assert (await uc1.acquire("root", "user/d", None)).expire_time == clock.now + 60


@pytest.mark.parametrize(
    "resource",
    [
        "config/global/chat.max_message_bytes",
        "config/local/uc-1/limits.sessions_per_user",
        "user/7f3a",
        "group/sales",
    ],
)
def test_resource_shapes(resource: str) -> None:
    assert check_resource(resource) == resource
    assert resource_of_lease(new_lease_id(resource)) == resource


@pytest.mark.parametrize(
    "resource",
    ["", "user/", "user/a/b", "config/global/", "config/local/uc-1", "chat/x", "group/a b",
     "user/a\x00", "config/global/" + "x" * 500],
)  # fmt: skip
async def test_bad_resources_are_invalid(uc1: EditLeases, resource: str) -> None:
    with pytest.raises(InvalidArgument) as bad:
        await uc1.acquire("root", resource)
    assert bad.value.violations[0].field == "resource"


def test_lease_ids_are_opaque_and_fresh() -> None:
    assert new_lease_id("user/u1") != new_lease_id("user/u1")
    for garbage in ("", "abc", "abc.", "abc.!!!", "abc.dXNlcg"):  # the last: "user"
        assert resource_of_lease(garbage) is None


async def test_expiry_lets_another_admin_in_with_a_higher_fencing_number(
    uc1: EditLeases, uc2: EditLeases, clock: Clock
) -> None:
    old = await uc1.acquire("root", "user/u1", 5)
    clock.now += 5.01
    new = await uc2.acquire("admin2", "user/u1")
    assert new.fencing > old.fencing and new.holder_user_id == "admin2"
    # the first admin's renew and release of its lapsed lease fail, naming the new holder
    for attempt in (uc1.renew("root", old.lease_id), uc1.release("root", old.lease_id)):
        with pytest.raises(FailedPrecondition) as refused:
            await attempt
        assert refused.value.metadata["holder_user_id"] == "admin2"


async def test_renew_and_release_of_a_lapsed_lease_nobody_took_are_not_found(
    uc1: EditLeases, clock: Clock
) -> None:
    old = await uc1.acquire("root", "user/u1", 5)
    clock.now += 6
    with pytest.raises(NotFound):
        await uc1.renew("root", old.lease_id)
    with pytest.raises(NotFound):
        await uc1.release("root", old.lease_id)
    with pytest.raises(NotFound):
        await uc1.renew("root", "not-a-lease")
    with pytest.raises(InvalidArgument):
        await uc1.release("root", "")


async def test_renew_extends_and_release_frees(
    uc1: EditLeases, uc2: EditLeases, clock: Clock
) -> None:
    lease = await uc1.acquire("root", "user/u1", 5)
    clock.now += 4
    renewed = await uc1.renew("root", lease.lease_id, 30)
    assert renewed.expire_time == clock.now + 30 and renewed.fencing == lease.fencing
    clock.now += 10  # past the first lifetime
    assert [x.lease_id for x in await uc2.list()] == [lease.lease_id]
    with pytest.raises(FailedPrecondition):  # not the holder's
        await uc2.renew("admin2", lease.lease_id)
    with pytest.raises(FailedPrecondition):
        await uc2.release("admin2", lease.lease_id)
    await uc1.release("root", lease.lease_id)
    assert await uc2.list() == []
    assert (await uc2.acquire("admin2", "user/u1")).fencing == lease.fencing + 1


async def test_list_shows_who_edits_what_since_when_and_where(
    uc1: EditLeases, uc2: EditLeases, clock: Clock
) -> None:
    await uc1.acquire("root", "user/u1")
    clock.now += 1
    await uc2.acquire("admin2", "config/global/chat.max_message_bytes")
    listed = await uc1.list()
    assert [(x.resource, x.holder_user_id, x.server_id, x.acquire_time) for x in listed] == [
        ("config/global/chat.max_message_bytes", "admin2", "uc-2", clock.now),
        ("user/u1", "root", "uc-1", clock.now - 1),
    ]


async def test_fencing_for(uc1: EditLeases, uc2: EditLeases, clock: Clock) -> None:
    resource = "config/global/chat.max_message_bytes"
    assert await uc1.fencing_for(resource, "root", "") is None  # nobody holds it
    lease = await uc1.acquire("root", resource, 5)
    assert await uc1.fencing_for(resource, "root", lease.lease_id) == lease.fencing
    assert await uc1.fencing_for(resource, "root", "") == lease.fencing  # the holder
    with pytest.raises(FailedPrecondition) as held:
        await uc2.fencing_for(resource, "admin2", "")
    assert held.value.reason == "LEASE_HELD"
    assert held.value.metadata["holder_user_id"] == "root"
    with pytest.raises(FailedPrecondition) as held:  # someone else's lease id
        await uc2.fencing_for(resource, "admin2", lease.lease_id)
    assert held.value.metadata["holder_user_id"] == "root"
    with pytest.raises(FailedPrecondition) as stale:  # not the live lease
        await uc1.fencing_for(resource, "root", new_lease_id(resource))
    assert stale.value.reason == "LEASE_HELD"
    clock.now += 6  # the holder paused past its lease
    with pytest.raises(FailedPrecondition) as stale:
        await uc1.fencing_for(resource, "root", lease.lease_id)
    assert stale.value.reason == "LEASE_HELD" and "holder_user_id" not in stale.value.metadata
    newer = await uc2.acquire("admin2", resource)
    with pytest.raises(FailedPrecondition) as held:
        await uc1.fencing_for(resource, "root", lease.lease_id)
    assert held.value.metadata["holder_user_id"] == "admin2"
    assert (
        await uc2.fencing_for(resource, "admin2", newer.lease_id) == newer.fencing > lease.fencing
    )
    with pytest.raises(InvalidArgument):
        await uc1.fencing_for("nonsense", "root", "")
