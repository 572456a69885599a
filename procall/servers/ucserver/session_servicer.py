"""SessionService: Login, the Connect event stream, RefreshToken, Logout (thin).

The Connect stream is the hot path of every delivery, so its events are encoded
once and not per recipient: an event delivered to many sessions is serialised
once (``_WireCache``) and each stream only appends its own sequence number, time
and resume token as raw protobuf fields (a parser merges fields of concatenated
encodings; the later value of a scalar wins). A client that opened the stream
with ``accept_event_batches`` gets everything pending in one message
(``ConnectResponse.events``), so a stream that falls behind catches up in few,
larger messages. ``add_session_service`` registers the service with a response
serializer that passes such pre-encoded messages through.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from opentelemetry.trace import Span, SpanKind

from procall.api.common.v1 import client_feature_pb2
from procall.api.session.v1 import session_pb2
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.errors import InvalidArgument, Unavailable
from procall.servers.codecs.time import timestamp
from procall.servers.runtime.auth import current_claims
from procall.servers.runtime.limits import source_of
from procall.session.events import ReplayGap, SequencedEvent
from procall.session.manager import Attachment, SessionManager
from procall.session.resume import ResumeTokens, resume_expired
from procall.session.tokens import SessionClaims
from procall.telemetry.tracing import start_event_span, tracing_enabled

__all__ = [
    "Features",
    "MAX_EVENTS_PER_MESSAGE",
    "SessionServicer",
    "add_session_service",
    "session_claims",
]

Context = grpc.aio.ServicerContext[object, object]

#: Events sent in one ConnectResponse to a client that accepts batches.
MAX_EVENTS_PER_MESSAGE = 256
#: Encoded payloads kept for the other recipients of the same event.
_WIRE_CACHE_SIZE = 8192
# protobuf tags: Event.sequence (1, varint), Event.event_time (2, bytes),
# Event.resume_token (3, bytes); Timestamp.seconds (1), .nanos (2);
# ConnectResponse.event (1, bytes), ConnectResponse.events (2, bytes)
_SEQUENCE, _TIME, _TOKEN = b"\x08", b"\x12", b"\x1a"
_SECONDS, _NANOS = b"\x08", b"\x10"
_ONE_EVENT, _MANY_EVENTS = b"\x0a", b"\x12"


def _varint(value: int) -> bytes:
    if value < _SMALL:
        return _SMALL_VARINTS[value]
    return _encode_varint(value)


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


#: Encoded varints of the values below _SMALL (sequence numbers, lengths), computed once.
_SMALL = 1 << 14
_SMALL_VARINTS = [_encode_varint(n) for n in range(_SMALL)]


class _WireCache:
    """The encoded payload of each recently delivered event, shared by its recipients.

    Entries hold the payload object itself, so an id is never reused while cached;
    the oldest entries go first.
    """

    def __init__(self, size: int = _WIRE_CACHE_SIZE) -> None:
        self._size = size
        self._entries: dict[int, tuple[session_pb2.Event, bytes]] = {}

    def encoded(self, payload: session_pb2.Event) -> bytes:
        key = id(payload)
        hit = self._entries.get(key)
        if hit is not None and hit[0] is payload:
            return hit[1]
        if payload.sequence or payload.resume_token or payload.HasField("event_time"):
            clean = session_pb2.Event()
            clean.CopyFrom(payload)
            for name in ("sequence", "event_time", "resume_token"):
                clean.ClearField(name)
            data = clean.SerializeToString()
        else:
            data = payload.SerializeToString()
        if len(self._entries) >= self._size:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (payload, data)
        return data


def _serialize_connect_response(response: session_pb.ConnectResponse | bytes) -> bytes:
    return response if isinstance(response, bytes) else response.SerializeToString()


def add_session_service(servicer: session_grpc.SessionServiceServicer, server: Any) -> None:
    """Register the SessionService like the generated ``add_..._to_server``, except that
    Connect may yield pre-encoded ``ConnectResponse`` bytes."""
    service = session_pb.DESCRIPTOR.services_by_name["SessionService"]
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in service.methods:
        request = getattr(session_pb, method.input_type.name)
        response = getattr(session_pb, method.output_type.name)
        behaviour = getattr(servicer, method.name)
        serializer = (
            _serialize_connect_response if method.name == "Connect" else response.SerializeToString
        )
        make = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = make(
            behaviour, request_deserializer=request.FromString, response_serializer=serializer
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    server.add_registered_method_handlers(service.full_name, handlers)


async def session_claims(manager: SessionManager[session_pb2.Event]) -> SessionClaims:
    """The verified claims of the call (``current_claims``), and on the session's home
    server the session is live from now on (``SessionManager.touch``): every call at home
    counts, not only ``Connect``."""
    claims = current_claims()
    await manager.touch(claims)
    return claims


#: The features (wire numbers) a user's clients may use.
Features = Callable[[str], Awaitable[list[int]]]


def _delivery_spans(
    claims: SessionClaims, events: list[SequencedEvent[session_pb2.Event]]
) -> list[Span]:
    """A span for each traced event written to a session's stream: it continues the
    event's trace and links to the Connect stream's span; it ends once the write did."""
    spans = []
    for event in events:
        span = start_event_span(
            "session deliver",
            event.payload.trace_context,
            SpanKind.PRODUCER,
            claims.home_server_id,
            attributes={
                "procall.session_id": claims.session_id,
                "procall.user_id": claims.user_id,
                "procall.event_sequence": event.sequence,
            },
        )
        if span is not None:
            spans.append(span)
    return spans


class SessionServicer(session_grpc.SessionServiceServicer):
    """Decodes requests, calls the SessionManager, encodes replies and events."""

    def __init__(
        self,
        manager: SessionManager[session_pb2.Event],
        clock: Callable[[], float],
        features: Features | None = None,
    ) -> None:
        """``features`` says what a user's clients may use (told in the ``Welcome``)."""
        self._manager = manager
        self._clock = clock
        self._features = features
        self._wire = _WireCache()
        self._last_time: tuple[float, bytes] = (-1.0, b"")

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
            request.username,
            request.password,
            request.client_name[:200],
            source_of(context.peer() or ""),
        )
        session = self._session_message(result.claims, result.home_address)
        session.client_name = request.client_name[:200]
        return session_pb.LoginResponse(
            session_token=result.token, session=session, is_home_server=result.is_home_server
        )

    async def RefreshToken(
        self, request: session_pb.RefreshTokenRequest, context: Context
    ) -> session_pb.RefreshTokenResponse:
        claims = await session_claims(self._manager)
        token, renewed = self._manager.refresh(claims)
        return session_pb.RefreshTokenResponse(
            session_token=token, expire_time=timestamp(renewed.expires_at)
        )

    async def Logout(
        self, request: session_pb.LogoutRequest, context: Context
    ) -> session_pb.LogoutResponse:
        # on any server: the home server ends the session when it learns the revocation
        await self._manager.logout(current_claims())
        return session_pb.LogoutResponse()

    async def Connect(  # type: ignore[override]  # writes (pre-encoded) responses itself
        self, request_iterator: AsyncIterator[session_pb.ConnectRequest], context: Context
    ) -> None:
        # The stream writes with ``context.write`` instead of yielding: the interceptors
        # around it (policy enforcer, error mapping, limits) then wrap the call once, not
        # every message (three generator hops per event were 9-23 % of a busy UCServer).
        write = context.write
        claims = current_claims()
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("open"):
            raise InvalidArgument.field("open", "the first message of a stream must be `open`")
        batches = first.open.accept_event_batches
        attachment = await self._manager.attach(
            claims,
            first.open.resume_token,
            "",
            reopen_if_resume_lost=first.open.reopen_if_resume_lost,
        )
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
                    resume_lost=bool(attachment.resume_lost),
                    resume_lost_reason=attachment.resume_lost,
                    allowed_features=[
                        client_feature_pb2.ClientFeature.ValueType(feature)
                        for feature in (
                            await self._features(claims.user_id) if self._features else ()
                        )
                    ],
                ),
            )
            welcome.welcome.session.client_name = session.client_name
            await write(session_pb.ConnectResponse(event=welcome))
            limit = MAX_EVENTS_PER_MESSAGE if batches else 1
            tokens = self._manager.resume_tokens(claims.session_id)
            # Attachment.follow inlined: this loop runs once per event written
            log, position = session.log, attachment.start_sequence
            try:
                traced = tracing_enabled()
                while True:
                    pending = log.after(position, limit)
                    if not pending:
                        if log.closed:
                            break
                        await log.changed(position)
                        continue
                    if attachment.superseded:
                        return  # a newer stream of the same session took over
                    position = pending[-1].sequence
                    if not traced:
                        await write(self._encode(tokens, pending, batches))
                        continue
                    spans = _delivery_spans(claims, pending)
                    await write(self._encode(tokens, pending, batches))
                    for span in spans:
                        span.end()
            except ReplayGap:
                raise resume_expired("the client fell too far behind") from None
            if session.moved_to is not None:  # handed over: continue at the new home
                moved = session.moved_to
                redirect = session_pb.ConnectResponse(
                    event=session_pb2.Event(
                        event_time=timestamp(self._clock()),
                        redirect=session_pb2.Redirect(
                            server=session_pb2.ServerEndpoint(
                                server_id=moved.server_id, address=moved.address
                            ),
                            reason="user moved",
                            session_token=moved.token,
                        ),
                    )
                )
                await write(redirect)
                return
            if self._manager.holds(session):
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
            await write(session_pb.ConnectResponse(event=closed))
        finally:
            acks.cancel()
            # gather, not a suppressed await: a cancellation of this handler must not be lost
            await asyncio.gather(acks, return_exceptions=True)
            self._manager.detach(attachment)

    def _encode(
        self, tokens: ResumeTokens, events: list[SequencedEvent[session_pb2.Event]], batch: bool
    ) -> bytes:
        """The encoded ConnectResponse carrying ``events`` (one, unless ``batch``)."""
        tag = _MANY_EVENTS if batch else _ONE_EVENT
        parts: list[bytes] = []
        for event in events:
            token = tokens.encode(event.sequence)
            body = b"".join(
                (
                    self._wire.encoded(event.payload),
                    _SEQUENCE,
                    _varint(event.sequence),
                    self._time_field(event.time),
                    _TOKEN,
                    _varint(len(token)),
                    token,
                )
            )
            parts += (tag, _varint(len(body)), body)
        return b"".join(parts)

    def _time_field(self, at: float) -> bytes:
        """The encoded ``event_time`` field; the events of one delivery share their time,
        so the last one encoded is kept for the other recipients."""
        if at == self._last_time[0]:
            return self._last_time[1]
        seconds, nanos = divmod(int(at * 1e9), 1_000_000_000)
        stamp = _SECONDS + _varint(seconds)
        if nanos:
            stamp += _NANOS + _varint(nanos)
        field = _TIME + _varint(len(stamp)) + stamp
        self._last_time = (at, field)
        return field

    async def _read_acks(
        self,
        requests: AsyncIterator[session_pb.ConnectRequest],
        attachment: Attachment[session_pb2.Event],
    ) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, InvalidArgument):
            async for request in requests:
                if request.HasField("ack"):
                    attachment.ack(request.ack.sequence)
