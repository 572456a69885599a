"""RoutingService use-cases over in-memory fakes of its ports (the stores are tested for real
in tests/integration/lookup)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from dataclasses import replace

import pytest

from procall.errors import InvalidArgument, NotFound, Unavailable
from procall.routing import (
    AllocationState,
    Candidate,
    ChangeKind,
    HomeAssignment,
    Listing,
    RoutingService,
    ServerInfo,
    ServerObserved,
    ServerRole,
    TopologyObservation,
)

UC = ServerInfo("uc-1", ServerRole.UCSERVER, "h:1", epoch=3, capacity=10)
M1 = ServerInfo("m-1", ServerRole.MEDIA, "h:2", epoch=4, capacity=10)
M2 = ServerInfo("m-2", ServerRole.MEDIA, "h:3", epoch=5, capacity=10)


class Registry:
    def __init__(self) -> None:
        self.servers: dict[str, ServerInfo] = {}
        self.beats: list[tuple[ServerInfo, float]] = []
        self.sweeps = 0
        self.feed: list[TopologyObservation] = []

    async def heartbeat(self, server: ServerInfo, ttl: float) -> int:
        self.beats.append((server, ttl))
        return server.epoch or 99

    async def deregister(self, server_id: str, epoch: int) -> bool:
        return self.servers.pop(server_id, None) is not None

    async def live_servers(self) -> list[ServerInfo]:
        return list(self.servers.values())

    async def last_known(self, server_id: str) -> tuple[ServerInfo | None, bool]:
        server = self.servers.get(server_id)
        return server, server is not None

    async def watch(self) -> AsyncGenerator[TopologyObservation, None]:
        for item in self.feed:
            yield item
        raise Unavailable.backend("Redis")

    async def sweep(self) -> int:
        self.sweeps += 1
        if self.sweeps == 1:
            raise Unavailable.backend("Redis")
        if self.sweeps == 2:
            raise RuntimeError("a bug")
        return 0


class Allocations:
    def __init__(self, current: ServerInfo | None = None) -> None:
        self.current = current
        self.claims: list[tuple[str, str]] = []
        self.claim_answer: ServerInfo | None = None
        self.released: list[str] = []

    async def state(self, call_id: str) -> AllocationState:
        return AllocationState(self.current, (Candidate(M1), Candidate(M2, allocated=9)))

    async def claim(
        self, call_id: str, server: ServerInfo, exclude: Sequence[str] = ()
    ) -> ServerInfo | None:
        self.claims.append((call_id, server.server_id))
        return self.claim_answer

    async def release(self, call_id: str) -> None:
        self.released.append(call_id)


class Homes:
    def __init__(self) -> None:
        self.records: dict[str, HomeAssignment] = {}
        self.cached: list[tuple[HomeAssignment, float]] = []

    async def find_home(self, *, user_id: str = "", username: str = "") -> HomeAssignment | None:
        return self.records.get(user_id or username)

    async def cache_home(self, home: HomeAssignment, ttl: float) -> None:
        self.cached.append((home, ttl))


class Directory:
    def __init__(self, answer: HomeAssignment | None) -> None:
        self.answer = answer
        self.asked = 0

    async def find_home(self, *, user_id: str = "", username: str = "") -> HomeAssignment | None:
        self.asked += 1
        return self.answer


def service(
    registry: Registry | None = None,
    allocations: Allocations | None = None,
    homes: Homes | None = None,
    directory: Directory | None = None,
) -> RoutingService:
    return RoutingService(
        registry or Registry(),
        allocations or Allocations(),
        homes or Homes(),
        directory,
        ttl=2.0,
        home_cache_ttl=30.0,
    )


async def test_heartbeat_passes_the_ttl_and_drops_the_callers_heartbeat_time() -> None:
    registry = Registry()
    stamped = replace(UC, epoch=0, heartbeat_time=946_684_800.0)
    ack = await service(registry).heartbeat(stamped)
    assert (ack.epoch, ack.ttl_seconds) == (99, 2.0)
    assert registry.beats == [(replace(stamped, heartbeat_time=None), 2.0)]


@pytest.mark.parametrize(
    ("server", "field"),
    [
        (replace(UC, address=""), "server.address"),
        (replace(UC, load=2**32), "server.load"),
        (replace(UC, epoch=-1), "server.epoch"),
        (replace(UC, server_id="x" * 300), "server.server_id"),
        (replace(UC, server_id="a\nb"), "server.server_id"),
    ],
)
async def test_invalid_heartbeats(server: ServerInfo, field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await service().heartbeat(server)
    assert caught.value.violations[0].field == field


async def test_deregister_needs_an_epoch() -> None:
    with pytest.raises(InvalidArgument):
        await service().deregister("uc-1", 0)
    await service().deregister("uc-1", 3)  # an unknown run is fine


async def test_list_servers_filters_and_sorts() -> None:
    registry = Registry()
    registry.servers = {s.server_id: s for s in (M2, UC, M1)}
    assert [s.server_id for s in await service(registry).list_servers()] == ["m-1", "m-2", "uc-1"]
    media = await service(registry).list_servers(ServerRole.MEDIA)
    assert [s.server_id for s in media] == ["m-1", "m-2"]


async def test_watch_reports_changes_then_ends_unavailable() -> None:
    registry = Registry()
    registry.feed = [
        Listing((UC,)),
        ServerObserved("m-1", M1),
        ServerObserved("uc-1", None),
        Listing((M1,)),
    ]
    seen = []
    with pytest.raises(Unavailable):
        async for change in service(registry).watch():
            seen.append((change.kind, change.server.server_id))
    assert seen == [
        (ChangeKind.JOINED, "uc-1"),
        (ChangeKind.JOINED, "m-1"),
        (ChangeKind.LEFT, "uc-1"),
    ]


async def test_sweeper_outlives_failures() -> None:
    registry = Registry()
    task = asyncio.create_task(service(registry).sweep_forever(0.01))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert registry.sweeps > 2


async def test_resolve_home_from_the_store() -> None:
    registry, homes, directory = Registry(), Homes(), Directory(None)
    registry.servers["uc-1"] = UC
    homes.records["u-1"] = HomeAssignment("u-1", "alice", "uc-1")
    home = await service(registry, homes=homes, directory=directory).resolve_home(user_id="u-1")
    assert (home.user_id, home.server, home.live) == ("u-1", UC, True)
    assert directory.asked == 0


async def test_resolve_home_falls_back_to_the_directory_and_caches() -> None:
    homes = Homes()
    directory = Directory(HomeAssignment("u-1", "alice", "uc-2"))
    home = await service(homes=homes, directory=directory).resolve_home(username="alice")
    assert (home.user_id, home.server.server_id, home.live) == ("u-1", "uc-2", False)
    assert home.server.role is ServerRole.UCSERVER
    assert homes.cached == [(HomeAssignment("u-1", "alice", "uc-2"), 30.0)]


async def test_resolve_home_not_found_cases() -> None:
    with pytest.raises(NotFound, match="not known"):
        await service().resolve_home(user_id="u-1")  # no directory configured
    homes = Homes()
    no_home = Directory(HomeAssignment("u-1", "alice", ""))
    with pytest.raises(NotFound, match="no home server"):
        await service(homes=homes, directory=no_home).resolve_home(user_id="u-1")
    assert homes.cached == []
    with pytest.raises(InvalidArgument):
        await service().resolve_home()


async def test_allocation_returns_the_current_server_without_choosing() -> None:
    allocations = Allocations(current=M2)
    assert await service(allocations=allocations).allocate_media_server("c-1") == M2
    assert allocations.claims == []


async def test_allocation_claims_the_less_loaded_choice() -> None:
    allocations = Allocations()
    allocations.claim_answer = M1
    assert await service(allocations=allocations).allocate_media_server("c-1") == M1
    assert allocations.claims == [("c-1", "m-1")]  # m-2 has 9 of 10 allocated


async def test_allocation_gives_up_when_the_choice_keeps_vanishing() -> None:
    allocations = Allocations()
    with pytest.raises(Unavailable):
        await service(allocations=allocations).allocate_media_server("c-1")
    assert len(allocations.claims) == 3


async def test_release() -> None:
    allocations = Allocations()
    await service(allocations=allocations).release_media_server("c-1")
    assert allocations.released == ["c-1"]
    with pytest.raises(InvalidArgument):
        await service().release_media_server("")
