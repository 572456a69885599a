"""ResolveHome: the shared map in Redis, the Directory fallback (cached), NOT_FOUND."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis

from procall.api.directory.v1 import directory_pb2
from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.launch.redis import free_port
from procall.mesh.lookup.v1 import lookup_pb2
from procall.mesh.lookup.v1 import lookup_service_pb2 as lookup_pb
from procall.routing import HomeAssignment
from procall.storage.redis.registry import RedisHomeStore
from tests.integration.lookup.conftest import TTL, Stub, beat, error_info, eventually, server


class FakeDirectory(directory_grpc.DirectoryServiceServicer):
    """A real gRPC DirectoryService answering GetUser from a dict (the seam to the Directory)."""

    def __init__(self, users: dict[str, directory_pb2.User]) -> None:
        self.users = users
        self.calls = 0

    async def GetUser(self, request: Any, context: Any) -> directory_pb.GetUserResponse:
        self.calls += 1
        for user in self.users.values():
            if request.user_id == user.user_id or (
                request.username and request.username.lower() == user.username.lower()
            ):
                return directory_pb.GetUserResponse(user=user)
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such user")
        raise AssertionError  # abort raises


@pytest.fixture
async def homes(redis_url: str) -> AsyncIterator[RedisHomeStore]:
    client = aioredis.Redis.from_url(redis_url)
    yield RedisHomeStore(client)
    await client.aclose()


@pytest.fixture
async def directory() -> AsyncIterator[tuple[FakeDirectory, grpc.aio.Server, str]]:
    fake = FakeDirectory(
        {
            "u-1": directory_pb2.User(user_id="u-1", username="Alice", home_server_id="uc-1"),
            "u-2": directory_pb2.User(user_id="u-2", username="bob", home_server_id=""),
        }
    )
    grpc_server = grpc.aio.server()
    directory_grpc.add_DirectoryServiceServicer_to_server(fake, grpc_server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    await grpc_server.start()
    yield fake, grpc_server, f"127.0.0.1:{port}"
    await grpc_server.stop(0)


@pytest.fixture
async def lookup_with_directory(
    lookup_settings: Callable[..., Any],
    start_app: Callable[..., Any],
    channels: Callable[[str], Stub],
    directory: tuple[FakeDirectory, grpc.aio.Server, str],
) -> Stub:
    settings = lookup_settings()
    settings.directory.address = directory[2]
    settings.lookup.home_cache_ttl = 60.0
    app = await start_app("lookup", settings)
    return channels(app.address)


async def resolve(stub: Stub, **request: str) -> lookup_pb.ResolveHomeResponse:
    reply: lookup_pb.ResolveHomeResponse = await stub.ResolveHome(
        lookup_pb.ResolveHomeRequest(**request), timeout=5
    )
    return reply


async def failure(stub: Stub, **request: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await resolve(stub, **request)
    return caught.value


async def test_home_from_the_shared_map_by_id_and_username(
    lookup: Stub, homes: RedisHomeStore
) -> None:
    await homes.set_home("u-1", "Alice", "uc-1")
    epoch = await beat(lookup, server("uc-1", address="10.0.0.1:7001"))

    by_id = await resolve(lookup, user_id="u-1")
    assert (by_id.user_id, by_id.server.server_id, by_id.live) == ("u-1", "uc-1", True)
    assert (by_id.server.address, by_id.server.epoch) == ("10.0.0.1:7001", epoch)
    by_name = await resolve(lookup, username="aLiCe")  # usernames are case-insensitive
    assert (by_name.user_id, by_name.server.server_id) == ("u-1", "uc-1")


async def test_a_home_that_is_down_resolves_with_its_last_address_and_live_false(
    lookup: Stub, homes: RedisHomeStore
) -> None:
    await homes.set_home("u-1", "alice", "uc-1")
    await homes.set_home("u-3", "carol", "uc-never-seen")
    await beat(lookup, server("uc-1", address="10.0.0.1:7001"))
    await eventually(lambda: _not_live(lookup, "u-1"), timeout=3 * TTL)
    reply = await resolve(lookup, user_id="u-1")
    assert (reply.server.address, reply.live) == ("10.0.0.1:7001", False)
    never = await resolve(lookup, username="carol")
    assert (never.server.server_id, never.server.address, never.live) == (
        "uc-never-seen", "", False,
    )  # fmt: skip
    assert never.server.role == lookup_pb2.ROLE_UCSERVER


async def _not_live(stub: Stub, user_id: str) -> bool:
    return not (await resolve(stub, user_id=user_id)).live


async def test_reassignment_and_clearing(lookup: Stub, homes: RedisHomeStore) -> None:
    await homes.set_home("u-1", "alice", "uc-1")
    await homes.set_home("u-1", "alice.a", "uc-2")  # moved and renamed
    assert (await resolve(lookup, user_id="u-1")).server.server_id == "uc-2"
    assert (await resolve(lookup, username="alice.a")).server.server_id == "uc-2"
    assert (await failure(lookup, username="alice")).code() == grpc.StatusCode.NOT_FOUND
    assert await homes.clear_home("u-1")
    assert not await homes.clear_home("u-1")
    err = await failure(lookup, user_id="u-1")
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(err).reason == "NOT_FOUND"


async def test_unknown_user_without_directory_is_not_found(lookup: Stub) -> None:
    assert (await failure(lookup, user_id="nobody")).code() == grpc.StatusCode.NOT_FOUND


async def test_request_without_user_is_invalid(lookup: Stub) -> None:
    assert (await failure(lookup)).code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_directory_fallback_is_cached_with_a_ttl(
    lookup_with_directory: Stub,
    directory: tuple[FakeDirectory, grpc.aio.Server, str],
    redis_url: str,
) -> None:
    fake, grpc_server, _ = directory
    reply = await resolve(lookup_with_directory, username="alice")
    assert (reply.user_id, reply.server.server_id, reply.live) == ("u-1", "uc-1", False)
    assert fake.calls == 1

    client = aioredis.Redis.from_url(redis_url)
    try:
        for key in ("procall:lookup:home:id:u-1", "procall:lookup:home:name:alice"):
            assert 0 < await client.pttl(key) <= 60_000
    finally:
        await client.aclose()

    await grpc_server.stop(0)  # the cache answers without the Directory
    assert (await resolve(lookup_with_directory, user_id="u-1")).server.server_id == "uc-1"
    assert fake.calls == 1


async def test_directory_answers_not_found_and_no_home(
    lookup_with_directory: Stub, directory: tuple[FakeDirectory, grpc.aio.Server, str]
) -> None:
    assert (await failure(lookup_with_directory, user_id="u-9")).code() == (
        grpc.StatusCode.NOT_FOUND
    )
    no_home = await failure(lookup_with_directory, username="bob")
    assert no_home.code() == grpc.StatusCode.NOT_FOUND
    assert "no home server" in (no_home.details() or "")


async def test_an_assignment_wins_over_the_directory_cache(
    lookup_with_directory: Stub, homes: RedisHomeStore
) -> None:
    await resolve(lookup_with_directory, user_id="u-1")  # cached: uc-1
    await homes.set_home("u-1", "Alice", "uc-7")
    assert (await resolve(lookup_with_directory, user_id="u-1")).server.server_id == "uc-7"
    # a cached answer never replaces an assignment
    await homes.cache_home(HomeAssignment("u-1", "Alice", "uc-1"), 60.0)
    assert (await resolve(lookup_with_directory, username="ALICE")).server.server_id == "uc-7"


async def test_directory_down_answers_unavailable_naming_it(
    lookup_settings: Callable[..., Any],
    start_app: Callable[..., Any],
    channels: Callable[[str], Stub],
) -> None:
    settings = lookup_settings()
    settings.directory.address = f"127.0.0.1:{free_port()}"
    settings.lookup.directory_timeout = 0.5
    stub = channels((await start_app("lookup", settings)).address)
    err = await failure(stub, user_id="u-1")
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(err).metadata["backend"] == "Directory"
