"""An in-process system for integration tests: Directory, Lookup and two UCServers on one
Redis, with users homed on either server, plus small gRPC client helpers."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from procall.api.directory.v1 import directory_pb2
from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.mesh.lookup.v1 import lookup_pb2
from procall.mesh.lookup.v1 import lookup_service_pb2 as lookup_pb
from procall.mesh.lookup.v1 import lookup_service_pb2_grpc as lookup_grpc
from procall.security.keys import generate_token_keys
from procall.servers.runtime.app import ServerApp
from procall.servers.runtime.channels import calling_channel, proofs_for
from procall.servers.runtime.identity import ProofSigner, role_target
from procall.settings import Settings
from tests.helpers.tls import certificate, tls_channel, use_tls

StartApp = Callable[[str, Settings], Awaitable[ServerApp]]
PASSWORD = "correct horse battery"
#: The plain-mode service credential of the test systems.
SERVICE_CREDENTIAL = "service-secret"


def _proofs(role: str, target: str) -> Any:
    return proofs_for(ProofSigner(SERVICE_CREDENTIAL, role, "tests"), target)


def harness_channel(address: str) -> grpc.aio.Channel:
    """A Directory channel for tests about the directory itself, not about who may call it:
    its ``Authenticate`` calls prove the UCServer role, every other call the operator."""
    as_ucserver = _proofs("ucserver", role_target("directory"))
    as_operator = _proofs("operator", role_target("directory"))

    def by_method(method: str) -> Sequence[tuple[str, str]]:
        prove = as_ucserver if method.endswith("/Authenticate") else as_operator
        return prove(method)  # type: ignore[no-any-return]

    return calling_channel(address, extra=by_method)


def mint_token(
    ucserver: ServerApp, *, user_id: str = "u-test", username: str = "test", admin: bool = False
) -> str:
    """A session token signed by ``ucserver`` for a user the Directory need not know."""
    manager: Any = ucserver.enforcer.verifier  # the UCServer's SessionManager
    token, _ = manager.signer.issue(
        session_id=f"s-{user_id}",
        user_id=user_id,
        username=username,
        home_server_id=ucserver.server_id,
        admin=admin,
    )
    return str(token)


def token_key_files() -> tuple[str, str]:
    """``(signing key file, verify key file)`` of the test systems (made once per run)."""
    global _KEYS
    if _KEYS is None:
        private, public = generate_token_keys(tempfile.mkdtemp(prefix="procall-test-keys-"))
        _KEYS = (str(private), str(public))
    return _KEYS


_KEYS: tuple[str, str] | None = None


def operator_channel(
    address: str, role: str = "operator", target: str = "directory"
) -> grpc.aio.Channel:
    """A plain-mode channel whose calls prove the local operator (or another service
    ``role``) to ``target``: ``directory`` or ``lookup``, or the id of the server called."""
    aimed = role_target(target) if target in ("directory", "lookup") else target
    return calling_channel(address, extra=_proofs(role, aimed))


def fast_settings(make_settings: Callable[..., Settings], redis_url: str) -> Settings:
    """Settings for quick tests: short heartbeats, cheap password hashing."""
    settings = make_settings(redis_url)
    settings.auth.service_credential = SERVICE_CREDENTIAL
    settings.lookup.heartbeat_interval = 0.2
    settings.lookup.heartbeat_ttl = 1.0
    settings.directory.argon2_time_cost = 1
    settings.directory.argon2_memory_kib = 1024
    settings.directory.argon2_parallelism = 1
    # every server of a test shares the test's event loop: only a loop stuck for seconds
    # (not a busy CI box) sheds load, except where a test asks for it
    settings.limits.overload_window_seconds = 3.0
    return settings


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    """Poll until ``predicate`` holds (fails the test after ``timeout`` seconds)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@dataclass
class System:
    """The running servers and the users created in the Directory."""

    directory: ServerApp
    lookup: ServerApp
    ucservers: dict[str, ServerApp]
    users: dict[str, str] = field(default_factory=dict)  # username -> user_id
    #: The private CA's certificate when the system runs with TLS.
    ca_file: Path | None = None
    #: Where the CA and the certificates live when the system runs with TLS.
    tls_dir: Path | None = None

    def channel(self, address: str) -> grpc.aio.Channel:
        """A client's channel to ``address`` (TLS verified by the CA when the system has one)."""
        if self.ca_file is None:
            return grpc.aio.insecure_channel(address)
        return tls_channel(address, self.ca_file)

    def operator_channel(self, server: ServerApp, role: str = "operator") -> grpc.aio.Channel:
        """A channel on which the local operator (or a server of ``role``) calls ``server``:
        its mesh port with a certificate under TLS, plain-mode proofs otherwise."""
        if self.tls_dir is None:
            target = server.role if server.role in ("directory", "lookup") else server.server_id
            return operator_channel(server.address, role, target)
        client = certificate(self.tls_dir, role, "tests")
        return tls_channel(server.mesh_address, self.ca_file or "", client)


async def start_system(
    start_app: StartApp,
    settings: Callable[[], Settings],
    homes: Sequence[tuple[str, str]],
    configure_ucserver: Callable[[Settings], None] = lambda s: None,
    tls_dir: Path | None = None,
) -> System:
    """Start the servers and create users ``(username, home server id)``.

    With ``tls_dir`` every server gets a certificate from a CA made there and listens
    with TLS (a client port and a mutual-TLS mesh port); servers dial each other's
    mesh address, clients the client address (``System.channel``).
    """

    def secured(made: Settings, role: str, server_id: str) -> Settings:
        return made if tls_dir is None else use_tls(made, tls_dir, role, server_id)

    directory = await start_app("directory", secured(settings(), "directory", "directory-1"))
    lookup_settings = secured(settings(), "lookup", "lookup-1")
    lookup_settings.directory.address = directory.mesh_address
    lookup = await start_app("lookup", lookup_settings)
    ucservers = {}
    for server_id in sorted({home for _, home in homes}):
        uc = secured(settings(), "ucserver", server_id)
        uc.server.server_id = server_id
        uc.directory.address = directory.mesh_address
        uc.lookup.address = lookup.mesh_address
        configure_ucserver(uc)
        ucservers[server_id] = await start_app("ucserver", uc)
    ca_file = None if tls_dir is None else tls_dir / "ca.pem"
    system = System(directory, lookup, ucservers, ca_file=ca_file, tls_dir=tls_dir)
    async with system.operator_channel(directory) as channel:
        stub = directory_grpc.DirectoryServiceStub(channel)
        for name, home in homes:
            reply = await stub.CreateUser(
                directory_pb.CreateUserRequest(
                    user=directory_pb2.User(
                        username=name, display_name=name.title(), home_server_id=home
                    ),
                    password=PASSWORD,
                )
            )
            system.users[name] = reply.user.user_id

    async def all_registered() -> bool:
        async with system.operator_channel(lookup) as channel:
            reply = await lookup_grpc.LookupServiceStub(channel).ListServers(
                lookup_pb.ListServersRequest(role=lookup_pb2.ROLE_UCSERVER)
            )
        return {s.server_id for s in reply.servers} == set(ucservers)

    await wait_for(all_registered)
    await asyncio.sleep(0.6)  # the peer meshes refresh their topology every heartbeat interval
    return system


def auth(token: str) -> tuple[tuple[str, str]]:
    """Call metadata carrying a session token."""
    return (("authorization", f"Bearer {token}"),)


ChannelFor = Callable[[str], grpc.aio.Channel]


async def login(
    address: str, username: str, channel_for: ChannelFor = grpc.aio.insecure_channel
) -> session_pb.LoginResponse:
    """Log in with the test password (``channel_for=system.channel`` for a TLS system)."""
    async with channel_for(address) as channel:
        return await session_grpc.SessionServiceStub(channel).Login(
            session_pb.LoginRequest(username=username, password=PASSWORD, client_name="test")
        )


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The ErrorInfo detail of a failed call."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info
    raise AssertionError("no ErrorInfo")
