"""SessionService: Login, the Connect event stream, RefreshToken, Logout (thin)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import grpc
from google.protobuf import timestamp_pb2

from procall.api.session.v1 import session_pb2
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.errors import InvalidArgument, Unauthenticated, Unavailable
from procall.session.events import ReplayGap, SequencedEvent
from procall.session.manager import Attachment, SessionManager
from procall.session.resume import resume_expired
from procall.session.tokens import SessionClaims

__all__ = ["SessionServicer", "claims_from", "timestamp"]

Context = grpc.aio.ServicerContext[object, object]


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    """A protobuf Timestamp of a Unix time."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def claims_from(context: Context, manager: SessionManager[session_pb2.Event]) -> SessionClaims:
    """The verified session claims of the call's ``authorization: Bearer`` metadata."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return manager.signer.verify(value.removeprefix("Bearer ").strip())
    raise Unauthenticated("no session token: send `authorization: Bearer <token>`")


class SessionServicer(session_grpc.SessionServiceServicer):
    """Decodes requests, calls the SessionManager, encodes replies and events."""

    def __init__(
        self, manager: SessionManager[session_pb2.Event], clock: Callable[[], float]
    ) -> None:
        self._manager = manager
        self._clock = clock

    def _session_message(self, claims: SessionClaims, address: str) -> session_pb2.Session:
        return session_pb2.Session(
            session_id=claims.session_id,
            user_id=claims.user_id,
            username=claims.username,
            home_server=session_pb2.ServerEndpoint(
                server_id=claims.home_server_id, address=address
            ),
            create_time=timestamp(claims.issued_at),
            expire_time=timestamp(claims.expires_at),
        )

    async def Login(
        self, request: session_pb.LoginRequest, context: Context
    ) -> session_pb.LoginResponse:
        if not request.username:
            raise InvalidArgument.field("username", "must not be empty")
        result = await self._manager.login(
            request.username, request.password, request.client_name[:200]
        )
        session = self._session_message(result.claims, result.home_address)
        session.client_name = request.client_name[:200]
        return session_pb.LoginResponse(
            session_token=result.token, session=session, is_home_server=result.is_home_server
        )

    async def RefreshToken(
        self, request: session_pb.RefreshTokenRequest, context: Context
    ) -> session_pb.RefreshTokenResponse:
        claims = claims_from(context, self._manager)
        token, renewed = self._manager.signer.refresh(claims)
        live = self._manager.hub.get(claims.session_id)
        if live is not None:
            live.claims = renewed
        return session_pb.RefreshTokenResponse(
            session_token=token, expire_time=timestamp(renewed.expires_at)
        )

    async def Logout(
        self, request: session_pb.LogoutRequest, context: Context
    ) -> session_pb.LogoutResponse:
        claims = claims_from(context, self._manager)
        await self._manager.check_home(claims)
        await self._manager.logout(claims)
        return session_pb.LogoutResponse()

    async def Connect(
        self, request_iterator: AsyncIterator[session_pb.ConnectRequest], context: Context
    ) -> AsyncIterator[session_pb.ConnectResponse]:
        claims = claims_from(context, self._manager)
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("open"):
            raise InvalidArgument.field("open", "the first message of a stream must be `open`")
        attachment = await self._manager.attach(claims, first.open.resume_token, "")
        session = attachment.session
        acks = asyncio.create_task(self._read_acks(request_iterator, attachment))
        try:
            welcome = session_pb2.Event(
                sequence=0,
                event_time=timestamp(self._clock()),
                resume_token=self._manager.resume_token(
                    claims.session_id, attachment.start_sequence
                ),
                welcome=session_pb2.Welcome(
                    session=self._session_message(session.claims, self._manager.own_address()),
                    resumed=attachment.resumed,
                ),
            )
            welcome.welcome.session.client_name = session.client_name
            yield session_pb.ConnectResponse(event=welcome)
            try:
                async for event in session.log.follow(attachment.start_sequence):
                    if session.generation != attachment.generation:
                        return  # a newer stream of the same session took over
                    yield session_pb.ConnectResponse(event=self._stamp(claims, event))
            except ReplayGap:
                raise resume_expired("the client fell too far behind") from None
            if self._manager.hub.get(claims.session_id) is session:
                # the session lives on: this server is shutting down, the client reconnects
                raise Unavailable(
                    "this UCServer is shutting down; reconnect and resume",
                    reason="SERVER_DRAINING",
                    retry_after=1.0,
                )
            closed = session_pb2.Event(
                event_time=timestamp(self._clock()),
                session_closed=session_pb2.SessionClosed(reason="the session ended"),
            )
            yield session_pb.ConnectResponse(event=closed)
        finally:
            acks.cancel()
            # gather, not a suppressed await: a cancellation of this handler must not be lost
            await asyncio.gather(acks, return_exceptions=True)
            self._manager.detach(attachment)

    def _stamp(
        self, claims: SessionClaims, event: SequencedEvent[session_pb2.Event]
    ) -> session_pb2.Event:
        message = session_pb2.Event()
        message.CopyFrom(event.payload)
        message.sequence = event.sequence
        message.event_time.CopyFrom(timestamp(event.time))
        message.resume_token = self._manager.resume_token(claims.session_id, event.sequence)
        return message

    async def _read_acks(
        self,
        requests: AsyncIterator[session_pb.ConnectRequest],
        attachment: Attachment[session_pb2.Event],
    ) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, InvalidArgument):
            async for request in requests:
                if request.HasField("ack"):
                    attachment.session.log.ack(request.ack.sequence)
