"""The demo ``procall up`` seeds: a dozen users, a delegation, a pick-up group, contacts.

Twelve users are spread over the two UCServers ``ucserver-1`` and ``ucserver-2``;
Grace (the team assistant) may set presence, forward calls and pick up calls for
Frank (the team lead); Alice, Bob and Carol form the pick-up group ``Sales pick-up``.
Alice and Frank (``ucserver-1``) and Grace (``ucserver-2``) are each other's
contacts (``DEMO_CONTACTS``), so a presence change of one reaches the others across
servers. Seeding is idempotent: a second ``procall up`` on the same data finds
everything in place and leaves it alone (passwords an admin changed stay changed, a
contact list someone edited stays as it is). A read-only (LDAP) directory is not
seeded with users.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc

from procall.api.directory.v1 import directory_pb2 as pb
from procall.api.directory.v1 import directory_service_pb2 as svc
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.servers.runtime.channels import proving_channel
from procall.servers.runtime.identity import ProofSigner, role_target

__all__ = ["DEMO_CONTACTS", "DEMO_USERS", "DemoUser", "seed_demo_contacts", "seed_demo_directory"]


@dataclass(frozen=True)
class DemoUser:
    """One demo account; its password is ``<username>-demo``."""

    username: str
    display_name: str
    department: str
    phone_number: str
    home_server_id: str
    admin: bool = False

    @property
    def password(self) -> str:
        """The demo password."""
        return f"{self.username}-demo"


DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("alice", "Alice Anderson", "Sales", "+49 231 555 0101", "ucserver-1"),
    DemoUser("bob", "Bob Brown", "Sales", "+49 231 555 0102", "ucserver-1"),
    DemoUser("carol", "Carol Clark", "Sales", "+49 231 555 0103", "ucserver-1"),
    DemoUser("dave", "Dave Davis", "Support", "+49 231 555 0104", "ucserver-1"),
    DemoUser("erin", "Erin Evans", "Support", "+49 231 555 0105", "ucserver-1"),
    DemoUser("frank", "Frank Fischer", "Management", "+49 231 555 0106", "ucserver-1"),
    DemoUser("grace", "Grace Green", "Management", "+49 231 555 0107", "ucserver-2"),
    DemoUser("heidi", "Heidi Hoffmann", "Engineering", "+49 231 555 0108", "ucserver-2"),
    DemoUser("ivan", "Ivan Ivanov", "Engineering", "+49 231 555 0109", "ucserver-2"),
    DemoUser("judy", "Judy Jones", "Engineering", "+49 231 555 0110", "ucserver-2"),
    DemoUser("mallory", "Mallory Meyer", "Finance", "+49 231 555 0111", "ucserver-2"),
    DemoUser("oscar", "Oscar Olsen", "IT", "+49 231 555 0112", "ucserver-2", admin=True),
)
#: Who watches whom (username, the usernames of the contacts): homed on different servers.
DEMO_CONTACTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("alice", ("grace",)),
    ("frank", ("grace",)),
    ("grace", ("alice", "frank")),
)
_DOMAIN = "demo.procall.example"
_DELEGATION = ("frank", "grace")  # principal, delegate
_PICKUP_GROUP = ("Sales pick-up", ("alice", "bob", "carol"))


def _ensure_user(stub: directory_grpc.DirectoryServiceStub, user: DemoUser, timeout: float) -> str:
    message = pb.User(
        username=user.username,
        display_name=user.display_name,
        mail=f"{user.username}@{_DOMAIN}",
        principal_name=f"{user.username}@{_DOMAIN}",
        phone_number=user.phone_number,
        department=user.department,
        home_server_id=user.home_server_id,
        admin=user.admin,
    )
    try:
        reply = stub.CreateUser(
            svc.CreateUserRequest(user=message, password=user.password),
            timeout=timeout,
        )
        return str(reply.user.user_id)
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
    found = stub.GetUser(svc.GetUserRequest(username=user.username), timeout=timeout)
    return str(found.user.user_id)


def _ignore_existing(call: grpc.RpcError) -> None:
    if call.code() != grpc.StatusCode.ALREADY_EXISTS:
        raise call


def seed_demo_directory(
    address: str,
    *,
    timeout: float = 30.0,
    credentials: grpc.ChannelCredentials | None = None,
    proof: ProofSigner | None = None,
) -> list[tuple[str, str, str]]:
    """Seed the demo directory at ``address``; returns ``(username, password, home server)``.

    The seeding calls come from the local operator: with ``credentials`` (the
    operator's certificate, mutual TLS) or, in plain mode, with a ``proof`` signer.
    Raises ``grpc.RpcError`` when the Directory does not answer.
    """
    opened = (
        grpc.insecure_channel(address)
        if credentials is None
        else grpc.secure_channel(address, credentials)
    )
    if proof is not None:
        opened = proving_channel(opened, proof, role_target("directory"))
    with opened as channel:
        stub = directory_grpc.DirectoryServiceStub(channel)
        info = stub.GetDirectoryInfo(svc.GetDirectoryInfoRequest(), timeout=timeout)
        if not info.writable:
            return []
        # two at a time: argon2 hashing is deliberately heavy on the Directory
        with ThreadPoolExecutor(max_workers=2) as pool:
            ids = dict(
                zip(
                    (u.username for u in DEMO_USERS),
                    pool.map(lambda u: _ensure_user(stub, u, timeout), DEMO_USERS),
                    strict=True,
                )
            )
        principal, delegate = _DELEGATION
        try:
            stub.CreateDelegation(
                svc.CreateDelegationRequest(
                    delegation=pb.Delegation(
                        principal_user_id=ids[principal],
                        delegate_user_id=ids[delegate],
                        scopes=[
                            pb.DELEGATION_SCOPE_PRESENCE_SET,
                            pb.DELEGATION_SCOPE_CALLS_FORWARD,
                            pb.DELEGATION_SCOPE_CALLS_PICKUP,
                        ],
                    )
                ),
                timeout=timeout,
            )
        except grpc.RpcError as exc:
            _ignore_existing(exc)
        name, members = _PICKUP_GROUP
        try:
            stub.CreatePickupGroup(
                svc.CreatePickupGroupRequest(
                    pickup_group=pb.PickupGroup(
                        name=name, member_user_ids=[ids[m] for m in members]
                    )
                ),
                timeout=timeout,
            )
        except grpc.RpcError as exc:
            _ignore_existing(exc)
    return [(u.username, u.password, u.home_server_id) for u in DEMO_USERS]


def seed_demo_contacts(
    ucserver_address: str,
    contacts: Sequence[tuple[str, Sequence[str]]] = DEMO_CONTACTS,
    *,
    timeout: float = 30.0,
    ca_file: Path | None = None,
) -> int:
    """Give each demo user of ``contacts`` its contacts, logging in through the UCServer
    at ``ucserver_address`` as that user (over TLS verified by ``ca_file`` when given);
    a user who has contacts already is left alone. Returns how many users got
    contacts; raises ``ProcallClientError`` on failure."""
    return asyncio.run(_seed_contacts(ucserver_address, contacts, timeout, ca_file))


async def _seed_contacts(
    address: str,
    contacts: Sequence[tuple[str, Sequence[str]]],
    timeout: float,
    ca_file: Path | None,
) -> int:
    from procall.client import ClientOptions, ProcallClient, tls_channels

    factory = tls_channels(ca_file) if ca_file is not None else None

    users = {u.username: u for u in DEMO_USERS}
    seeded = 0
    for username, names in contacts:
        client = await ProcallClient.login(
            address,
            username,
            users[username].password,
            client_name="procall-up/demo-seed",
            options=ClientOptions(call_timeout=timeout),
            connect=False,
            channel_factory=factory,
        )
        try:
            if not await client.contacts():
                await client.add_contacts(usernames=list(names))
                seeded += 1
        finally:
            await client.logout()
    return seeded
