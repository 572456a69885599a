"""The presence part of a UCServer: watchers, fan-out over the peer links, and upkeep.

The peer links are the root's (chat uses them too); this part only sends over them and
is handed the presence events that peers deliver.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from procall.api.presence.v1 import presence_pb2
from procall.api.presence.v1 import presence_service_pb2 as presence_pb
from procall.api.presence.v1 import presence_service_pb2_grpc as presence_grpc
from procall.api.session.v1 import session_pb2
from procall.errors import Unavailable
from procall.presence.manager import PresenceManager
from procall.presence.model import Capabilities, Presence, TelephonyState
from procall.presence.ports import ContactStore, DelegationChecker, PresenceStore, UserDirectory
from procall.servers.codecs.presence import presence_from_proto, presence_to_proto
from procall.servers.peering.links import PeerLinks
from procall.servers.runtime.app import ServerApp, binding
from procall.servers.runtime.grpc_server import ServiceBinding
from procall.servers.ucserver.presence_servicer import PresenceServicer
from procall.session.hub import SessionHub
from procall.session.manager import SessionManager
from procall.session.tokens import SessionClaims
from procall.settings import Settings
from procall.tasks import stop_task
from procall.telemetry.tracing import stamp

__all__ = ["PresenceComponent"]

_log = logging.getLogger(__name__)


class _Notifier:
    """Pushes presence to local sessions and sends it to peers over the peer links.

    One change becomes one ``Event`` for everyone (its local watchers, its peers):
    the last event built is remembered by presence identity, and an event that
    arrived from a peer is passed on as it came instead of being decoded and
    encoded again.
    """

    def __init__(self, hub: SessionHub[session_pb2.Event], links: PeerLinks) -> None:
        self._hub = hub
        self._links = links
        self._last: tuple[Presence, session_pb2.Event] | None = None
        #: Told the number of local deliveries of each change (the fan-out metric).
        self.on_fanout: Callable[[int], None] | None = None

    def remember(self, presence: Presence, event: session_pb2.Event) -> None:
        """``event`` is the wire form of ``presence`` (as received from a peer)."""
        self._last = (presence, event)

    def event(self, presence: Presence) -> session_pb2.Event:
        if self._last is not None and self._last[0] is presence:
            return self._last[1]
        event = session_pb2.Event(
            presence_changed=presence_pb2.PresenceChanged(presence=presence_to_proto(presence))
        )
        # the trace of the change (the fan-out runs in the context of the call that made it)
        stamp(event.trace_context)
        self._last = (presence, event)
        return event

    async def to_local_users(self, user_ids: Iterable[str], presence: Presence) -> None:
        delivered = self._hub.deliver_nowait(user_ids, self.event(presence))
        if self.on_fanout is not None:
            self.on_fanout(delivered)

    def peer_servers(self) -> list[str]:
        return self._links.peer_ids()

    def to_servers(self, server_ids: Iterable[str], presence: Presence) -> None:
        event = self.event(presence)
        for server_id in server_ids:
            self._links.send(server_id, (), event)


#: How long a stopping UCServer waits for queued presence changes to go out.
_FLUSH_PATIENCE_SECONDS = 5.0


class PresenceComponent:
    """Presence and contacts of a UCServer: the PresenceService, its upkeep, and what
    peers tell about presence."""

    def __init__(
        self,
        settings: Settings,
        server_id: str,
        *,
        store: PresenceStore,
        contacts: ContactStore,
        delegations: DelegationChecker,
        users: UserDirectory,
        sessions: SessionManager[session_pb2.Event],
        hub: SessionHub[session_pb2.Event],
        links: PeerLinks,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._notifier = _Notifier(hub, links)
        self._manager = PresenceManager(
            server_id=server_id,
            store=store,
            contacts=contacts,
            delegations=delegations,
            notifier=self._notifier,
            clock=time.time,
            interest_ttl=settings.lookup.heartbeat_ttl,
            users=users,
        )
        self._task: asyncio.Task[None] | None = None
        self._pending_watch: set[str] = set()

    def observe_fanout(self, record: Callable[[int], None]) -> None:
        """Call ``record`` with the number of local deliveries of every change fanned out."""
        self._notifier.on_fanout = record

    @property
    def degraded(self) -> bool:
        """Whether presence runs on local state only (the shared store is unreachable)."""
        return self._manager.degraded

    def bindings(self) -> list[ServiceBinding]:
        """PresenceService."""
        return [
            binding(
                PresenceServicer(self._manager, self._sessions),
                presence_pb,
                presence_grpc.add_PresenceServiceServicer_to_server,
                "PresenceService",
            ),
        ]

    async def peer_lost(self, server_id: str) -> None:
        """A UCServer left the topology: its users go offline."""
        _log.info("UCServer %s left the topology: marking its users offline", server_id)
        await self._manager.peer_lost(server_id)

    async def received(self, event: session_pb2.Event) -> None:
        """A ``presence_changed`` event a peer delivered (passed on to watchers as it came)."""
        presence = presence_from_proto(event.presence_changed.presence)
        self._notifier.remember(presence, event)
        await self._manager.received(presence)

    async def set_telephony(self, user_id: str, state: TelephonyState) -> None:
        """A call changed the telephony state of a user whose clients are here."""
        await self._manager.set_telephony(user_id, state)

    # -- SessionObserver ----------------------------------------------------------------

    async def session_opened(self, claims: SessionClaims, client_name: str) -> None:
        """A session of a user homed here began: online, and watching the contacts."""
        caps = Capabilities(chat=True)
        await self._manager.session_started(claims.user_id, claims.session_id, caps)
        await self._watch(claims.user_id)

    async def _watch(self, user_id: str) -> None:
        try:
            await self._manager.start_watching(user_id)
            self._pending_watch.discard(user_id)
        except Unavailable:  # the contacts are loaded once the database answers
            self._pending_watch.add(user_id)

    async def session_closed(self, claims: SessionClaims, last_of_user: bool) -> None:
        """A session ended: offline when it was the user's last."""
        await self._manager.session_ended(claims.user_id, claims.session_id)
        if last_of_user:
            self._pending_watch.discard(claims.user_id)
            await self._manager.stop_watching(claims.user_id)

    async def session_moved(self, claims: SessionClaims, last_of_user: bool) -> None:
        """The session goes on at the user's new home, which announced it already: forget
        it here without a change of presence, and stop watching for the user here."""
        self._manager.session_moved(claims.user_id, claims.session_id)
        if last_of_user:
            self._pending_watch.discard(claims.user_id)
            await self._manager.stop_watching(claims.user_id)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, app: ServerApp) -> None:
        """Start the upkeep (the store's heartbeat, and contacts not loaded yet)."""
        self._task = asyncio.create_task(self._upkeep(), name="presence-upkeep")

    async def _upkeep(self) -> None:
        while True:
            await asyncio.sleep(self._settings.lookup.heartbeat_interval)
            try:
                await self._manager.upkeep()
                for user_id in list(self._pending_watch):
                    await self._watch(user_id)
            except Exception:  # the upkeep must outlive any one failure; it retries next tick
                _log.exception("presence upkeep failed; retrying at the next heartbeat")

    async def stop(self, app: ServerApp) -> None:
        """Deliver what is still queued and stop the upkeep (the root closes the links)."""
        try:  # bounded: a peer or Redis that stopped answering must not hold the stop
            await asyncio.wait_for(self._manager.flush(), _FLUSH_PATIENCE_SECONDS)
        except TimeoutError:
            _log.warning("presence changes queued at stop were not all delivered")
        task, self._task = self._task, None
        await stop_task(task)
