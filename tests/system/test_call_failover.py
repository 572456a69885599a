"""Calls survive a MediaServer killed with SIGKILL: real processes, real aiortc peers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from procall.api.call.v1 import call_pb2
from procall.api.call.v1 import call_service_pb2 as call_pb
from procall.api.directory.v1 import directory_pb2
from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.launch.datacenter import DataCenter
from procall.mesh.lookup.v1 import lookup_pb2
from procall.mesh.lookup.v1 import lookup_service_pb2 as lookup_pb
from procall.mesh.lookup.v1 import lookup_service_pb2_grpc as lookup_grpc
from tests.helpers.calls import ALICE_HZ, BOB_HZ, Phone, hear_each_other
from tests.helpers.media import LoopbackPeer

pytestmark = [pytest.mark.system, pytest.mark.slow]

PASSWORD = "call failover password"
TTL = 1.5
CALLS = 4


@pytest.fixture
def center(tmp_path: Path) -> Iterator[DataCenter]:
    dc = DataCenter(
        tmp_path,
        tls=False,
        ucservers=2,
        media_servers=2,
        on_line=lambda _: None,
        seed_demo=False,
        extra_config={
            "lookup": {"heartbeat_interval": 0.3, "heartbeat_ttl": TTL},
            "media": {"host_addresses": ["127.0.0.1"]},
            "directory": {
                "argon2_time_cost": 1,
                "argon2_memory_kib": 1024,
                "argon2_parallelism": 1,
            },
        },
    )
    dc.start()
    time.sleep(1.0)  # the UCServers' peer meshes learn each other
    try:
        yield dc
    finally:
        dc.stop()


def _address(dc: DataCenter, name: str) -> str:
    return next(e.address for e in dc.endpoints if e.name == name)


async def _live_media(dc: DataCenter) -> set[str]:
    async with dc.operator_channel("lookup-1") as channel:
        reply = await lookup_grpc.LookupServiceStub(channel).ListServers(
            lookup_pb.ListServersRequest(role=lookup_pb2.ROLE_MEDIA), timeout=5
        )
    return {s.server_id for s in reply.servers}


async def _until(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


@pytest.fixture
async def phones(center: DataCenter) -> AsyncIterator[list[tuple[Phone, Phone]]]:
    """CALLS (caller on ucserver-1, callee on ucserver-2) pairs, logged on, streams open."""
    homes = {f"caller{i}": "ucserver-1" for i in range(CALLS)}
    homes |= {f"callee{i}": "ucserver-2" for i in range(CALLS)}
    made: dict[str, Phone] = {}
    async with center.operator_channel() as channel:
        stub = directory_grpc.DirectoryServiceStub(channel)
        for name, home in homes.items():
            user = await stub.CreateUser(
                directory_pb.CreateUserRequest(
                    user=directory_pb2.User(username=name, display_name=name, home_server_id=home),
                    password=PASSWORD,
                )
            )
            address = _address(center, home)
            async with grpc.aio.insecure_channel(address) as login_channel:
                login = await session_grpc.SessionServiceStub(login_channel).Login(
                    session_pb.LoginRequest(username=name, password=PASSWORD)
                )
            phone = Phone(
                name, user.user.user_id, address, login.session_token, login.session.session_id
            )
            await phone.events.open()
            made[name] = phone
    yield [(made[f"caller{i}"], made[f"callee{i}"]) for i in range(CALLS)]
    for phone in made.values():
        await phone.close()


async def _connect(caller: Phone, callee: Phone) -> tuple[str, list[LoopbackPeer]]:
    placed = await caller.place(callee)
    await callee.calls.AnswerCall(
        call_pb.AnswerCallRequest(call_id=placed.call_id), metadata=callee.metadata
    )
    peers = [LoopbackPeer(ALICE_HZ), LoopbackPeer(BOB_HZ)]
    await caller.negotiate(placed.call_id, peers[0])
    await callee.negotiate(placed.call_id, peers[1])
    return placed.call_id, peers


async def _follow(caller: Phone, callee: Phone, call_id: str, dead: str) -> list[LoopbackPeer]:
    """What each client does when its call moves: negotiate again with new peers."""
    peers = [LoopbackPeer(ALICE_HZ), LoopbackPeer(BOB_HZ)]
    for phone, peer in ((caller, peers[0]), (callee, peers[1])):
        moved = await phone.moved(call_id, dead)
        assert moved.state == call_pb2.CALL_STATE_CONNECTED, moved
        assert await phone.negotiate(call_id, peer) == moved.media_server_id
    return peers


async def test_killed_media_server_calls_move_and_audio_returns(
    center: DataCenter, phones: list[tuple[Phone, Phone]]
) -> None:
    # media-2 is down while the calls are set up: all four land on media-1
    center.kill("media-2")
    await _until(lambda: _has_only(center, {"media-1"}), timeout=4 * TTL)
    calls = await asyncio.gather(*(_connect(a, b) for a, b in phones))
    peers = [p for _, pair in calls for p in pair]
    try:
        await asyncio.gather(*(hear_each_other(*pair) for _, pair in calls))
        center.restart("media-2", "media")  # back: it takes the calls of the next failure
        await _until(lambda: _has_only(center, {"media-1", "media-2"}), timeout=10)

        killed_at = time.monotonic()
        center.kill("media-1")
        moved = await asyncio.gather(
            *(
                _follow(a, b, call_id, "media-1")
                for (a, b), (call_id, _) in zip(phones, calls, strict=True)
            )
        )
        peers += [p for pair in moved for p in pair]
        await asyncio.gather(*(hear_each_other(*pair) for pair in moved))
        silent = [
            max(p.recorder.first_frame_at for p in pair if p.recorder) - killed_at for pair in moved
        ]
        print("seconds without audio per call after the kill:", [f"{s:.2f}" for s in silent])
        assert max(silent) < 6.0

        # once media-1's heartbeat expired, no new call is placed on it
        await _until(lambda: _has_only(center, {"media-2"}), timeout=4 * TTL)
        (caller, callee), (first_call, _) = phones[0], calls[0]
        await caller.calls.HangUp(
            call_pb.HangUpRequest(call_id=first_call), metadata=caller.metadata
        )
        for _ in range(5):
            again = await caller.place(callee)
            assert again.media_server_id == "media-2"
            await caller.calls.HangUp(
                call_pb.HangUpRequest(call_id=again.call_id), metadata=caller.metadata
            )
        calls = calls[1:]
        phones = phones[1:]

        # the last MediaServer dies too: every call ends MEDIA_FAILURE within a few seconds
        center.kill("media-2")
        for (caller, callee), (call_id, _) in zip(phones, calls, strict=True):
            for phone in (caller, callee):
                ended = await phone.moved(call_id, "media-2", timeout=10)
                assert ended.state == call_pb2.CALL_STATE_ENDED
                assert ended.end_reason == call_pb2.END_REASON_MEDIA_FAILURE
    finally:
        for peer in peers:
            await peer.close()


async def _has_only(center: DataCenter, wanted: set[str]) -> bool:
    return await _live_media(center) == wanted
