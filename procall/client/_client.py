"""``ProcallClient``: log in anywhere, follow the home server, keep the event stream.

::

    client = await ProcallClient.login("127.0.0.1:50051", "alice", "secret")
    try:
        await client.add_contacts([bob_id])
        await client.set_presence(Availability.BUSY, note="in a meeting")
        async for event in client.events():
            print(event)
    finally:
        await client.logout()

Every call goes to the user's home server. A WRONG_HOME_SERVER answer (the
user was moved) is followed to the server it names; a refused session token
(UNAUTHENTICATED) leads to a new login when the password is known. The token
is refreshed in the background before it expires. Failures surface as
``ProcallClientError``. See ``procall.client._stream`` for what the event
stream does on trouble.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import TypeVar

import grpc
from google.protobuf import field_mask_pb2

from procall.api.presence.v1 import presence_pb2
from procall.api.presence.v1 import presence_service_pb2 as presence_pb
from procall.api.presence.v1 import presence_service_pb2_grpc as presence_grpc
from procall.api.session.v1 import session_pb2
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.client._calls import CallMethods
from procall.client._errors import ProcallClientError, error_from_rpc
from procall.client._events import ClientEvent
from procall.client._models import (
    Availability,
    Presence,
    ServerEndpoint,
    SessionInfo,
    datetime_from_proto,
)
from procall.client._options import ChannelFactory, ClientOptions, insecure_channel
from procall.client._stream import EventStream

__all__ = ["DEFAULT_CLIENT_NAME", "ProcallClient"]

#: Sent as ``client_name`` unless the application names itself.
DEFAULT_CLIENT_NAME = "procall-python/0.1"

R = TypeVar("R")
Metadata = tuple[tuple[str, str], ...]
_Invoke = Callable[[grpc.aio.Channel, Metadata, float], Awaitable[R]]


def _lifetime(session: session_pb2.Session) -> float:
    """Seconds a token lives, from the server's own timestamps (immune to clock skew)."""
    if not session.HasField("expire_time") or not session.HasField("create_time"):
        return 0.0
    return max(
        0.0, (session.expire_time.ToNanoseconds() - session.create_time.ToNanoseconds()) / 1e9
    )


class ProcallClient(CallMethods):
    """One logged-on session of a user (see the module doc).

    Create it with ``await ProcallClient.login(...)`` (or ``attach(...)`` for a
    session token you kept); use it as ``async with`` to log out at the end. The calls
    methods (``place_call``, ``answer_call``, ``negotiate_media``, ...) come from
    ``procall.client._calls``.
    """

    def __init__(
        self,
        *,
        options: ClientOptions | None = None,
        channel_factory: ChannelFactory | None = None,
        client_name: str = DEFAULT_CLIENT_NAME,
    ) -> None:
        """Use ``login`` or ``attach``; a bare instance has no session."""
        self.options = options or ClientOptions()
        self.client_name = client_name
        self._factory = channel_factory or insecure_channel
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._token = ""
        self._username = ""
        self._password: str | None = None
        self._entry = ""  # the address the user gave; logins fall back to it
        self._home = ServerEndpoint("", "")
        self._session: SessionInfo | None = None
        self._lifetime = 0.0
        self._token_since = time.monotonic()
        self._auth_lock = asyncio.Lock()
        self._token_changed = asyncio.Event()
        self._refresher: asyncio.Task[None] | None = None
        self._stream = EventStream(self, self.options)
        self._closed = False

    # -- construction ---------------------------------------------------------------------

    @classmethod
    async def login(
        cls,
        address: str,
        username: str,
        password: str,
        *,
        client_name: str = DEFAULT_CLIENT_NAME,
        options: ClientOptions | None = None,
        channel_factory: ChannelFactory | None = None,
        remember_password: bool = True,
        connect: bool = True,
    ) -> ProcallClient:
        """Log in through any UCServer (``host:port``) and go to the home server.

        With ``connect`` the event stream is opened before this returns (an error
        opening it is raised here); otherwise it opens on the first ``events()``.
        ``remember_password`` keeps the password in memory so the client can log in
        again by itself when the session token is refused.
        """
        client = cls(options=options, channel_factory=channel_factory, client_name=client_name)
        try:
            client._entry = address
            client._username = username
            reply = await client._login_at(address, username, password)
            client._password = password if remember_password else None
            client._logged_in(reply)
            if connect:
                await client._stream.start()
        except BaseException:
            await client.close()
            raise
        return client

    @classmethod
    async def attach(
        cls,
        address: str,
        token: str,
        *,
        client_name: str = DEFAULT_CLIENT_NAME,
        options: ClientOptions | None = None,
        channel_factory: ChannelFactory | None = None,
    ) -> ProcallClient:
        """Continue a session from its token (kept by the application) through any server.

        The event stream opens before this returns, on the home server (a
        WRONG_HOME_SERVER answer is followed). Without a password the client
        cannot log in again: once the token is refused, ``events()`` raises.
        """
        client = cls(options=options, channel_factory=channel_factory, client_name=client_name)
        try:
            client._entry = address
            client._token = token
            client._home = ServerEndpoint("", address)
            await client._stream.start()
            client._start_refresher()
        except BaseException:
            await client.close()
            raise
        return client

    async def _login_at(
        self, address: str, username: str, password: str
    ) -> session_pb.LoginResponse:
        request = session_pb.LoginRequest(
            username=username, password=password, client_name=self.client_name
        )
        try:
            return await session_grpc.SessionServiceStub(self.channel(address)).Login(
                request, timeout=self.options.call_timeout
            )
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(error) from None

    def _logged_in(self, reply: session_pb.LoginResponse) -> None:
        session = reply.session
        home = session.home_server
        self._token = reply.session_token
        self._token_since = time.monotonic()
        self._lifetime = _lifetime(session)
        self._home = ServerEndpoint(home.server_id, home.address or self._entry)
        self._session = SessionInfo(
            session_id=session.session_id,
            user_id=session.user_id,
            username=session.username,
            home_server=self._home,
            expire_time=datetime_from_proto(session.expire_time),
        )
        self._token_changed.set()
        self._start_refresher()

    # -- state ----------------------------------------------------------------------------

    @property
    def session(self) -> SessionInfo | None:
        """The session (None for an attached token until its stream opened)."""
        return self._session

    @property
    def user_id(self) -> str:
        """The logged-on user's id ('' before it is known)."""
        return self._session.user_id if self._session else ""

    @property
    def home_server(self) -> ServerEndpoint:
        """Where the session lives; every call goes there."""
        return self._home

    @property
    def token(self) -> str:
        """The current session token (it changes on refresh and re-login)."""
        return self._token

    @property
    def session_id(self) -> str:
        """The current session's id."""
        return self._session.session_id if self._session else ""

    @property
    def home_address(self) -> str:
        """``host:port`` of the home server."""
        return self._home.address

    @property
    def resume_token(self) -> str:
        """Resume token of the newest event received on the stream."""
        return self._stream.resume_token

    def channel(self, address: str) -> grpc.aio.Channel:
        """The channel to ``address`` (one per address, made by the channel factory)."""
        if self._closed:
            raise ProcallClientError(grpc.StatusCode.CANCELLED, "the client is closed")
        channel = self._channels.get(address)
        if channel is None:
            channel = self._factory(address, self.options.channel_options())
            self._channels[address] = channel
        return channel

    # -- StreamHost -----------------------------------------------------------------------

    def welcomed(self, session: session_pb2.Session) -> None:
        """The stream opened: take the session as the home server describes it."""
        home = session.home_server
        self._home = ServerEndpoint(home.server_id, home.address or self._home.address)
        lifetime = _lifetime(session)
        if lifetime and not self._lifetime:  # an attached token: its age from the Welcome
            left = session.expire_time.ToNanoseconds() / 1e9 - time.time()
            self._lifetime = lifetime
            self._token_since = time.monotonic() - min(lifetime, max(0.0, lifetime - left))
            self._token_changed.set()
        self._session = SessionInfo(
            session_id=session.session_id,
            user_id=session.user_id,
            username=session.username,
            home_server=self._home,
            expire_time=datetime_from_proto(session.expire_time),
        )

    def follow(self, server: ServerEndpoint, token: str = "") -> None:
        """The session's home is now ``server``; ``token`` (when given) names it."""
        self._home = server
        if token:
            self._token = token
        if self._session is not None:
            self._session = SessionInfo(
                self._session.session_id,
                self._session.user_id,
                self._session.username,
                server,
                self._session.expire_time,
            )

    def token_expired(self) -> bool:
        """Whether the token's lifetime has passed (measured on this machine's clock)."""
        return bool(self._lifetime) and time.monotonic() - self._token_since >= self._lifetime

    async def relogin(self, failed_token: str) -> bool:
        """Log in again after ``failed_token`` was refused; False without a password."""
        async with self._auth_lock:
            if self._token != failed_token:
                return True  # another task already did
            if self._password is None or not self.options.relogin:
                return False
            try:
                reply = await self._login_at(self._home.address, self._username, self._password)
            except ProcallClientError as error:
                if not error.transient or self._entry == self._home.address:
                    raise
                reply = await self._login_at(self._entry, self._username, self._password)
            self._logged_in(reply)
            return True

    async def resync(self) -> tuple[Presence, ...]:
        """The current presence of every contact (what ``Resynced`` carries)."""
        return tuple(await self.contacts())

    # -- token refresh --------------------------------------------------------------------

    def _start_refresher(self) -> None:
        if self._refresher is None and not self._closed:
            self._refresher = asyncio.create_task(self._refresh_loop(), name="procall-refresh")

    async def _refresh_loop(self) -> None:
        retry = 0.0
        while True:
            self._token_changed.clear()
            if self._lifetime:
                due = self._lifetime * self.options.refresh_at
                wait = retry or max(0.5, due - (time.monotonic() - self._token_since))
            else:
                wait = 3600.0  # lifetime unknown until the stream's Welcome
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._token_changed.wait(), wait)
                retry = 0.0
                continue  # a new token (login): plan again
            retry = await self._refresh_once()

    async def _refresh_once(self) -> float:
        """Refresh the token; returns 0, or seconds until a retry after a failure."""
        token = self._token
        try:
            reply = await session_grpc.SessionServiceStub(
                self.channel(self._home.address)
            ).RefreshToken(
                session_pb.RefreshTokenRequest(),
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=self.options.call_timeout,
            )
        except grpc.aio.AioRpcError as rpc_error:
            error = error_from_rpc(rpc_error)
            if error.code == grpc.StatusCode.UNAUTHENTICATED:
                with contextlib.suppress(ProcallClientError):
                    if await self.relogin(token):
                        return 0.0
                return 3600.0  # nothing to refresh: the next call or the stream reports it
            remaining = self._lifetime - (time.monotonic() - self._token_since)
            return min(5.0, max(0.5, remaining / 4))
        if self._token == token:
            self._token = reply.session_token
            self._token_since = time.monotonic()
        return 0.0

    # -- unary calls ----------------------------------------------------------------------

    async def _invoke(self, invoke: _Invoke[R], *, relogin: bool = True) -> R:
        """Run a call on the home server, following a move and logging in again once."""
        for attempt in range(3):
            token, address = self._token, self._home.address
            metadata = (("authorization", f"Bearer {token}"),)
            try:
                return await invoke(self.channel(address), metadata, self.options.call_timeout)
            except grpc.aio.AioRpcError as rpc_error:
                error = error_from_rpc(rpc_error)
            if attempt == 2:
                raise error
            if error.reason == "WRONG_HOME_SERVER":
                home = error.metadata.get("home_server_address", "")
                if not home or home == address:
                    raise error
                self.follow(ServerEndpoint(error.metadata.get("home_server_id", ""), home))
            elif error.code == grpc.StatusCode.UNAUTHENTICATED and relogin:
                if not await self.relogin(token):
                    raise error
            else:
                raise error
        raise AssertionError("unreachable")  # pragma: no cover

    async def set_presence(
        self,
        availability: Availability | None = None,
        *,
        note: str | None = None,
        user_id: str = "",
    ) -> Presence:
        """Change availability and/or note (only what is given); returns the new presence.

        ``user_id`` sets another user's presence, which needs that user's
        presence delegation (else PERMISSION_DENIED).
        """
        if availability is None and note is None:
            raise ValueError("give an availability, a note, or both")
        paths = [name for name, value in (("availability", availability), ("note", note))
                 if value is not None]  # fmt: skip
        request = presence_pb.SetPresenceRequest(
            user_id=user_id,
            availability=(
                availability.to_proto()
                if availability
                else presence_pb2.Availability.AVAILABILITY_UNSPECIFIED
            ),
            note=note or "",
            update_mask=field_mask_pb2.FieldMask(paths=paths),
        )
        reply = await self._invoke(
            lambda ch, md, t: presence_grpc.PresenceServiceStub(ch).SetPresence(
                request, metadata=md, timeout=t
            )
        )
        return Presence.from_proto(reply.presence)

    async def get_presence(self, user_ids: str | Sequence[str]) -> list[Presence]:
        """The presence of one or more users (up to 1000), in the order asked."""
        ids = [user_ids] if isinstance(user_ids, str) else list(user_ids)
        if not ids:
            return []
        request = presence_pb.BatchGetPresenceRequest(user_ids=ids)
        reply = await self._invoke(
            lambda ch, md, t: presence_grpc.PresenceServiceStub(ch).BatchGetPresence(
                request, metadata=md, timeout=t
            )
        )
        return [Presence.from_proto(p) for p in reply.presences]

    async def contacts(self) -> list[Presence]:
        """Every contact with its current presence (all pages)."""
        found: list[presence_pb2.Presence] = []
        token = ""
        while True:
            reply = await self._invoke(self._list_contacts_page(token))
            found.extend(reply.contacts)
            token = reply.next_page_token
            if not token:
                return [Presence.from_proto(p) for p in found]

    @staticmethod
    def _list_contacts_page(page_token: str) -> _Invoke[presence_pb.ListContactsResponse]:
        request = presence_pb.ListContactsRequest(page_size=1000, page_token=page_token)

        def invoke(
            channel: grpc.aio.Channel, metadata: Metadata, timeout: float
        ) -> Awaitable[presence_pb.ListContactsResponse]:
            stub = presence_grpc.PresenceServiceStub(channel)
            return stub.ListContacts(request, metadata=metadata, timeout=timeout)

        return invoke

    async def add_contacts(
        self, user_ids: Sequence[str] = (), *, usernames: Sequence[str] = ()
    ) -> list[Presence]:
        """Watch these users (by id, and by username); returns their current presence.

        A user that does not exist fails the whole call with NOT_FOUND naming it.
        """
        request = presence_pb.AddContactsRequest(user_ids=list(user_ids), usernames=usernames)
        reply = await self._invoke(
            lambda ch, md, t: presence_grpc.PresenceServiceStub(ch).AddContacts(
                request, metadata=md, timeout=t
            )
        )
        return [Presence.from_proto(p) for p in reply.contacts]

    async def remove_contacts(self, user_ids: Sequence[str]) -> None:
        """Stop watching these users."""
        request = presence_pb.RemoveContactsRequest(user_ids=list(user_ids))
        await self._invoke(
            lambda ch, md, t: presence_grpc.PresenceServiceStub(ch).RemoveContacts(
                request, metadata=md, timeout=t
            )
        )

    # -- events and the end ---------------------------------------------------------------

    async def events(self) -> AsyncIterator[ClientEvent]:
        """The session's events as typed dataclasses (see ``procall.client._events``).

        Opens the stream if ``login(connect=False)`` left it closed. One consumer
        at a time. Ends after ``SessionClosed`` or ``close()``; raises
        ``ProcallClientError`` when the session cannot go on (refused token and no
        password, a permanent error).
        """
        if self._closed:
            return
        await self._stream.start()
        async for event in self._stream.events():
            yield event

    async def logout(self) -> None:
        """End the session on the server (its license returns to the pool), then close."""
        if self._closed:
            return
        self._stream.logging_out = True
        try:
            if self._token:
                await self._invoke(
                    lambda ch, md, t: session_grpc.SessionServiceStub(ch).Logout(
                        session_pb.LogoutRequest(), metadata=md, timeout=t
                    ),
                    relogin=False,
                )
        except ProcallClientError as error:
            if error.code != grpc.StatusCode.UNAUTHENTICATED:
                raise  # a refused token: the session has ended already
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop the stream and the refresh, close the channels; the session is kept
        on the server until its resume window passes (use ``logout`` to end it)."""
        if self._closed:
            return
        self._closed = True
        refresher, self._refresher = self._refresher, None
        if refresher is not None:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
        await self._stream.stop()
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()

    async def __aenter__(self) -> ProcallClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(ProcallClientError):
            await self.logout()
        await self.close()
