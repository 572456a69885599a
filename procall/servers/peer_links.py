"""The sending end of the streams between UCServers.

One ``PeerLink`` per other UCServer keeps a ``PeerService.Exchange`` stream
open, reconnecting with backoff. Deliveries are numbered per link and kept
until acked, so after a reconnect the unacked ones are sent again (the
receiver skips duplicates): per pair of servers, events arrive in order, once.
``PeerMesh`` learns the other UCServers from the Lookup and keeps one link each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

import grpc

from procall.api.session.v1 import session_pb2
from procall.errors import ProcallError
from procall.mesh.lookup.v1 import lookup_pb2
from procall.mesh.peer.v1 import peer_service_pb2 as peer_pb
from procall.mesh.peer.v1 import peer_service_pb2_grpc as peer_grpc
from procall.servers.clients.lookup import LookupClient
from procall.servers.peer_servicer import CREDENTIAL_HEADER

__all__ = ["PeerLink", "PeerMesh"]

_log = logging.getLogger(__name__)

#: Unacked deliveries kept per peer; beyond it the oldest are dropped (and logged).
MAX_BACKLOG = 100_000
_CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 2_000),
    ("grpc.http2.ping_timeout_ms", 2_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


class PeerLink:
    """The ordered, acknowledged stream of deliveries to one other UCServer."""

    def __init__(
        self, own_id: str, epoch: int, peer_id: str, address: str, credential: str
    ) -> None:
        self.own_id = own_id
        self.epoch = epoch
        self.peer_id = peer_id
        self.address = address
        self._credential = credential
        self._backlog: deque[peer_pb.Delivery] = deque()
        self._next = 1
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connected = False

    @property
    def unacked(self) -> int:
        """Deliveries sent or queued but not yet acknowledged."""
        return len(self._backlog)

    def send(self, recipients: Sequence[str], event: session_pb2.Event) -> None:
        """Queue an event for users homed on the peer."""
        delivery = peer_pb.Delivery(sequence=self._next, recipient_user_ids=recipients)
        delivery.event.CopyFrom(event)
        self._next += 1
        self._backlog.append(delivery)
        if len(self._backlog) > MAX_BACKLOG:
            dropped = self._backlog.popleft()
            _log.warning(
                "peer %s backlog full: dropped delivery %d", self.peer_id, dropped.sequence
            )
        self._wake.set()

    def start(self) -> None:
        """Start keeping the stream open."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"peer-link-{self.peer_id}")

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
        metadata = ((CREDENTIAL_HEADER, self._credential),) if self._credential else ()
        async with grpc.aio.insecure_channel(self.address, options=_CHANNEL_OPTIONS) as channel:
            call = peer_grpc.PeerServiceStub(channel).Exchange(metadata=metadata)
            await call.write(
                peer_pb.ExchangeRequest(
                    hello=peer_pb.PeerHello(server_id=self.own_id, epoch=self.epoch)
                )
            )
            reply = await call.read()
            if not isinstance(reply, peer_pb.ExchangeResponse) or not reply.HasField("hello"):
                raise ConnectionError("peer did not say hello")
            self.connected = True
            reader = asyncio.create_task(self._read_acks(call))
            try:
                sent_upto = 0  # everything unacked goes again on a new stream
                while True:
                    # the backlog is ordered: skip what this stream already carried
                    position = self._first_after(sent_upto)
                    while position < len(self._backlog):
                        delivery = self._backlog[position]
                        await call.write(peer_pb.ExchangeRequest(delivery=delivery))
                        sent_upto = delivery.sequence
                        position = self._first_after(sent_upto)
                    if reader.done():
                        reader.result()
                        raise ConnectionError("peer closed the stream")
                    self._wake.clear()
                    if self._first_after(sent_upto) >= len(self._backlog):
                        wake = asyncio.create_task(self._wake.wait())
                        await asyncio.wait({wake, reader}, return_when=asyncio.FIRST_COMPLETED)
                        wake.cancel()
            finally:
                reader.cancel()
                call.cancel()

    def _first_after(self, sequence: int) -> int:
        """Index in the backlog of the first delivery after ``sequence``."""
        if not self._backlog or self._backlog[0].sequence > sequence:
            return 0
        return sequence - self._backlog[0].sequence + 1

    async def _read_acks(
        self, call: grpc.aio.StreamStreamCall[peer_pb.ExchangeRequest, peer_pb.ExchangeResponse]
    ) -> None:
        while True:
            reply = await call.read()
            if reply is grpc.aio.EOF:
                return
            assert isinstance(reply, peer_pb.ExchangeResponse)
            if reply.HasField("ack"):
                while self._backlog and self._backlog[0].sequence <= reply.ack.sequence:
                    self._backlog.popleft()


class PeerMesh:
    """One link to every other live UCServer, learned from the Lookup."""

    def __init__(
        self,
        own_id: str,
        epoch: int,
        credential: str,
        lookup: LookupClient | None,
        refresh_interval: float,
        on_peer_lost: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.own_id = own_id
        self._on_peer_lost = on_peer_lost
        self.epoch = epoch
        self._credential = credential
        self._lookup = lookup
        self._interval = refresh_interval
        self.links: dict[str, PeerLink] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Learn the topology now and keep following it."""
        await self.refresh()
        self._task = asyncio.create_task(self._follow(), name="peer-mesh")

    async def refresh(self) -> None:
        """Open links to new UCServers, move or close those whose server changed or left."""
        if self._lookup is None:
            return
        try:
            servers = await self._lookup.servers(lookup_pb2.ROLE_UCSERVER)
        except ProcallError:
            return  # Lookup unreachable: keep the links we have
        live = {s.server_id: s.address for s in servers if s.server_id != self.own_id}
        for server_id in list(self.links):
            link = self.links[server_id]
            if server_id not in live or live[server_id] != link.address:
                await link.stop()
                del self.links[server_id]
                if server_id not in live and self._on_peer_lost is not None:
                    await self._on_peer_lost(server_id)
        for server_id, address in live.items():
            if server_id not in self.links:
                link = PeerLink(self.own_id, self.epoch, server_id, address, self._credential)
                self.links[server_id] = link
                link.start()

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.refresh()

    def send(self, server_id: str, recipients: Sequence[str], event: session_pb2.Event) -> bool:
        """Queue an event for users homed on ``server_id``; False when it is not live."""
        link = self.links.get(server_id)
        if link is None:
            return False
        link.send(recipients, event)
        return True

    async def stop(self) -> None:
        """Close every link."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for link in self.links.values():
            await link.stop()
        self.links.clear()
