"""The client's ``Connect`` stream: reconnect, resume, redirects, acks.

One background task keeps the stream open. The stream is opened with
``accept_event_batches``, so a server with several events pending sends them in
one message (``ConnectResponse.events``); they are handed on one by one, exactly
as if they had come in separate messages. Events go into a bounded queue that
``events()`` drains; a full queue pauses reading (gRPC flow control then holds
the server back). What happens on trouble:

- the stream drops (network, server restart, keepalive timeout): ``Disconnected``,
  then a reconnect after an exponential backoff with jitter, resuming after the
  last event received (events still queued are delivered, none twice). A reconnect
  waits for the connection (gRPC wait-for-ready): while the server is down, grpc's
  own jittered attempts (capped at ``backoff_max``) find it back and the stream opens
  on the first that succeeds, instead of failing at once on a channel between two
  attempts and waiting out another backoff of ours;
- ``Redirect`` event or FAILED_PRECONDITION ``WRONG_HOME_SERVER``: ``Redirected``
  and an immediate reconnect to the named server;
- a resume the server cannot honour (it restarted, the session lapsed, the missed
  events are gone): the stream is opened with ``reopen_if_resume_lost``, so the server
  opens a fresh stream at once and its ``Welcome`` says ``resume_lost``; the
  contacts' presence is then fetched and delivered as ``Resynced``; fetching after
  the new stream opened means no change falls between the two. A server that does
  not know the flag answers FAILED_PRECONDITION ``RESUME_EXPIRED`` instead: the same,
  after one more round trip with a fresh stream without resume token;
- RESOURCE_EXHAUSTED (a restarted server's queue of openings is full) and other
  transient errors: a reconnect after the server's ``RetryInfo`` delay, or the backoff.
  The first stream (``start()``) fails fast on any error but this refusal with a
  ``RetryInfo``, which it waits out a few times too;
- UNAUTHENTICATED: the host logs in again when it can (a new session: fresh
  stream and ``Resynced``), otherwise the error ends ``events()``;
- ``SessionClosed``: delivered, and ``events()`` ends — unless the token had
  expired and the host could log in again.

Acks cover events the application has processed (taken from ``events()`` and
come back for the next), sent every ``ack_interval`` or after ``ack_every``
events. Sequence numbers restart with a new session log, so each fresh stream
opens a new *epoch* and only events of the current epoch are acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import grpc

from procall.api.session.v1 import session_pb2
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.client._errors import ProcallClientError, error_from_rpc
from procall.client._events import (
    ClientEvent,
    Connected,
    Disconnected,
    Redirected,
    Resynced,
    SessionClosed,
    event_from_proto,
)
from procall.client._models import Presence, ServerEndpoint
from procall.client._options import Backoff, ClientOptions

__all__ = ["EventStream", "StreamHost"]

_log = logging.getLogger(__name__)
_MAX_REDIRECTS = 5
#: Times the first stream waits as told when a server refuses it for now (RESOURCE_EXHAUSTED
#: with a RetryInfo: its queue of session openings is full) before ``start()`` gives up.
_FIRST_STREAM_WAITS = 5


class StreamHost(Protocol):
    """What the stream needs from its client."""

    @property
    def token(self) -> str:
        """The current session token."""
        ...

    @property
    def session_id(self) -> str:
        """The current session's id ('' before the first Welcome of an attached token)."""
        ...

    @property
    def home_address(self) -> str:
        """Where the stream must be opened."""
        ...

    def channel(self, address: str) -> grpc.aio.Channel:
        """The (cached) channel to a server."""
        ...

    def welcomed(self, session: session_pb2.Session) -> None:
        """A stream opened for ``session``."""
        ...

    def follow(self, server: ServerEndpoint, token: str = "") -> None:
        """The session's home moved to ``server``."""
        ...

    def token_expired(self) -> bool:
        """Whether the session token has run out."""
        ...

    async def relogin(self, failed_token: str) -> bool:
        """Log in again after ``failed_token`` was refused; False when it cannot."""
        ...

    async def resync(self) -> tuple[Presence, ...]:
        """The current presence of every contact."""
        ...


@dataclass(frozen=True)
class _Item:
    epoch: int
    event: ClientEvent


@dataclass(frozen=True)
class _Failure:
    error: ProcallClientError


class _End:
    pass


_END = _End()
_Call = grpc.aio.StreamStreamCall[session_pb.ConnectRequest, session_pb.ConnectResponse]


class _Reconnect(Exception):
    """The stream must be reopened: at once, or after ``delay`` seconds with a Disconnected."""

    def __init__(
        self, reason: str, delay: float | None = None, error: ProcallClientError | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay
        self.error = error


def _events_of(response: session_pb.ConnectResponse) -> list[session_pb2.Event]:
    """The events of one stream message: ``event``, or several in ``events`` (the stream
    is opened with ``accept_event_batches``)."""
    if response.HasField("event"):
        return [response.event, *response.events]
    return list(response.events)


class EventStream:
    """Keeps one session's Connect stream open and feeds ``events()`` (see module doc)."""

    def __init__(self, host: StreamHost, options: ClientOptions) -> None:
        self._host = host
        self._options = options
        # unbounded, so that end markers always fit; _put() bounds the events
        self._queue: asyncio.Queue[_Item | _Failure | _End] = asyncio.Queue()
        self._space = asyncio.Event()
        self._backoff = Backoff(
            options.backoff_initial, options.backoff_max, options.backoff_jitter
        )
        self._resume_token = ""
        self._token_session = ""  # the session the resume token belongs to
        self._resync_reason = ""  # set when events were lost: deliver Resynced after Welcome
        self._epoch = 0
        self._processed = (0, 0)  # (epoch, sequence) of the newest processed event
        self._unacked = 0
        self._ack_now = asyncio.Event()
        self._acks_due = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self._redirects = 0
        self._first_waits = 0
        self._ended = False
        #: Set before a deliberate logout: the resulting SessionClosed ends the stream.
        self.logging_out = False

    @property
    def running(self) -> bool:
        """Whether the background task runs."""
        return self._task is not None and not self._task.done()

    @property
    def resume_token(self) -> str:
        """Resume token of the newest event received (what a reconnect resumes after)."""
        return self._resume_token

    async def start(self) -> None:
        """Open the stream; returns after the first Welcome, raises if the first try fails."""
        if self._task is not None:
            return
        self._first = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(), name="procall-client-stream")
        try:
            await asyncio.shield(self._first)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop the stream; a running ``events()`` ends after the events already queued."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._finish()

    def _finish(self) -> None:
        if self._ended:
            return
        self._ended = True
        self._queue.put_nowait(_END)

    async def events(self) -> AsyncIterator[ClientEvent]:
        """The events, in order, until the session ends, ``stop()`` or a fatal error.

        Meant for one consumer at a time (two would split the events between them);
        leaving the loop and calling again continues where the first loop stopped.
        """
        while True:
            if self._ended and self._queue.empty():
                return
            item = await self._queue.get()
            self._space.set()
            if isinstance(item, _End):
                self._queue.put_nowait(item)  # later calls end at once too
                return
            if isinstance(item, _Failure):
                self._queue.put_nowait(_END)
                raise item.error
            yield item.event
            self._processed_one(item)

    def _processed_one(self, item: _Item) -> None:
        if item.event.sequence == 0:
            return
        self._processed = (item.epoch, item.event.sequence)
        self._unacked += 1
        if self._unacked >= self._options.ack_every:
            self._ack_now.set()
        elif self._unacked == 1:
            self._acks_due.set()  # the ack task waits for the first unacked event

    # -- the background task --------------------------------------------------------------

    async def _put(self, event: ClientEvent) -> None:
        while self._queue.qsize() >= self._options.queue_size:  # the application lags
            self._space.clear()
            await self._space.wait()
        self._queue.put_nowait(_Item(self._epoch, event))

    async def _run(self) -> None:
        try:
            while True:
                try:
                    await self._attempt()
                    return  # the session ended
                except _Reconnect as again:
                    delay = again.delay
                    if delay is None:  # a redirect or a fresh start: go at once ...
                        self._redirects += 1
                        if self._redirects <= _MAX_REDIRECTS:
                            continue
                        delay = self._delay()  # ... unless servers send us in circles
                    if self._first is not None and not self._first.done():
                        if self._told_to_wait(again):
                            _log.debug("stream refused for now (%s); again in %.2f s",
                                       again.reason, delay)  # fmt: skip
                            await asyncio.sleep(delay)
                            continue
                        raise again.error or ProcallClientError(
                            grpc.StatusCode.UNAVAILABLE, again.reason
                        ) from None
                    _log.debug("stream lost (%s); reconnecting in %.2f s", again.reason, delay)
                    await self._put(Disconnected(again.reason, round(delay, 3)))
                    await asyncio.sleep(delay)
        except ProcallClientError as error:
            await self._fail(error)
        except Exception as exc:  # a bug must end events() loudly, not hang it
            _log.exception("the event stream failed")
            await self._fail(
                ProcallClientError(grpc.StatusCode.UNKNOWN, f"the event stream failed: {exc!r}")
            )
        finally:
            self._first_failed(ProcallClientError(grpc.StatusCode.CANCELLED, "the client closed"))
            self._finish()

    def _told_to_wait(self, again: _Reconnect) -> bool:
        """Whether the first stream tries again instead of failing ``start()``: the server
        refused it for now and said when to come back (RESOURCE_EXHAUSTED with a RetryInfo,
        as a restarted server does while its queue of session openings is full), at most
        ``_FIRST_STREAM_WAITS`` times. Any other failure of the first stream fails fast."""
        error = again.error
        if error is None or error.code != grpc.StatusCode.RESOURCE_EXHAUSTED:
            return False
        if error.retry_after is None:
            return False
        self._first_waits += 1
        return self._first_waits <= _FIRST_STREAM_WAITS

    def _first_failed(self, error: ProcallClientError) -> bool:
        """Fail ``start()`` if it still waits; False when the stream had opened."""
        if self._first is None or self._first.done():
            return False
        self._first.set_exception(error)
        self._first.exception()  # retrieved: ``start()`` may have been cancelled meanwhile
        return True

    async def _fail(self, error: ProcallClientError) -> None:
        if not self._first_failed(error):
            self._queue.put_nowait(_Failure(error))

    async def _attempt(self) -> None:
        """One stream from open to its end; raises ``_Reconnect`` or a fatal error."""
        host = self._host
        if self._token_session and host.session_id and host.session_id != self._token_session:
            self._lost("logged in again (a new session)")
        address = host.home_address
        token = host.token
        stub = session_grpc.SessionServiceStub(host.channel(address))
        # the first stream fails fast (start() reports it); a reconnect waits for the server
        reconnecting = self._first is not None and self._first.done()
        call: _Call = stub.Connect(
            metadata=(("authorization", f"Bearer {token}"),), wait_for_ready=reconnecting
        )
        acks: asyncio.Task[None] | None = None
        try:
            opening = session_pb.OpenStream(
                resume_token=self._resume_token,
                accept_event_batches=True,
                reopen_if_resume_lost=True,
            )
            with contextlib.suppress(asyncio.InvalidStateError):  # refused: read() says why
                await call.write(session_pb.ConnectRequest(open=opening))
            first = await call.read()
            if not isinstance(first, session_pb.ConnectResponse) or not first.event.HasField(
                "welcome"
            ):
                raise _Reconnect("the server ended the stream before its welcome", self._delay())
            await self._welcome(first.event)
            acks = asyncio.create_task(self._send_acks(call, self._epoch))
            while True:
                response = await call.read()
                if not isinstance(response, session_pb.ConnectResponse):
                    raise _Reconnect("the server ended the stream", self._delay())
                for event in _events_of(response):
                    typed = event_from_proto(event)
                    if isinstance(typed, SessionClosed):
                        await self._closed(typed, token)
                        return
                    await self._put(typed)
                    if event.resume_token:
                        self._resume_token = event.resume_token
                    if isinstance(typed, Redirected):
                        # a moved session: the old token names the old home
                        host.follow(typed.server, event.redirect.session_token)
                        raise _Reconnect(f"redirected to {typed.server.address}")
        except grpc.aio.AioRpcError as rpc_error:
            await self._failed(error_from_rpc(rpc_error), address, token)
        finally:
            if acks is not None:
                acks.cancel()
            call.cancel()

    async def _welcome(self, event: session_pb2.Event) -> None:
        welcome = event.welcome
        if welcome.resume_lost:  # a fresh stream instead of RESUME_EXPIRED: resync now
            self._lost(welcome.resume_lost_reason or "the stream could not be resumed")
        if not welcome.resumed:
            self._epoch += 1
            self._unacked = 0
        self._token_session = welcome.session.session_id
        if event.resume_token:
            self._resume_token = event.resume_token
        self._host.welcomed(welcome.session)
        self._backoff.reset()
        self._redirects = 0
        if self._first is not None and not self._first.done():
            self._first.set_result(None)
        home = welcome.session.home_server
        await self._put(
            Connected(
                ServerEndpoint(home.server_id, home.address),
                welcome.session.session_id,
                welcome.resumed,
                raw=event,
            )
        )
        if self._resync_reason:
            contacts = await self._host.resync()
            await self._put(Resynced(self._resync_reason, contacts))
            self._resync_reason = ""

    def _lost(self, reason: str) -> None:
        """Events were lost: resume no more; resync after the next Welcome."""
        self._resume_token = ""
        self._token_session = ""
        self._resync_reason = self._resync_reason or reason

    def _delay(self, at_least: float = 0.0) -> float:
        return self._backoff.next_delay(at_least)

    async def _closed(self, event: SessionClosed, token: str) -> None:
        if not self.logging_out:
            if self._host.session_id != self._token_session:
                raise _Reconnect("the session was replaced by a new login")
            if self._host.token_expired() and await self._relogin(token):
                self._lost("the session expired; logged in again")
                raise _Reconnect("the session expired")
        await self._put(event)

    async def _relogin(self, token: str) -> bool:
        try:
            return await self._host.relogin(token)
        except ProcallClientError as error:
            if error.transient:
                raise _Reconnect(f"cannot log in again: {error}", self._delay(), error) from None
            raise

    async def _failed(self, error: ProcallClientError, address: str, token: str) -> None:
        """Decide what a failed stream means: raises ``_Reconnect`` or the error, or
        returns (the stream is over) when we are logging out."""
        if self.logging_out:
            return  # the end of a session we ended ourselves
        if error.reason == "WRONG_HOME_SERVER":
            home = error.metadata.get("home_server_address", "")
            if home and home != address:
                server = ServerEndpoint(error.metadata.get("home_server_id", ""), home)
                self._host.follow(server)
                await self._put(Redirected(server, error.message))
                raise _Reconnect(f"redirected to {home}")
            raise _Reconnect(str(error), self._delay(error.retry_after or 0.0), error)
        if error.reason == "RESUME_EXPIRED":
            if self._resume_token:
                self._lost(error.message)
                raise _Reconnect("the stream cannot be resumed")
            # even a fresh stream is refused: only a new session helps
            if await self._relogin(token):
                self._lost(error.message)
                raise _Reconnect("the session cannot be continued; logged in again")
            raise error
        if error.code == grpc.StatusCode.UNAUTHENTICATED:
            if await self._relogin(token):
                raise _Reconnect("the session token was refused; logged in again")
            raise error
        if error.transient:
            raise _Reconnect(str(error), self._delay(error.retry_after or 0.0), error)
        raise error

    async def _send_acks(self, call: _Call, epoch: int) -> None:
        """Ack processed events; with nothing to ack, repeat the last ack now and then as a
        keepalive (the server ends streams that stay silent).

        An idle client sleeps until its first unacked event or the keepalive is due, not
        every ``ack_interval`` (thousands of idle clients in one process, such as a load
        generator's, would spend a good share of a core waking up for nothing)."""
        sent = 0
        loop = asyncio.get_running_loop()
        written = loop.time()
        interval = min(self._options.ack_interval, self._options.stream_keepalive)
        while True:
            processed_epoch, sequence = self._processed
            if processed_epoch == epoch and sequence > sent:  # unacked events: ack soon
                waiting, timeout = self._ack_now, interval
            else:
                self._acks_due.clear()
                keepalive = self._options.stream_keepalive - (loop.time() - written)
                waiting, timeout = self._acks_due, max(0.0, keepalive)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await waiting.wait()
            if waiting is self._acks_due and self._acks_due.is_set():
                continue  # the first unacked event: ack it within the interval
            self._ack_now.clear()
            processed_epoch, sequence = self._processed
            if processed_epoch != epoch or sequence <= sent:
                if loop.time() - written < self._options.stream_keepalive:
                    continue
                sequence = sent  # a keepalive: the same ack again
            written = loop.time()
            try:
                await call.write(session_pb.ConnectRequest(ack=session_pb.Ack(sequence=sequence)))
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                return  # the stream is gone; the reader notices and reconnects
            sent = sequence
            self._unacked = 0
