"""The presence part of a UCServer: the peer mesh, watchers, fan-out and upkeep."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence

import redis.asyncio as aioredis

from procall.api.presence.v1 import presence_pb2
from procall.api.presence.v1 import presence_service_pb2 as presence_pb
from procall.api.presence.v1 import presence_service_pb2_grpc as presence_grpc
from procall.api.session.v1 import session_pb2
from procall.errors import Unavailable
from procall.mesh.peer.v1 import peer_service_pb2 as peer_pb
from procall.mesh.peer.v1 import peer_service_pb2_grpc as peer_grpc
from procall.presence.manager import PresenceManager
from procall.presence.model import Capabilities, Presence
from procall.servers.codecs.presence import presence_from_proto, presence_to_proto
from procall.servers.peering.links import PeerLinks
from procall.servers.peering.servicer import PeerServicer
from procall.servers.runtime.app import ServerApp, binding
from procall.servers.runtime.grpc_server import ServiceBinding
from procall.servers.ucserver.presence_servicer import PresenceServicer
from procall.servers.upstream.clients import UpstreamClients
from procall.session.hub import SessionHub
from procall.session.manager import SessionManager
from procall.session.tokens import SessionClaims
from procall.settings import Settings
from procall.storage.redis.presence import RedisPresenceStore
from procall.storage.sql.contacts import SqlContactStore
from procall.storage.sql.engine import SqlDatabase
from procall.storage.sql.migrate import upgrade_to_head

__all__ = ["PresenceComponent"]

_log = logging.getLogger(__name__)


class _Notifier:
    """Pushes presence to local sessions and sends it to peers over the mesh.

    One change becomes one ``Event`` for everyone (its local watchers, its peers):
    the last event built is remembered by presence identity, and an event that
    arrived from a peer is passed on as it came instead of being decoded and
    encoded again.
    """

    def __init__(self, hub: SessionHub[session_pb2.Event], mesh: PeerLinks) -> None:
        self._hub = hub
        self._mesh = mesh
        self._last: tuple[Presence, session_pb2.Event] | None = None

    def remember(self, presence: Presence, event: session_pb2.Event) -> None:
        """``event`` is the wire form of ``presence`` (as received from a peer)."""
        self._last = (presence, event)

    def event(self, presence: Presence) -> session_pb2.Event:
        if self._last is not None and self._last[0] is presence:
            return self._last[1]
        event = session_pb2.Event(
            presence_changed=presence_pb2.PresenceChanged(presence=presence_to_proto(presence))
        )
        self._last = (presence, event)
        return event

    async def to_local_users(self, user_ids: Iterable[str], presence: Presence) -> None:
        self._hub.deliver_nowait(user_ids, self.event(presence))

    def peer_servers(self) -> list[str]:
        return list(self._mesh.links)

    def to_servers(self, server_ids: Iterable[str], presence: Presence) -> None:
        event = self.event(presence)
        for server_id in server_ids:
            self._mesh.send(server_id, (), event)


class PresenceComponent:
    """Presence, contacts and the PeerService of a UCServer."""

    def __init__(
        self,
        settings: Settings,
        redis: aioredis.Redis,
        database: SqlDatabase,
        server_id: str,
        sessions: SessionManager[session_pb2.Event],
        clients: UpstreamClients,
    ) -> None:
        self._settings = settings
        self._database = database
        self._sessions = sessions
        epoch = time.time_ns() // 1000  # grows with every run of this server
        self.mesh = PeerLinks(
            server_id,
            epoch,
            settings.auth.service_credential,
            clients.lookup,
            settings.lookup.heartbeat_interval,
            on_peer_lost=self._peer_lost,
            own_address=sessions.own_address,
        )
        self._notifier = _Notifier(sessions.hub, self.mesh)
        self.manager = PresenceManager(
            server_id=server_id,
            store=RedisPresenceStore(redis),
            contacts=SqlContactStore(database),
            delegations=clients,
            notifier=self._notifier,
            clock=time.time,
            interest_ttl=settings.lookup.heartbeat_ttl,
            users=clients,
        )
        self._peer = PeerServicer(
            server_id,
            epoch,
            settings.auth.service_credential,
            self._sink,
            on_hello=self.mesh.hello_from,
        )
        self._task: asyncio.Task[None] | None = None
        self._migrated = False
        self._migrate_postponed = False
        self._pending_watch: set[str] = set()
        sessions.observers.append(self)

    def bindings(self) -> list[ServiceBinding]:
        """PresenceService and PeerService."""
        return [
            binding(
                PresenceServicer(self.manager, self._sessions),
                presence_pb,
                presence_grpc.add_PresenceServiceServicer_to_server,
                "PresenceService",
            ),
            binding(
                self._peer, peer_pb, peer_grpc.add_PeerServiceServicer_to_server, "PeerService"
            ),
        ]

    async def _peer_lost(self, server_id: str) -> None:
        _log.info("UCServer %s left the topology: marking its users offline", server_id)
        await self.manager.peer_lost(server_id)

    async def _sink(self, recipients: Sequence[str], event: session_pb2.Event) -> None:
        if event.HasField("presence_changed"):
            presence = presence_from_proto(event.presence_changed.presence)
            self._notifier.remember(presence, event)
            await self.manager.received(presence)
        else:
            await self._sessions.hub.deliver(recipients, event)

    # -- SessionObserver ----------------------------------------------------------------

    async def session_opened(self, claims: SessionClaims, client_name: str) -> None:
        """A session of a user homed here began: online, and watching the contacts."""
        caps = Capabilities(chat=True)
        await self.manager.session_started(claims.user_id, claims.session_id, caps)
        await self._watch(claims.user_id)

    async def _watch(self, user_id: str) -> None:
        try:
            await self.manager.start_watching(user_id)
            self._pending_watch.discard(user_id)
        except Unavailable:  # the contacts are loaded once the database answers
            self._pending_watch.add(user_id)

    async def session_closed(self, claims: SessionClaims, last_of_user: bool) -> None:
        """A session ended: offline when it was the user's last."""
        await self.manager.session_ended(claims.user_id, claims.session_id)
        if last_of_user:
            self._pending_watch.discard(claims.user_id)
            await self.manager.stop_watching(claims.user_id)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, app: ServerApp) -> None:
        """Bring the schema up to date (if the database answers) and join the mesh."""
        await self._migrate()
        await self.mesh.start()
        self._task = asyncio.create_task(self._upkeep(), name="presence-upkeep")

    async def _migrate(self) -> None:
        if self._migrated:
            return
        try:
            await upgrade_to_head(self._database, name=self._database.name)
            self._migrated = True
        except Unavailable:
            if not self._migrate_postponed:  # once per outage, not at every heartbeat
                _log.warning("%s unavailable: schema check postponed", self._database.name)
            self._migrate_postponed = True

    async def _upkeep(self) -> None:
        while True:
            await asyncio.sleep(self._settings.lookup.heartbeat_interval)
            try:
                await self.manager.upkeep()
                await self._migrate()
                for user_id in list(self._pending_watch):
                    await self._watch(user_id)
            except Exception:  # the upkeep must outlive any one failure; it retries next tick
                _log.exception("presence upkeep failed; retrying at the next heartbeat")

    async def stop(self, app: ServerApp) -> None:
        """Deliver what is still queued, then leave the mesh."""
        await self.manager.flush()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.mesh.stop()
