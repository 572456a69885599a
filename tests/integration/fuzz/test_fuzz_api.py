"""Property-based fuzzing of every client- and admin-facing RPC against running servers.

For each method of ``procall.api.*`` (Session, Presence, Chat, Journal, Call, Admin,
Directory), hypothesis builds requests from the method's descriptor (see
``strategies.py``) or sends bytes that are no message at all, with no token, a user's,
an administrator's, or a forged one, to in-process servers on 127.0.0.1. Whatever it
sends, the answer must be OK or a well-formed error: a canonical code other than
UNKNOWN, INTERNAL, DATA_LOSS or a timeout, with ``google.rpc.ErrorInfo`` of domain
``procall.dev`` and a declared reason, and no traceback text. After every example the
server must still answer its health check with SERVING, and after all of them normal
calls must still work.

Bounded: ``PROCALL_FUZZ_EXAMPLES`` examples per method (default 40, the whole file runs
well under a minute); raise it for a deeper run. Under CI (``CI`` set) the examples are
derandomised, so that a run fails only for a change, never for a lucky draw.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
import redis
from google.protobuf import descriptor as _descriptor
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procall.api.admin.v1 import admin_service_pb2
from procall.api.call.v1 import call_service_pb2
from procall.api.chat.v1 import chat_pb2, chat_service_pb2
from procall.api.chat.v1 import chat_service_pb2_grpc as chat_grpc
from procall.api.common.v1 import error_reason_pb2
from procall.api.directory.v1 import directory_pb2, directory_service_pb2
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.api.journal.v1 import journal_service_pb2
from procall.api.presence.v1 import presence_service_pb2
from procall.api.presence.v1 import presence_service_pb2_grpc as presence_grpc
from procall.api.session.v1 import session_service_pb2
from procall.launch.redis import RedisProcess
from procall.servers.runtime.app import ServerApp
from procall.servers.runtime.roles import ROLES
from procall.settings import Settings
from tests.helpers.topology import PASSWORD, System, auth, fast_settings, login, start_system

try:  # with the policy enforcer, only an administrator or the operator may create users
    from tests.helpers.topology import harness_channel as _directory_channel
except ImportError:  # before it, the Directory takes any caller
    _directory_channel = grpc.aio.insecure_channel
from tests.integration.fuzz.strategies import (
    FuzzIds,
    message_strategy,
    raw_bodies,
    request_class,
)

pytestmark = [pytest.mark.fuzz, pytest.mark.asyncio(loop_scope="module")]

EXAMPLES = int(os.environ.get("PROCALL_FUZZ_EXAMPLES", "40"))
CALL_TIMEOUT = 10.0
SERVICES = (
    directory_service_pb2.DESCRIPTOR.services_by_name["DirectoryService"],
    presence_service_pb2.DESCRIPTOR.services_by_name["PresenceService"],
    chat_service_pb2.DESCRIPTOR.services_by_name["ChatService"],
    journal_service_pb2.DESCRIPTOR.services_by_name["JournalService"],
    call_service_pb2.DESCRIPTOR.services_by_name["CallService"],
    admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"],
    # last: its Logout and RefreshToken act on sessions
    session_service_pb2.DESCRIPTOR.services_by_name["SessionService"],
)
METHODS = [method for service in SERVICES for method in service.methods]

#: Codes a server may answer to a bad request. UNKNOWN and INTERNAL are defects;
#: DEADLINE_EXCEEDED means the server did not answer at all; DATA_LOSS is never right.
ALLOWED_CODES = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.UNIMPLEMENTED,
}
DECLARED_REASONS = {
    name.removeprefix("ERROR_REASON_") for name in error_reason_pb2.ErrorReason.keys()
}
#: Who calls: a user's session most often (it reaches the deepest code), an administrator's,
#: nobody, a forged token (alg none), garbage, or a user's token with one character changed.
AUTH_MODES = ("user", "user", "admin", "none", "forged", "garbage", "tampered")
FORGED_JWT = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhZG1pbiIsImFkbWluIjp0cnVlfQ."

if os.environ.get("CI"):
    settings.register_profile("procall-ci", derandomize=True)
    settings.load_profile("procall-ci")

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the work tree
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


@dataclass
class Mesh:
    """The running servers, the fuzz's identities and one channel per server."""

    system: System
    apps: dict[str, ServerApp]  # service full name -> the server that serves it
    tokens: dict[str, str]
    ids: FuzzIds
    channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)

    def channel(self, address: str) -> grpc.aio.Channel:
        """One channel per server, reused across examples."""
        if address not in self.channels:
            self.channels[address] = grpc.aio.insecure_channel(address)
        return self.channels[address]


def _settings_factory(redis_url: str, data: Path) -> Callable[[], Settings]:
    def make(url: str | None = None) -> Settings:
        made = Settings()
        made.server.port = 0
        made.server.grace_seconds = 0.5
        made.database.url = f"sqlite+aiosqlite:///{data / 'procall.db'}"
        made.chat.outbox_path = str(data / "{server_id}.outbox.sqlite")
        made.redis.url = url or redis_url
        return made

    return lambda: fast_settings(make, redis_url)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(
    redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Mesh]:
    """Directory, Lookup and two UCServers, with users, a conversation and sessions."""
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    started: list[ServerApp] = []

    async def start(role: str, config: Settings) -> ServerApp:
        app = await ROLES[role](config)
        await app.start()
        started.append(app)
        return app

    make = _settings_factory(redis_server.url, tmp_path_factory.mktemp("fuzz"))
    # bob and carol are fair game for the fuzz; admin, dave and erin it never names
    homes = [("bob", "uc-1"), ("carol", "uc-2"), ("dave", "uc-1"), ("erin", "uc-1")]
    system = await start_system(start, make, homes)
    try:
        uc1 = system.ucservers["uc-1"]
        async with _directory_channel(system.directory.address) as channel:
            await directory_grpc.DirectoryServiceStub(channel).CreateUser(
                directory_service_pb2.CreateUserRequest(
                    user=directory_pb2.User(
                        username="admin", display_name="Admin", home_server_id="uc-1", admin=True
                    ),
                    password=PASSWORD,
                )
            )
        bob = await login(uc1.address, "bob")
        admin = await login(uc1.address, "admin")
        async with grpc.aio.insecure_channel(uc1.address) as channel:
            chat = chat_grpc.ChatServiceStub(channel)
            created = await chat.CreateConversation(
                chat_service_pb2.CreateConversationRequest(
                    kind=chat_pb2.CONVERSATION_KIND_GROUP,
                    member_user_ids=[system.users["bob"], system.users["carol"]],
                    title="fuzz",
                ),
                metadata=auth(bob.session_token),
            )
            conversation_id = created.conversation.conversation_id
            sent = await chat.SendMessage(
                chat_service_pb2.SendMessageRequest(
                    conversation_id=conversation_id, text="hello", request_id="r-1"
                ),
                metadata=auth(bob.session_token),
            )
        apps: dict[str, ServerApp] = {}
        for app in [system.directory, uc1]:
            for name in app.grpc.service_names:
                apps.setdefault(name, app)
        ids = FuzzIds(
            [
                system.users["bob"],
                system.users["carol"],
                "bob",
                "carol",
                "uc-1",
                "uc-2",
                conversation_id,
                str(sent.message.message_id),
                bob.session.session_id,
                "r-1",
            ]
        )
        mesh = Mesh(
            system,
            apps,
            {"user": bob.session_token, "admin": admin.session_token},
            ids,
        )
        yield mesh
        for channel in mesh.channels.values():
            await channel.close()
    finally:
        for app in reversed(started):
            await app.stop(0)


# -- checking one answer ------------------------------------------------------------------------


def _error_info(trailing: Any) -> error_details_pb2.ErrorInfo | None:
    for key, value in trailing or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info
    return None


def assert_well_formed(
    method: str, code: grpc.StatusCode, details: str | None, trailing: Any
) -> None:
    """A call's status is OK, or canonical, explained and clean."""
    if code == grpc.StatusCode.OK:
        return
    text = details or ""
    where = f"{method}: {code.name} {text[:300]!r}"
    assert code in ALLOWED_CODES, where
    assert "Traceback" not in text and 'File "' not in text, where
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in text:
        return  # grpc's own limit on the request size answers before any procall code runs
    info = _error_info(trailing)
    assert info is not None, f"{where}: no ErrorInfo"
    assert info.domain == "procall.dev", where
    assert info.reason in DECLARED_REASONS, f"{where}: undeclared reason {info.reason!r}"


async def _metadata(mesh: Mesh, mode: str, garbage: str, method: str) -> tuple[Any, str | None]:
    """Call metadata for an auth mode; for SessionService a fresh session (returned)."""
    if mode == "none":
        return (), None
    if mode == "forged":
        return auth(FORGED_JWT), None
    if mode == "garbage":
        return (("authorization", garbage),), None
    if method.startswith("procall.api.session.") and mode == "user":
        # Logout and RefreshToken act on the session: never on the shared one
        fresh = await login(mesh.apps["procall.api.session.v1.SessionService"].address, "erin")
        return auth(fresh.session_token), fresh.session_token
    if mode == "tampered":
        token = mesh.tokens["user"]
        middle = len(token) // 2
        flipped = "A" if token[middle] != "A" else "B"
        return auth(token[:middle] + flipped + token[middle + 1 :]), None
    return auth(mesh.tokens[mode]), None


async def _logout(mesh: Mesh, token: str) -> None:
    address = mesh.apps["procall.api.session.v1.SessionService"].address
    call = mesh.channel(address).unary_unary("/procall.api.session.v1.SessionService/Logout")
    try:
        await call(b"", metadata=auth(token), timeout=CALL_TIMEOUT)
    except grpc.aio.AioRpcError:
        pass


async def _serving(address: str, channel: grpc.aio.Channel) -> None:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=CALL_TIMEOUT
    )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING, address


async def _call_unary(
    mesh: Mesh, method: _descriptor.MethodDescriptor, body: bytes, metadata: Any
) -> None:
    app = mesh.apps[method.containing_service.full_name]
    path = f"/{method.containing_service.full_name}/{method.name}"
    call = mesh.channel(app.address).unary_unary(path)
    try:
        reply = await call(body, metadata=metadata, timeout=CALL_TIMEOUT)
    except grpc.aio.AioRpcError as error:
        details, trailing = error.details(), error.trailing_metadata()
        assert_well_formed(method.full_name, error.code(), details, trailing)
    else:
        request_class(method.output_type).FromString(reply)  # a valid response message


async def _call_stream(
    mesh: Mesh, method: _descriptor.MethodDescriptor, bodies: list[bytes], metadata: Any
) -> None:
    app = mesh.apps[method.containing_service.full_name]
    path = f"/{method.containing_service.full_name}/{method.name}"
    call = mesh.channel(app.address).stream_stream(path)(metadata=metadata, timeout=CALL_TIMEOUT)

    write_failed = False

    async def talk() -> None:
        nonlocal write_failed
        for body in bodies:
            if call.done():  # the server has answered already (refused the stream)
                break
            try:
                await call.write(body)
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                write_failed = True  # the server closed the stream meanwhile
                break
        if not call.done():
            await call.done_writing()
        try:
            async for _ in call:
                pass
        except grpc.aio.AioRpcError:
            pass  # the status below

    try:
        # a stream that opened stays open for events: end it after a while
        await asyncio.wait_for(talk(), 0.5)
    except TimeoutError:
        call.cancel()
        return
    code, details, trailing = (
        await call.code(),
        await call.details(),
        await call.trailing_metadata(),
    )
    if write_failed and code == grpc.StatusCode.INTERNAL and details == _CLIENT_WRITE_FAILED:
        # grpc's aio client replaces the server's status with this one when a write meets a
        # stream the server has just ended; the server's own answer is lost to us here
        return
    assert_well_formed(method.full_name, code, details, trailing)


_CLIENT_WRITE_FAILED = "Internal error from Core"


# -- the properties ---------------------------------------------------------------------------


def _body(method: _descriptor.MethodDescriptor, ids: FuzzIds) -> st.SearchStrategy[bytes]:
    messages = message_strategy(method.input_type, ids).map(lambda m: m.SerializeToString())
    raw = raw_bodies()
    # three in four are messages of the right type (they reach the servicers), one is no message
    return st.sampled_from((True, True, True, False)).flatmap(
        lambda typed: messages if typed else raw
    )


_GARBAGE_AUTH = st.one_of(
    st.just(""),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
    st.sampled_from(("Bearer", "Bearer ", "bearer x", "Basic YWRtaW46YWRtaW4=")),
)
_bodies: dict[str, st.SearchStrategy[list[bytes]]] = {}


def _bodies_of(
    method: _descriptor.MethodDescriptor, ids: FuzzIds
) -> st.SearchStrategy[list[bytes]]:
    if method.full_name not in _bodies:
        streaming = method.client_streaming or method.server_streaming
        _bodies[method.full_name] = st.lists(
            _body(method, ids), min_size=1, max_size=3 if streaming else 1
        )
    return _bodies[method.full_name]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: f"{m.containing_service.name}.{m.name}")
@FUZZ_SETTINGS
@given(data=st.data(), mode=st.sampled_from(AUTH_MODES), garbage=_GARBAGE_AUTH)
async def test_every_answer_is_ok_or_a_well_formed_error(
    mesh: Mesh, method: _descriptor.MethodDescriptor, data: st.DataObject, mode: str, garbage: str
) -> None:
    bodies = data.draw(_bodies_of(method, mesh.ids), label="bodies")
    metadata, fresh = await _metadata(mesh, mode, garbage, method.full_name)
    try:
        if method.client_streaming or method.server_streaming:
            await _call_stream(mesh, method, bodies, metadata)
        else:
            await _call_unary(mesh, method, bodies[0], metadata)
    finally:
        if fresh is not None:
            await _logout(mesh, fresh)
    app = mesh.apps[method.containing_service.full_name]
    await _serving(app.address, mesh.channel(app.address))


async def test_the_mesh_still_serves_after_fuzzing(mesh: Mesh) -> None:
    """Health SERVING everywhere, and a user the fuzz never named works as usual."""
    for app in [mesh.system.directory, mesh.system.lookup, *mesh.system.ucservers.values()]:
        await _serving(app.address, mesh.channel(app.address))
    uc1 = mesh.system.ucservers["uc-1"]
    dave = await login(uc1.address, "dave")
    # a fuzzed Rebalance (an administrator's, naming nobody) may have moved him: any live home
    home = dave.session.home_server
    assert home.server_id in mesh.system.ucservers and home.address
    channel = mesh.channel(home.address)
    presence = await presence_grpc.PresenceServiceStub(channel).GetPresence(
        presence_service_pb2.GetPresenceRequest(user_id=mesh.system.users["dave"]),
        metadata=auth(dave.session_token),
        timeout=CALL_TIMEOUT,
    )
    assert presence.presence.user_id == mesh.system.users["dave"]
    chat = chat_grpc.ChatServiceStub(channel)
    created = await chat.CreateConversation(
        chat_service_pb2.CreateConversationRequest(
            kind=chat_pb2.CONVERSATION_KIND_DIRECT,
            member_user_ids=[mesh.system.users["dave"], mesh.system.users["erin"]],
        ),
        metadata=auth(dave.session_token),
        timeout=CALL_TIMEOUT,
    )
    sent = await chat.SendMessage(
        chat_service_pb2.SendMessageRequest(
            conversation_id=created.conversation.conversation_id,
            text="still here",
            request_id="after-fuzz-1",
        ),
        metadata=auth(dave.session_token),
        timeout=CALL_TIMEOUT,
    )
    assert sent.message.text == "still here"
