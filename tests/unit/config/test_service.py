"""The configuration use cases over the in-memory store: versions, leases, fencing, paging,
and the live view."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from procall.config import (
    ConfigService,
    LiveConfig,
    PropertyKey,
    PropertyRegistry,
    PropertyValue,
    Scope,
)
from procall.errors import Aborted, FailedPrecondition, InvalidArgument, Unavailable
from tests.unit.config.fakes import FakeLeases, MemoryConfigStore, RecordingNotifier

RING = PropertyKey(Scope.GLOBAL, "", "calls.ring_seconds")
CAPACITY = PropertyKey(Scope.LOCAL, "uc-1", "server.capacity")


def _service(
    store: MemoryConfigStore | None = None,
    leases: FakeLeases | None = None,
    notifier: RecordingNotifier | None = None,
) -> ConfigService:
    ticks = itertools.count(1000)
    return ConfigService(
        PropertyRegistry(),
        store or MemoryConfigStore(),
        "uc-1",
        lambda: float(next(ticks)),
        leases=leases,
        notifier=notifier,
    )


async def test_a_property_never_set_reads_as_its_default_version_0() -> None:
    value = await _service().get(RING)
    assert (value.value, value.version, value.updated_by) == ("30.0", 0, "")


async def test_versions_grow_by_one_and_record_who_and_when() -> None:
    notifier = RecordingNotifier()
    service = _service(notifier=notifier)
    first = await service.set("admin-a", RING, "20", 0)
    assert (first.value, first.version, first.updated_by, first.update_time) == (
        "20.0", 1, "admin-a", 1000.0,
    )  # fmt: skip
    second = await service.set("admin-b", RING, "25.5", 1)
    assert (second.version, second.updated_by) == (2, "admin-b")
    assert await service.get(RING) == second
    assert notifier.changes == [(RING, 1), (RING, 2)]


async def test_a_stale_version_is_aborted_and_never_overwrites() -> None:
    service = _service()
    await service.set("a", RING, "20", 0)
    for stale in (0, 2, 7):
        with pytest.raises(Aborted) as exc:
            await service.set("b", RING, "40", stale)
        assert exc.value.reason == "STALE_VERSION"
        assert exc.value.metadata["current_version"] == "1"
    assert (await service.get(RING)).value == "20.0"


async def test_two_admins_racing_on_one_version_one_wins() -> None:
    service = _service()
    results = await asyncio.gather(
        *(service.set(f"admin-{n}", RING, str(10 + n), 0) for n in range(5)),
        return_exceptions=True,
    )
    wins = [r for r in results if isinstance(r, PropertyValue)]
    assert len(wins) == 1 and all(isinstance(r, Aborted) for r in results if r not in wins)
    assert (await service.get(RING)).version == 1


async def test_bad_input_names_the_field() -> None:
    service = _service()
    cases = [
        (lambda: service.key("nope", None), "property.name"),
        (lambda: service.key("calls.ring_seconds", Scope.LOCAL), "property.scope"),
        (lambda: service.key("calls.ring_seconds", None, "uc-2"), "property.server_id"),
    ]
    for make, field in cases:
        with pytest.raises(InvalidArgument) as exc:
            make()
        assert exc.value.violations[0].field == field
    for text in ("ten", "0", "601"):
        with pytest.raises(InvalidArgument) as exc:
            await service.set("a", RING, text, 0)
        assert exc.value.violations[0].field == "property.value"
    for version in (-1, 2**64 - 1):
        with pytest.raises(InvalidArgument) as exc:
            await service.set("a", RING, "5", version)
        assert exc.value.violations[0].field == "expected_version"


async def test_local_properties_name_this_server_by_default() -> None:
    service = _service()
    assert service.key("server.capacity", None) == CAPACITY
    assert service.key("server.capacity", Scope.LOCAL, "uc-2").server_id == "uc-2"
    await service.set("a", CAPACITY, "100", 0)
    other = service.key("server.capacity", None, "uc-2")
    assert (await service.get(other)).version == 0


async def test_listing_pages_by_name_with_defaults() -> None:
    service = _service()
    await service.set("a", RING, "20", 0)
    names, token, seen = [], "", []
    while True:
        page, token = await service.list(Scope.GLOBAL, "", 3, token)
        assert len(page) <= 3
        seen.extend(page)
        names.extend(v.key.name for v in page)
        if not token:
            break
    assert names == sorted(names) == [s.name for s in service.registry.specs(Scope.GLOBAL)]
    assert next(v for v in seen if v.key == RING).version == 1
    local, _ = await service.list(Scope.LOCAL, "", 0, "")
    assert {v.key.server_id for v in local} == {"uc-1"}
    with pytest.raises(InvalidArgument):
        await service.list(Scope.GLOBAL, "", 3, "garbage")
    first, token = await service.list(Scope.GLOBAL, "", 3, "")
    with pytest.raises(InvalidArgument):  # a token of another query
        await service.list(Scope.LOCAL, "", 3, token)


async def test_another_admins_lease_refuses_the_write() -> None:
    leases = FakeLeases()
    service = _service(leases=leases)
    leases.held[RING.resource] = ("admin-a", "lease-1", 3)
    with pytest.raises(FailedPrecondition) as exc:
        await service.set("admin-b", RING, "20", 0)
    assert exc.value.reason == "LEASE_HELD"
    assert exc.value.metadata["holder_user_id"] == "admin-a"
    written = await service.set("admin-a", RING, "20", 0, "lease-1")
    assert written.fencing == 3


async def test_a_paused_holder_whose_lease_was_taken_over_cannot_write() -> None:
    store, leases = MemoryConfigStore(), FakeLeases()
    service = _service(store, leases)
    # admin-a's check passed under fencing 3, then it paused; its lease expired and admin-b
    # took a new one (fencing 4) and wrote
    leases.held[RING.resource] = ("admin-b", "lease-2", 4)
    await service.set("admin-b", RING, "20", 0, "lease-2")
    with pytest.raises(Aborted):
        await store.compare_and_set(
            RING, "99.0", expected_version=1, updated_by="admin-a", update_time=1.0, fencing=3
        )
    assert (await store.get(RING)) is not None
    assert (await service.get(RING)).value == "20.0"


async def test_a_database_that_does_not_answer_refuses_writes() -> None:
    store, notifier = MemoryConfigStore(), RecordingNotifier()
    service = _service(store, notifier=notifier)
    store.down = True
    with pytest.raises(Unavailable):
        await service.set("a", RING, "20", 0)
    assert notifier.changes == []
    store.down = False
    assert (await service.get(RING)).version == 0


async def test_the_live_view_moves_forward_only_and_tells_listeners() -> None:
    registry = PropertyRegistry()
    live = LiveConfig(registry, "uc-1")
    heard: list[object] = []
    live.watch("calls.ring_seconds", heard.append)
    assert live.value("calls.ring_seconds") == 30.0
    assert live.apply(PropertyValue(RING, "12.0", 2))
    assert not live.apply(PropertyValue(RING, "13.0", 1))  # older: ignored
    assert not live.apply(PropertyValue(RING, "13.0", 2))  # same version: ignored
    assert live.value("calls.ring_seconds") == 12.0 and heard == [12.0]
    # another server's local values are not this server's
    other = PropertyKey(Scope.LOCAL, "uc-2", "server.capacity")
    assert not live.apply(PropertyValue(other, "1", 1))
    assert live.apply(PropertyValue(CAPACITY, "77", 1))
    assert live.value("server.capacity") == 77
    # a stored value this release refuses falls back to the default
    assert live.apply(PropertyValue(RING, "9999", 3))
    assert live.value("calls.ring_seconds") == 30.0
    with pytest.raises(ValueError):
        live.watch("limits.client_message_bytes", heard.append)  # applied at start only


async def test_the_live_view_refreshes_from_the_store() -> None:
    store = MemoryConfigStore()
    service = _service(store)
    live = LiveConfig(PropertyRegistry(), "uc-1")
    await service.set("a", RING, "20", 0)
    await service.set("a", CAPACITY, "9", 0)
    assert await live.refresh(store) == 2
    assert await live.refresh(store) == 0
    await service.set("a", RING, "21", 1)
    assert await live.refresh_one(store, RING)
    assert live.versions() == {"calls.ring_seconds": 2, "server.capacity": 1}
    assert [v.key.name for v in live.snapshot()] == ["calls.ring_seconds", "server.capacity"]


async def test_reads_of_own_values_survive_an_outage_writes_do_not() -> None:
    store = MemoryConfigStore()
    live = LiveConfig(PropertyRegistry(), "uc-1")
    service = ConfigService(PropertyRegistry(), store, "uc-1", lambda: 1.0, local=live)
    live.apply(await service.set("a", RING, "20", 0))
    store.down = True
    assert (await service.get(RING)).value == "20.0"
    page, _ = await service.list(Scope.GLOBAL, "", 100, "")
    assert next(v for v in page if v.key == RING).version == 1
    with pytest.raises(Unavailable):
        await service.get(PropertyKey(Scope.LOCAL, "uc-2", "server.capacity"))
    with pytest.raises(Unavailable):
        await service.list(Scope.LOCAL, "uc-2", 10, "")
    with pytest.raises(Unavailable):
        await service.set("a", RING, "21", 1)
