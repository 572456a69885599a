"""The registrar's behaviour against a scripted Lookup (a fake at the port)."""

from __future__ import annotations

import asyncio
import random

from procall.errors import Aborted, InvalidArgument, Unavailable
from procall.routing import (
    HeartbeatAck,
    LoadGauge,
    Registrar,
    ServerIdentity,
    ServerInfo,
    ServerRole,
)

IDENTITY = ServerIdentity("uc-1", ServerRole.UCSERVER, "127.0.0.1:7001", capacity=50, version="1")


class ScriptedLookup:
    """Records heartbeats; fails while ``down``; answers a fixed epoch."""

    def __init__(self, epoch: int = 41) -> None:
        self.epoch = epoch
        self.beats: list[ServerInfo] = []
        self.failed = 0
        self.deregistered: list[tuple[str, int]] = []
        self.down = False
        self.fence = False
        self.deregister_fails = False

    async def heartbeat(self, server: ServerInfo) -> HeartbeatAck:
        if self.down:
            self.failed += 1
            raise Unavailable.backend("Lookup")
        if self.fence:
            raise Aborted("stale")
        self.beats.append(server)
        return HeartbeatAck(self.epoch, 1.0)

    async def deregister(self, server_id: str, epoch: int) -> None:
        if self.deregister_fails:
            raise Unavailable.backend("Lookup")
        self.deregistered.append((server_id, epoch))


def registrar(lookup: ScriptedLookup, load: LoadGauge | None = None, **kw: object) -> Registrar:
    return Registrar(
        lookup,
        IDENTITY,
        load=load or LoadGauge(),
        interval=0.05,
        rng=random.Random(1),
        **kw,  # type: ignore[arg-type]
    )


async def test_first_heartbeat_asks_for_an_epoch_then_uses_it() -> None:
    lookup = ScriptedLookup()
    gauge = LoadGauge()
    reg = registrar(lookup, gauge)
    reg.start()
    assert await reg.wait_registered(1)
    gauge.set(3)
    await asyncio.sleep(0.2)
    await reg.stop()
    assert lookup.beats[0].epoch == 0
    assert {b.epoch for b in lookup.beats[1:]} == {41}
    assert lookup.beats[-1].load == 3
    first = lookup.beats[0]
    assert (first.server_id, first.role, first.address, first.capacity, first.version) == (
        "uc-1", ServerRole.UCSERVER, "127.0.0.1:7001", 50, "1",
    )  # fmt: skip
    assert first.start_time is not None and all(
        b.start_time == first.start_time for b in lookup.beats
    )
    assert 2 <= len(lookup.beats) <= 8  # about every 50 ms
    assert lookup.deregistered == [("uc-1", 41)]


async def test_an_unreachable_lookup_is_retried_with_backoff_without_raising() -> None:
    lookup = ScriptedLookup()
    lookup.down = True
    reg = registrar(lookup)
    reg.start()
    assert not await reg.wait_registered(0.3)
    assert reg.running and reg.epoch == 0
    assert 2 <= lookup.failed <= 15  # retried, but not in a tight loop
    lookup.down = False
    assert await reg.wait_registered(0.5)
    assert reg.epoch == 41
    await reg.stop()


async def test_a_lookup_lost_later_keeps_the_epoch() -> None:
    lookup = ScriptedLookup()
    reg = registrar(lookup)
    reg.start()
    await reg.wait_registered(1)
    lookup.down = True
    await asyncio.sleep(0.15)
    lookup.down = False
    count = len(lookup.beats)
    await asyncio.sleep(0.15)
    await reg.stop()
    assert len(lookup.beats) > count
    assert {b.epoch for b in lookup.beats[count:]} == {41}


async def test_a_stale_epoch_stops_heartbeats_without_deregistering() -> None:
    lookup = ScriptedLookup()
    reg = registrar(lookup)
    reg.start()
    await reg.wait_registered(1)
    lookup.fence = True
    for _ in range(50):
        if reg.fenced:
            break
        await asyncio.sleep(0.02)
    assert reg.fenced and not reg.running
    await reg.stop()
    assert lookup.deregistered == []


async def test_stop_survives_a_failing_deregister_and_is_idempotent() -> None:
    lookup = ScriptedLookup()
    lookup.deregister_fails = True
    reg = registrar(lookup)
    reg.start()
    await reg.wait_registered(1)
    await reg.stop()
    lookup.deregister_fails = False
    await reg.stop()
    assert lookup.deregistered == []
    never = registrar(ScriptedLookup())
    await never.stop()  # never started: nothing to do


async def test_beat_now_sends_draining_at_once() -> None:
    lookup = ScriptedLookup()
    draining = False
    reg = Registrar(lookup, IDENTITY, load=LoadGauge(), interval=10.0, draining=lambda: draining)
    reg.start()
    await reg.wait_registered(1)
    draining = True
    reg.beat_now()
    for _ in range(50):
        if len(lookup.beats) > 1:
            break
        await asyncio.sleep(0.01)
    await reg.stop()
    assert [b.draining for b in lookup.beats] == [False, True]


def test_load_gauge() -> None:
    gauge = LoadGauge(2)
    gauge.add(3)
    gauge.add(-10)
    assert gauge() == 0
    gauge.set(-1)
    assert gauge.value == 0


async def test_a_refused_epoch_starts_a_new_run() -> None:
    lookup = ScriptedLookup()
    reg = registrar(lookup)
    reg.start()
    await reg.wait_registered(1)
    refused: list[int] = []
    original = lookup.heartbeat

    async def refuse_once(server: ServerInfo) -> HeartbeatAck:
        if server.epoch and not refused:
            refused.append(server.epoch)
            raise InvalidArgument.field("server.epoch", "was never issued")
        return await original(server)

    lookup.heartbeat = refuse_once  # type: ignore[method-assign]
    lookup.epoch = 77
    for _ in range(50):
        if reg.epoch == 77:
            break
        await asyncio.sleep(0.02)
    await reg.stop()
    assert refused == [41] and reg.epoch == 77
    assert [b.epoch for b in lookup.beats].count(0) == 2
