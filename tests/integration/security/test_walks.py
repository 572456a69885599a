"""Deny by default on running servers: every method of every role, called with no
credentials, answers UNAUTHENTICATED (before UNIMPLEMENTED) except the public ones; mesh
methods refuse a user's token; bad tokens are refused by verifiers and the issuer alike."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from procall.api.directory.v1 import directory_service_pb2 as svc
from procall.api.presence.v1 import presence_service_pb2 as presence_pb
from procall.api.presence.v1 import presence_service_pb2_grpc as presence_grpc
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.security.keys import load_signing_key
from procall.servers.runtime.policy import POLICIES
from procall.session.tokens import TokenSigner
from procall.settings import Settings
from tests.helpers.topology import StartApp, auth, error_info, token_key_files
from tests.integration.security.conftest import Secured

ROLES = ("directory", "lookup", "ucserver", "media")


def _methods(service_names: list[str]) -> list[tuple[str, bool, bool]]:
    """``(full method, client streaming, server streaming)`` of the services."""
    from google.protobuf import descriptor_pool

    pool = descriptor_pool.Default()
    found = []
    for name in service_names:
        service = pool.FindServiceByName(name)
        for method in service.methods:
            found.append(
                (
                    f"/{service.full_name}/{method.name}",
                    method.client_streaming,
                    method.server_streaming,
                )
            )
    return found


async def _call(
    channel: grpc.aio.Channel,
    method: str,
    client_streaming: bool,
    server_streaming: bool,
    metadata: tuple[tuple[str, str], ...] = (),
) -> grpc.StatusCode:
    """Call ``method`` with an empty body (or stream); its status code."""
    try:
        if client_streaming and server_streaming:
            call = channel.stream_stream(method)(iter([b""]), metadata=metadata, timeout=5)
            async for _ in call:
                pass
        elif server_streaming:
            call = channel.unary_stream(method)(b"", metadata=metadata, timeout=5)
            async for _ in call:
                pass
        elif client_streaming:
            await channel.stream_unary(method)(iter([b""]), metadata=metadata, timeout=5)
        else:
            await channel.unary_unary(method)(b"", metadata=metadata, timeout=5)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("role", ROLES)
async def test_every_method_refuses_a_caller_without_credentials(
    role: str, redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    app = await start_app(role, make_settings(redis_url))
    methods = _methods(app.grpc.service_names)
    assert methods
    async with grpc.aio.insecure_channel(app.address) as channel:
        for method, client_streaming, server_streaming in methods:
            assert method in POLICIES, method
            if POLICIES[method].public:
                continue
            code = await _call(channel, method, client_streaming, server_streaming)
            assert code == grpc.StatusCode.UNAUTHENTICATED, (method, code)


async def test_mesh_methods_refuse_a_users_token(secured: Secured) -> None:
    alice = auth(secured.tokens["alice"])
    targets = [
        (secured.system.ucservers["uc-1"].address, "procall.mesh.peer.v1.PeerService"),
        (secured.system.lookup.address, "procall.mesh.lookup.v1.LookupService"),
        (secured.system.directory.address, "procall.api.directory.v1.DirectoryService"),
    ]
    for address, service in targets:
        async with grpc.aio.insecure_channel(address) as channel:
            for method, cs, ss in _methods([service]):
                policy = POLICIES[method]
                if policy.session.value != "none":
                    continue
                code = await _call(channel, method, cs, ss, alice)
                assert code == grpc.StatusCode.PERMISSION_DENIED, (method, code)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _bad_tokens(good: str) -> dict[str, str]:
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    as_admin = _b64(json.dumps(claims | {"adm": True}).encode())
    none_header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    other, _ = TokenSigner(Ed25519PrivateKey.generate(), 60).issue(
        session_id="s", user_id=claims["sub"], username="alice", home_server_id="uc-1", admin=True
    )
    signing_key = load_signing_key(token_key_files()[0])
    expired, _ = TokenSigner(signing_key, 60, clock=lambda: 1_000_000.0).issue(
        session_id="s", user_id=claims["sub"], username="alice", home_server_id="uc-1", admin=False
    )
    foreign, _ = TokenSigner(signing_key, 60, audience="another-system").issue(
        session_id="s", user_id=claims["sub"], username="alice", home_server_id="uc-1", admin=False
    )
    return {
        "tampered": f"{header}.{as_admin}.{signature}",
        "alg-none": f"{none_header}.{as_admin}.",
        "other-key": other,
        "expired": expired,
        "wrong-audience": foreign,
        "garbage": "not-a-token",
    }


async def test_bad_tokens_are_refused_by_the_issuer_and_by_a_verifier(secured: Secured) -> None:
    ucserver = secured.system.ucservers["uc-1"].address
    async with grpc.aio.insecure_channel(ucserver) as channel:
        presence = presence_grpc.PresenceServiceStub(channel)
        for name, token in _bad_tokens(secured.tokens["alice"]).items():
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await presence.ListContacts(presence_pb.ListContactsRequest(), metadata=auth(token))
            assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await secured.directory.ListUsers(svc.ListUsersRequest(), metadata=auth(token))
            assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
            if name == "expired":
                assert error_info(failure.value).reason == "TOKEN_EXPIRED"


async def test_a_logged_out_token_is_refused(secured: Secured) -> None:
    ucserver = secured.system.ucservers["uc-1"].address
    token = secured.tokens["bob"]
    async with grpc.aio.insecure_channel(ucserver) as channel:
        presence = presence_grpc.PresenceServiceStub(channel)
        await presence.ListContacts(presence_pb.ListContactsRequest(), metadata=auth(token))
        await session_grpc.SessionServiceStub(channel).Logout(
            session_pb.LogoutRequest(), metadata=auth(token)
        )
        await asyncio.sleep(0)
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await presence.ListContacts(presence_pb.ListContactsRequest(), metadata=auth(token))
    assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED
