"""The sending end of the streams between UCServers.

One ``PeerLink`` per other UCServer keeps a ``PeerService.Exchange`` stream
open, reconnecting with backoff. Deliveries are numbered per link and kept
until acked, so after a reconnect the unacked ones are sent again (the
receiver skips duplicates): per pair of servers, events arrive in order, once.
Whatever is pending when the stream is ready to write goes out in one
``DeliveryBatch`` message when the peer's hello lists the feature (one message
per delivery to older peers), so a burst costs one stream write, not one each.

``PeerLinks`` keeps one link to every other live UCServer. It learns them from
the Lookup: a ``WatchTopology`` stream tells it at once when a server joins or
leaves (with a slow ``ListServers`` poll as a safety net, and as the fallback
while the stream is down), and a hello from a server it does not know yet opens
the link back at once, before the newcomer is even registered, so that a change
published a moment after a server started still reaches that server's watchers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple

import grpc
from opentelemetry.trace import SpanKind

from procall.api.session.v1 import session_pb2
from procall.errors import ProcallError
from procall.mesh.lookup.v1 import lookup_pb2
from procall.mesh.peer.v1 import peer_service_pb2 as peer_pb
from procall.mesh.peer.v1 import peer_service_pb2_grpc as peer_grpc
from procall.servers.peering.servicer import FEATURES
from procall.servers.runtime.channels import MeshChannels
from procall.servers.upstream.lookup import LookupClient
from procall.telemetry.tracing import context_of, start_event_span, tracing_enabled

__all__ = ["PeerLink", "PeerLinks"]

_EXCHANGE = "/procall.mesh.peer.v1.PeerService/Exchange"

_log = logging.getLogger(__name__)

#: Unacked deliveries kept per peer; beyond it the oldest are dropped (and logged).
MAX_BACKLOG = 100_000
#: Deliveries and encoded bytes in one DeliveryBatch (well below the 4 MiB message limit).
MAX_BATCH_DELIVERIES = 1000
MAX_BATCH_BYTES = 1024 * 1024
#: How long a start waits for the first links to say hello (so every peer knows us).
START_LINK_WAIT = 2.0
#: A link opened because of a peer's hello survives topology refreshes that do not
#: list that peer yet for this long (it registers with the Lookup after its mesh starts).
UNLISTED_GRACE = 30.0
_CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 2_000),
    ("grpc.http2.ping_timeout_ms", 2_000),
    ("grpc.keepalive_permit_without_calls", 1),
]

_Call = grpc.aio.StreamStreamCall[peer_pb.ExchangeRequest, peer_pb.ExchangeResponse]


#: Seconds without a delivery after which a link sends a keepalive (receivers end streams
#: that stay silent for ``[limits] stream_idle_seconds``, 300 s by default).
KEEPALIVE_SECONDS = 30.0
_KEEPALIVE = peer_pb.ExchangeRequest(keepalive=peer_pb.PeerKeepalive())


class _Pending(NamedTuple):
    sequence: int
    recipients: Sequence[str]
    event: session_pb2.Event
    except_session: str = ""
    #: The context of this server's span for the delivery (None: not traced).
    trace_context: dict[str, str] | None = None


class PeerLink:
    """The ordered, acknowledged stream of deliveries to one other UCServer."""

    def __init__(
        self,
        own_id: str,
        epoch: int,
        peer_id: str,
        address: str,
        channels: MeshChannels,
        own_address: Callable[[], str] = lambda: "",
    ) -> None:
        self.own_id = own_id
        self.epoch = epoch
        self.peer_id = peer_id
        self.address = address
        self._channels = channels
        self._own_address = own_address
        self._backlog: deque[_Pending] = deque()
        self._next = 1
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._hello = asyncio.Event()
        self.connected = False
        #: Whether the Lookup listed this peer (False while known only from its hello).
        self.listed = False
        self.created = time.monotonic()
        #: Deliveries sent again on a new stream because the last one ended before the
        #: peer acknowledged them, and deliveries dropped from a full backlog (metrics).
        self.resent = 0
        self.dropped = 0
        #: The highest sequence written to any stream so far.
        self._written = 0

    @property
    def unacked(self) -> int:
        """Deliveries sent or queued but not yet acknowledged."""
        return len(self._backlog)

    def send(
        self, recipients: Sequence[str], event: session_pb2.Event, except_session: str = ""
    ) -> None:
        """Queue an event for users homed on the peer (``event`` must not change after),
        for all their sessions but ``except_session``."""
        carrier = None
        if tracing_enabled() and event.trace_context:
            # a zero-length span marks the hand-over; the peer's span continues from it
            span = start_event_span(
                "peer send",
                event.trace_context,
                SpanKind.PRODUCER,
                self.own_id,
                link=False,
                attributes={"procall.peer_id": self.peer_id},
            )
            if span is not None:
                carrier = context_of(span)
                span.end()
        self._backlog.append(
            _Pending(self._next, tuple(recipients), event, except_session, carrier)
        )
        self._next += 1
        if len(self._backlog) > MAX_BACKLOG:
            dropped = self._backlog.popleft()
            self.dropped += 1
            _log.warning(
                "peer %s backlog full: dropped delivery %d", self.peer_id, dropped.sequence
            )
        self._wake.set()

    def start(self) -> None:
        """Start keeping the stream open."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"peer-link-{self.peer_id}")

    async def wait_connected(self) -> None:
        """Return once the peer has answered a hello."""
        await self._hello.wait()

    async def stop(self) -> None:
        """Close the stream for good."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            started = time.monotonic()
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broken stream is routine: reconnect
                _log.info(
                    "peer link to %s broke (%s); reconnecting", self.peer_id, type(exc).__name__
                )
            self.connected = False
            if time.monotonic() - started > 5:
                backoff = 0.1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 3.0)

    async def _session(self) -> None:
        # mutual TLS, or a proof valid only at this peer: nothing a fake peer could replay
        channel = self._channels.channel(self.address, self.peer_id, _CHANNEL_OPTIONS, prove=False)
        async with channel:
            proof = self._channels.proof(self.peer_id, _EXCHANGE)
            call = peer_grpc.PeerServiceStub(channel).Exchange(metadata=proof)
            hello = peer_pb.PeerHello(
                server_id=self.own_id,
                epoch=self.epoch,
                features=FEATURES,
                address=self._own_address(),
            )
            await call.write(peer_pb.ExchangeRequest(hello=hello))
            reply = await call.read()
            if not isinstance(reply, peer_pb.ExchangeResponse) or not reply.HasField("hello"):
                raise ConnectionError("peer did not say hello")
            batches = peer_pb.PEER_FEATURE_DELIVERY_BATCH in reply.hello.features
            self.connected = True
            self._hello.set()
            reader = asyncio.create_task(self._read_acks(call))
            try:
                await self._write(call, reader, batches)
            finally:
                reader.cancel()
                call.cancel()

    async def _write(self, call: _Call, reader: asyncio.Task[None], batches: bool) -> None:
        sent_upto = 0  # everything unacked goes again on a new stream
        # the unacked ones an earlier stream carried
        self.resent += min(len(self._backlog), self._first_after(self._written))
        while True:
            # the backlog is ordered: skip what this stream already carried
            position = self._first_after(sent_upto)
            while position < len(self._backlog):
                request, sent_upto = self._next_message(position, batches)
                await call.write(request)
                self._written = max(self._written, sent_upto)
                position = self._first_after(sent_upto)
            if reader.done():
                reader.result()
                raise ConnectionError("peer closed the stream")
            self._wake.clear()
            if self._first_after(sent_upto) >= len(self._backlog):
                wake = asyncio.create_task(self._wake.wait())
                done, _ = await asyncio.wait(
                    {wake, reader}, timeout=KEEPALIVE_SECONDS, return_when=asyncio.FIRST_COMPLETED
                )
                wake.cancel()
                if not done:  # nothing to send for a while: the receiver ends silent streams
                    await call.write(_KEEPALIVE)

    def _next_message(self, position: int, batches: bool) -> tuple[peer_pb.ExchangeRequest, int]:
        """The message carrying the deliveries from ``position`` on, and the last sequence."""
        request = peer_pb.ExchangeRequest()
        if not batches:
            item = self._backlog[position]
            delivery = request.delivery
            delivery.sequence = item.sequence
            delivery.recipient_user_ids.extend(item.recipients)
            delivery.event.CopyFrom(item.event)
            if item.except_session:
                delivery.except_session_id = item.except_session
            if item.trace_context:
                delivery.trace_context.update(item.trace_context)
            return request, item.sequence
        batch = request.delivery_batch.deliveries
        size = 0
        last = 0
        end = min(len(self._backlog), position + MAX_BATCH_DELIVERIES)
        for index in range(position, end):
            item = self._backlog[index]
            delivery = batch.add(sequence=item.sequence)
            delivery.recipient_user_ids.extend(item.recipients)
            delivery.event.CopyFrom(item.event)
            if item.except_session:
                delivery.except_session_id = item.except_session
            if item.trace_context:
                delivery.trace_context.update(item.trace_context)
            last = item.sequence
            size += item.event.ByteSize()
            if size >= MAX_BATCH_BYTES:
                break
        return request, last

    def _first_after(self, sequence: int) -> int:
        """Index in the backlog of the first delivery after ``sequence``."""
        if not self._backlog or self._backlog[0].sequence > sequence:
            return 0
        return sequence - self._backlog[0].sequence + 1

    async def _read_acks(self, call: _Call) -> None:
        while True:
            reply = await call.read()
            if reply is grpc.aio.EOF:
                return
            assert isinstance(reply, peer_pb.ExchangeResponse)
            if reply.HasField("ack"):
                while self._backlog and self._backlog[0].sequence <= reply.ack.sequence:
                    self._backlog.popleft()


class PeerLinks:
    """One link to every other live UCServer, learned from the Lookup and from hellos."""

    def __init__(
        self,
        own_id: str,
        epoch: int,
        channels: MeshChannels,
        lookup: LookupClient | None,
        refresh_interval: float,
        on_peer_lost: Callable[[str], Awaitable[None]] | None = None,
        own_address: Callable[[], str] = lambda: "",
    ) -> None:
        self.own_id = own_id
        self._on_peer_lost = on_peer_lost
        self.epoch = epoch
        self._channels = channels
        self._lookup = lookup
        self._interval = refresh_interval
        self._own_address = own_address
        self.links: dict[str, PeerLink] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._watching = False
        self._lost: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Learn the topology now, say hello to every peer, and keep following it."""
        await self.refresh()
        if self.links:
            # every peer knows us (and opened its link back) before we serve clients
            waits = [link.wait_connected() for link in self.links.values()]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits), START_LINK_WAIT)
        if self._lookup is not None:
            self._tasks = [
                asyncio.create_task(self._watch(self._lookup), name="peer-mesh-watch"),
                asyncio.create_task(self._poll(), name="peer-mesh-poll"),
            ]

    def _open(self, server_id: str, address: str, listed: bool) -> PeerLink:
        link = PeerLink(
            self.own_id, self.epoch, server_id, address, self._channels, self._own_address
        )
        link.listed = listed
        self.links[server_id] = link
        link.start()
        return link

    async def _close(self, server_id: str, lost: bool) -> None:
        link = self.links.pop(server_id, None)
        if link is not None:
            await link.stop()
        if lost and self._on_peer_lost is not None:
            await self._on_peer_lost(server_id)

    def hello_from(self, server_id: str, address: str) -> None:
        """A peer opened its stream to us: open ours to it now if we do not have one."""
        if server_id == self.own_id or not address:
            return
        link = self.links.get(server_id)
        if link is not None and link.address == address:
            return
        _log.info("UCServer %s said hello from %s: linking back", server_id, address)
        if link is not None:  # it came back on another address
            self.links.pop(server_id)
            self._lost.add(task := asyncio.create_task(link.stop()))
            task.add_done_callback(self._lost.discard)
        self._open(server_id, address, listed=False)

    async def refresh(self) -> None:
        """Open links to new UCServers, move or close those whose server changed or left."""
        if self._lookup is None:
            return
        try:
            servers = await self._lookup.servers(lookup_pb2.ROLE_UCSERVER)
        except ProcallError:
            return  # Lookup unreachable: keep the links we have
        live = {
            s.server_id: s.mesh_address or s.address for s in servers if s.server_id != self.own_id
        }
        now = time.monotonic()
        for server_id in list(self.links):
            link = self.links[server_id]
            if server_id in live:
                if live[server_id] != link.address:
                    await self._close(server_id, lost=False)
            elif link.listed or now - link.created > UNLISTED_GRACE:
                await self._close(server_id, lost=True)
        for server_id, address in live.items():
            link = self.links.get(server_id) or self._open(server_id, address, listed=True)
            link.listed = True

    async def _apply(self, change: lookup_pb2.TopologyChange) -> None:
        server = change.server
        if server.server_id == self.own_id or server.role != lookup_pb2.ROLE_UCSERVER:
            return
        link = self.links.get(server.server_id)
        address = server.mesh_address or server.address
        if change.kind == lookup_pb2.TOPOLOGY_CHANGE_KIND_LEFT:
            # only the run that left: a hello may already have linked its successor
            if link is not None and link.address == address:
                await self._close(server.server_id, lost=True)
            return
        if link is not None and link.address != address:
            await self._close(server.server_id, lost=False)
            link = None
        if link is None:
            link = self._open(server.server_id, address, listed=True)
        link.listed = True

    async def _watch(self, lookup: LookupClient) -> None:
        """Follow the Lookup's topology stream; reconcile after each (re)connect."""
        while True:
            try:
                feed = lookup.watch_topology(lookup_pb2.ROLE_UCSERVER)
                first = True
                async for change in feed:
                    if first:  # what happened while we were not watching
                        self._watching = True
                        first = False
                        await self.refresh()
                    await self._apply(change)
            except ProcallError as error:
                _log.debug("topology stream ended (%s); polling meanwhile", error.message)
            except Exception:  # the mesh must outlive any one failure
                _log.exception("following the topology failed")
            self._watching = False
            await asyncio.sleep(self._interval)

    async def _poll(self) -> None:
        """Refresh every interval while the stream is down, rarely while it runs."""
        while True:
            await asyncio.sleep(self._interval if not self._watching else self._interval * 10)
            try:
                await self.refresh()
            except Exception:  # the mesh must outlive any one failure
                _log.exception("topology refresh failed")

    def peer_ids(self) -> list[str]:
        """The UCServers this one has a link to."""
        return list(self.links)

    def send(
        self,
        server_id: str,
        recipients: Sequence[str],
        event: session_pb2.Event,
        except_session: str = "",
    ) -> bool:
        """Queue an event for users homed on ``server_id`` (all their sessions but
        ``except_session``); False when it is not live."""
        link = self.links.get(server_id)
        if link is None:
            return False
        link.send(recipients, event, except_session)
        return True

    async def stop(self) -> None:
        """Close every link."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for link in self.links.values():
            await link.stop()
        self.links.clear()
