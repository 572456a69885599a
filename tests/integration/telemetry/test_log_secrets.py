"""No log line of a full run shows a password, a token or a key: logins (a wrong password
too), streams with resume tokens, presence, chat across two UCServers and a logout, at
DEBUG, in plain mode (per-call proofs of the service credential) and with TLS."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from procall.api.chat.v1 import chat_pb2
from procall.api.chat.v1 import chat_service_pb2 as chat_pb
from procall.api.chat.v1 import chat_service_pb2_grpc as chat_grpc
from procall.api.presence.v1 import presence_pb2
from procall.api.presence.v1 import presence_service_pb2 as presence_pb
from procall.api.presence.v1 import presence_service_pb2_grpc as presence_grpc
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.servers.runtime.serve import secrets_of
from procall.settings import Settings
from procall.telemetry.logs import configure_logging
from tests.helpers.streams import EventStream
from tests.helpers.topology import (
    PASSWORD,
    SERVICE_CREDENTIAL,
    StartApp,
    auth,
    fast_settings,
    login,
    start_system,
    token_key_files,
)

HOMES = [("alice", "uc-1"), ("bob", "uc-2")]
WRONG_PASSWORD = "not-alice's-password-42"


def _key_material(path: str | Path) -> list[str]:
    """The base64 lines of a PEM file (any of them in a log would leak part of the key)."""
    lines = Path(path).read_text("utf-8").splitlines()
    return [line for line in lines if line and not line.startswith("-----")]


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Every record of the run, at DEBUG, as procall writes it with ``format = "json"``."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setLevel(logging.DEBUG)
    configure_logging("json", secrets=[], handlers=[handler])
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield out
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_a_full_run_logs_no_password_token_or_key(
    tls: bool,
    redis_url: str,
    make_settings: Callable[..., Settings],
    start_app: StartApp,
    tmp_path: Path,
    json_log: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    tls_dir = tmp_path / "tls" if tls else None
    system = await start_system(
        start_app, lambda: fast_settings(make_settings, redis_url), HOMES, tls_dir=tls_dir
    )
    uc1, uc2 = system.ucservers["uc-1"], system.ucservers["uc-2"]
    alice = await login(uc1.address, "alice", system.channel)
    bob = await login(uc2.address, "bob", system.channel)
    secrets = [PASSWORD, WRONG_PASSWORD, SERVICE_CREDENTIAL, alice.session_token,
               bob.session_token]  # fmt: skip
    secrets += _key_material(token_key_files()[0])
    if tls_dir is not None:
        secrets += [line for key in tls_dir.rglob("*.key") for line in _key_material(key)]
    alice_stream = EventStream(uc1.address, alice.session_token, system.channel)
    bob_stream = EventStream(uc2.address, bob.session_token, system.channel)
    secrets.append((await alice_stream.open()).resume_token)
    secrets.append((await bob_stream.open()).resume_token)
    try:
        async with system.channel(uc2.address) as channel:
            await presence_grpc.PresenceServiceStub(channel).AddContacts(
                presence_pb.AddContactsRequest(user_ids=[system.users["alice"]]),
                metadata=auth(bob.session_token),
            )
        async with system.channel(uc1.address) as channel:
            await presence_grpc.PresenceServiceStub(channel).SetPresence(
                presence_pb.SetPresenceRequest(
                    availability=presence_pb2.AVAILABILITY_AWAY, note="lunch"
                ),
                metadata=auth(alice.session_token),
            )
            chat = chat_grpc.ChatServiceStub(channel)
            conversation = (
                await chat.CreateConversation(
                    chat_pb.CreateConversationRequest(
                        kind=chat_pb2.CONVERSATION_KIND_DIRECT,
                        member_user_ids=[system.users["bob"]],
                    ),
                    metadata=auth(alice.session_token),
                )
            ).conversation
            await chat.SendMessage(
                chat_pb.SendMessageRequest(
                    conversation_id=conversation.conversation_id,
                    text="see you",
                    request_id=uuid.uuid4().hex,
                ),
                metadata=auth(alice.session_token),
            )
            session = session_grpc.SessionServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError):
                await session.Login(
                    session_pb.LoginRequest(username="alice", password=WRONG_PASSWORD)
                )
            with pytest.raises(grpc.aio.AioRpcError):  # a forged token is refused
                await chat.ListConversations(
                    chat_pb.ListConversationsRequest(),
                    metadata=auth(alice.session_token[:-4] + "AAAA"),
                )
        await bob_stream.presence_of(system.users["alice"])
        await bob_stream.next_of("message_created")
        async with system.channel(uc1.address) as channel:
            await session_grpc.SessionServiceStub(channel).Logout(
                session_pb.LogoutRequest(), metadata=auth(alice.session_token)
            )
    finally:
        await alice_stream.close()
        await bob_stream.close()
    for app in [system.directory, system.lookup, uc1, uc2]:  # their stop is logged too
        await app.stop(0)

    written = json_log.getvalue().splitlines()
    assert len(written) > 20  # the run was logged, at DEBUG
    for line in written:
        json.loads(line)  # each line one JSON object
    # neither what procall writes nor the records themselves (what any handler would get)
    raw = [record.getMessage() for record in caplog.records]
    for secret in [s for s in secrets if s]:
        assert not [line for line in written if secret in line], f"a secret was logged: {secret!r}"
        assert not [line for line in raw if secret in line], f"a secret was logged: {secret!r}"
    assert secrets_of(fast_settings(make_settings, redis_url)) == [SERVICE_CREDENTIAL]
