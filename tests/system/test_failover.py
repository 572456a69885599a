"""Faults with real processes: a UCServer killed with SIGKILL, Redis killed and restarted empty."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis

from procall.api.directory.v1 import directory_pb2
from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.api.presence.v1 import presence_pb2
from procall.api.presence.v1 import presence_service_pb2 as presence_pb
from procall.api.presence.v1 import presence_service_pb2_grpc as presence_grpc
from procall.api.session.v1 import session_pb2
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.launch.datacenter import DataCenter
from procall.storage.redis.licenses import LicensePool

pytestmark = pytest.mark.system

PASSWORD = "failover password"
TTL = 1.5


@pytest.fixture
def center(tmp_path: Path) -> Iterator[DataCenter]:
    dc = DataCenter(
        tmp_path,
        tls=False,  # plaintext clients, as before TLS became the default
        ucservers=2,
        media_servers=1,
        on_line=lambda _: None,
        seed_demo=False,
        extra_config={
            "lookup": {"heartbeat_interval": 0.3, "heartbeat_ttl": TTL},
            "directory": {
                "argon2_time_cost": 1,
                "argon2_memory_kib": 1024,
                "argon2_parallelism": 1,
            },
        },
    )
    dc.start()
    time.sleep(1.0)  # the UCServers' peer meshes learn each other (refresh every 0.3 s)
    try:
        yield dc
    finally:
        dc.stop()


def _address(dc: DataCenter, name: str) -> str:
    return next(e.address for e in dc.endpoints if e.name == name)


async def _create_users(dc: DataCenter, homes: dict[str, str]) -> dict[str, str]:
    ids = {}
    async with dc.operator_channel() as channel:
        stub = directory_grpc.DirectoryServiceStub(channel)
        for name, home in homes.items():
            reply = await stub.CreateUser(
                directory_pb.CreateUserRequest(
                    user=directory_pb2.User(username=name, display_name=name, home_server_id=home),
                    password=PASSWORD,
                )
            )
            ids[name] = reply.user.user_id
    return ids


def _auth(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


class Client:
    """A user logged in on its home server with an open Connect stream."""

    def __init__(self, address: str, token: str) -> None:
        self.address = address
        self.token = token
        self.channel = grpc.aio.insecure_channel(address)
        self.events: asyncio.Queue[session_pb2.Event] = asyncio.Queue()
        self.error: grpc.aio.AioRpcError | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, address: str, username: str) -> Client:
        async with grpc.aio.insecure_channel(address) as channel:
            login = await session_grpc.SessionServiceStub(channel).Login(
                session_pb.LoginRequest(username=username, password=PASSWORD)
            )
        client = cls(address, login.session_token)
        call = session_grpc.SessionServiceStub(client.channel).Connect(
            metadata=_auth(login.session_token)
        )
        await call.write(session_pb.ConnectRequest(open=session_pb.OpenStream()))
        client._task = asyncio.create_task(client._read(call))
        return client

    async def _read(self, call: grpc.aio.StreamStreamCall[object, object]) -> None:
        try:
            async for reply in call:
                assert isinstance(reply, session_pb.ConnectResponse)
                await self.events.put(reply.event)
        except grpc.aio.AioRpcError as error:
            self.error = error

    async def presence_of(
        self, user_id: str, availability: int, timeout: float
    ) -> presence_pb2.Presence:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no presence {availability} of {user_id} in {timeout} s"
            event = await asyncio.wait_for(self.events.get(), remaining)
            presence = event.presence_changed.presence
            if presence.user_id == user_id and presence.availability == availability:
                return presence

    async def presence(self) -> presence_grpc.PresenceServiceStub:
        return presence_grpc.PresenceServiceStub(self.channel)

    async def set(self, availability: int, note: str = "") -> None:
        await presence_grpc.PresenceServiceStub(self.channel).SetPresence(
            presence_pb.SetPresenceRequest(availability=availability, note=note),
            metadata=_auth(self.token),
            timeout=5,
        )

    async def watch(self, *user_ids: str) -> None:
        await presence_grpc.PresenceServiceStub(self.channel).AddContacts(
            presence_pb.AddContactsRequest(user_ids=list(user_ids)),
            metadata=_auth(self.token),
            timeout=5,
        )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.channel.close()


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    opened: list[Client] = []
    yield opened
    for client in opened:
        await client.close()


async def test_killed_ucserver_users_go_offline_and_its_licenses_return(
    center: DataCenter, clients: list[Client]
) -> None:
    ids = await _create_users(center, {"alice": "ucserver-1", "bob": "ucserver-2"})
    uc1, uc2 = _address(center, "ucserver-1"), _address(center, "ucserver-2")
    alice = await Client.connect(uc1, "alice")
    clients.append(alice)
    await alice.watch(ids["bob"])
    await asyncio.sleep(0.5)
    bob = await Client.connect(uc2, "bob")
    clients.append(bob)
    await alice.presence_of(ids["bob"], presence_pb2.AVAILABILITY_AVAILABLE, timeout=5)

    assert center.redis is not None
    redis = aioredis.Redis.from_url(center.redis.url)
    pool = LicensePool(redis, "observer", 30)
    assert (await pool.usage()).by_server == {"ucserver-1": 1, "ucserver-2": 1}

    killed_at = time.monotonic()
    center.kill("ucserver-2")
    await alice.presence_of(ids["bob"], presence_pb2.AVAILABILITY_OFFLINE, timeout=TTL + 4)
    print(f"bob shown offline {time.monotonic() - killed_at:.2f} s after the kill (TTL {TTL} s)")
    deadline = time.monotonic() + TTL + 3
    while (await pool.usage()).by_server != {"ucserver-1": 1}:
        assert time.monotonic() < deadline, "licenses of the dead server did not return"
        await asyncio.sleep(0.1)

    await alice.set(presence_pb2.AVAILABILITY_BUSY, "still here")  # alice's server is unaffected
    mine = await alice.presence_of(ids["alice"], presence_pb2.AVAILABILITY_BUSY, timeout=5)
    assert mine.note == "still here"
    assert alice.error is None

    address = center.restart("ucserver-2", "ucserver")
    await asyncio.sleep(1.0)  # the peers learn the new run of ucserver-2
    bob_again = await Client.connect(address, "bob")
    clients.append(bob_again)
    await alice.presence_of(ids["bob"], presence_pb2.AVAILABILITY_AVAILABLE, timeout=TTL + 4)
    await redis.aclose()


async def test_redis_restarted_empty_local_presence_keeps_working_then_cross_server_returns(
    center: DataCenter, clients: list[Client]
) -> None:
    ids = await _create_users(
        center, {"alice": "ucserver-1", "carol": "ucserver-1", "bob": "ucserver-2"}
    )
    uc1, uc2 = _address(center, "ucserver-1"), _address(center, "ucserver-2")
    alice = await Client.connect(uc1, "alice")
    clients.append(alice)
    await alice.watch(ids["bob"], ids["carol"])
    carol = await Client.connect(uc1, "carol")
    bob = await Client.connect(uc2, "bob")
    clients.extend([carol, bob])
    await alice.presence_of(ids["bob"], presence_pb2.AVAILABILITY_AVAILABLE, timeout=5)

    assert center.redis is not None
    center.redis.kill()
    await carol.set(presence_pb2.AVAILABILITY_AWAY, "same server, no Redis")
    seen = await alice.presence_of(ids["carol"], presence_pb2.AVAILABILITY_AWAY, timeout=5)
    assert seen.note == "same server, no Redis"

    center.redis.restart()  # same port, empty
    back = time.monotonic()
    deadline = back + 5
    note = 0
    while True:  # cross-server presence must work again within 5 s of Redis coming back
        note += 1
        with contextlib.suppress(grpc.aio.AioRpcError):
            await bob.set(presence_pb2.AVAILABILITY_BUSY, f"attempt {note}")
        try:
            await alice.presence_of(ids["bob"], presence_pb2.AVAILABILITY_BUSY, timeout=0.5)
            break
        except (AssertionError, TimeoutError):
            assert time.monotonic() < deadline, "cross-server presence did not return in 5 s"
    print(f"cross-server presence back {time.monotonic() - back:.2f} s after Redis returned")
    assert alice.error is None and bob.error is None
