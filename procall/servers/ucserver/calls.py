"""The call part of a UCServer: the CallService, call events, ring timers, telephony.

Every UCServer that sees a call change (it made the change, or a peer delivered the
``CallChanged`` event to users homed here) does the same local upkeep for the parties
whose clients are here: it sets their telephony state in presence (so watchers on every
server see "ringing" and "on the phone"), arms the ring timeout of a ringing call (both
parties' servers arm it: whichever fires first ends the call, the compare-and-set makes
the other a no-op), and keeps connected calls' shared state alive while they last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Protocol

from opentelemetry.trace import SpanKind

from procall.api.call.v1 import call_pb2
from procall.api.call.v1 import call_service_pb2 as call_pb
from procall.api.call.v1 import call_service_pb2_grpc as call_grpc
from procall.api.session.v1 import session_pb2
from procall.calls.forwarding import ForwardingService, ForwardingStore
from procall.calls.model import Call, CallState, telephony_of
from procall.calls.ports import CallJournal, MediaAllocation
from procall.calls.service import Calls, CallTimings
from procall.errors import ProcallError
from procall.presence.model import Availability, TelephonyState
from procall.presence.ports import PresenceStore
from procall.servers.codecs.calls import call_to_proto
from procall.servers.peering.router import EventRouter
from procall.servers.runtime.app import ServerApp, binding
from procall.servers.runtime.grpc_server import ServiceBinding
from procall.servers.ucserver.calls_servicer import CallServicer
from procall.servers.upstream.clients import UpstreamClients
from procall.servers.upstream.media import MediaClient
from procall.session.hub import SessionHub
from procall.session.tokens import SessionClaims
from procall.settings import Settings
from procall.storage.redis.calls import RedisCallStore
from procall.telemetry.tracing import event_span

__all__ = ["CallComponent", "TelephonySetter"]

_log = logging.getLogger(__name__)
_OFFLINE = (Availability.OFFLINE, Availability.UNKNOWN)
#: How long (seconds) and how many users the Directory's "this user exists" is remembered.
_KNOWN_SECONDS = 300.0
_KNOWN_USERS = 100_000


class TelephonySetter(Protocol):
    """Sets a user's telephony state in presence (``PresenceComponent.set_telephony``)."""

    async def set_telephony(self, user_id: str, state: TelephonyState) -> None:
        """Set the state."""
        ...


class _Callees:
    """The ``Callees`` port: the Directory knows users, presence knows who is online."""

    def __init__(self, clients: UpstreamClients, presence: PresenceStore) -> None:
        self._clients = clients
        self._presence = presence
        #: Users the Directory knew, until when (a user is rarely deleted; a call to one
        #: deleted meanwhile finds nobody online).
        self._known: dict[str, float] = {}

    async def exists(self, user_id: str) -> bool:
        now = time.monotonic()
        if self._known.get(user_id, 0.0) > now:
            return True
        if await self._clients.unknown_users([user_id]):
            return False
        if len(self._known) >= _KNOWN_USERS:
            self._known.clear()
        self._known[user_id] = now + _KNOWN_SECONDS
        return True

    async def user_id_of(self, username: str) -> str | None:
        (found,) = await self._clients.user_ids_of([username])
        return found

    async def online(self, user_id: str) -> bool:
        (presence,) = await self._presence.get_many([user_id])
        return presence.availability not in _OFFLINE


class _Events:
    """The ``CallEvents`` port: routes ``CallChanged`` to the parties, then does this
    server's upkeep for those of them whose clients are here."""

    def __init__(self, router: EventRouter, component: CallComponent) -> None:
        self._router = router
        self._component = component

    async def changed(self, call: Call) -> None:
        event = session_pb2.Event(call_changed=call_pb2.CallChanged(call=call_to_proto(call)))
        await self._router.route(call.notified(), event)
        await self._component.observe(call, call.notified())


class CallComponent:
    """CallService of a UCServer and the local upkeep of the calls its users are in."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: RedisCallStore,
        forwarding: ForwardingStore,
        presence_store: PresenceStore,
        telephony: TelephonySetter,
        journal: CallJournal,
        clients: UpstreamClients,
        router: EventRouter,
        hub: SessionHub[session_pb2.Event],
    ) -> None:
        conf = settings.calls
        self._store = store
        self._hub = hub
        self._telephony = telephony
        self._media = MediaClient(clients.lookup, clients.channels)
        self.forwarding = ForwardingService(forwarding, clients, clients)
        self.calls = Calls(
            store,
            self._media,
            _Callees(clients, presence_store),
            _Events(router, self),
            journal,
            clients,
            self.forwarding,
            time.time,
            CallTimings(
                ring_seconds=conf.ring_seconds,
                live_ttl=conf.live_ttl_seconds,
                ended_ttl=conf.ended_ttl_seconds,
                request_ttl=conf.request_id_ttl_seconds,
            ),
            join_trace=lambda call: event_span(
                "call media", dict(call.trace_context), SpanKind.INTERNAL, settings.server.server_id
            ),
        )
        #: Calls that have not ended with a party whose clients are here (newest version).
        self._live: dict[str, Call] = {}
        self._ring_timers: dict[str, asyncio.Task[None]] = {}
        #: (call, MediaServer) pairs whose bridge a probe found open.
        self._bridged: set[tuple[str, str]] = set()
        self._refresher: asyncio.Task[None] | None = None
        self._prober: asyncio.Task[None] | None = None
        #: Seconds between two MediaServer probes (the configuration may change it live).
        self.probe_seconds = conf.media_probe_seconds
        self._stopping = False

    def bindings(self) -> list[ServiceBinding]:
        """CallService."""
        return [
            binding(
                CallServicer(self.calls, self.forwarding),
                call_pb,
                call_grpc.add_CallServiceServicer_to_server,
                "CallService",
            )
        ]

    # -- call changes ---------------------------------------------------------------------

    async def received(self, recipients: Sequence[str], event: session_pb2.Event) -> None:
        """A ``call_changed`` event a peer delivered for users homed here."""
        await self._hub.deliver(recipients, event)
        try:  # the stored call has what the event leaves out (its version, ring start)
            call = await self._store.get(event.call_changed.call.call_id)
        except ProcallError as error:
            _log.info("call of a peer's event not read: %s", error.message)
            return
        if call is not None:
            await self.observe(call, recipients)

    async def observe(self, call: Call, users: Iterable[str]) -> None:
        """Local upkeep of a call's change for ``users`` whose clients are on this server."""
        here = [u for u in users if self._hub.sessions_of(u)]
        if not here:
            return
        known = self._live.get(call.call_id)
        if known is not None and known.version > call.version:
            return  # a late, older change
        if call.ended:
            self._live.pop(call.call_id, None)
            self._bridged = {k for k in self._bridged if k[0] != call.call_id}
        else:
            self._live[call.call_id] = call
        self._arm_ring_timer(call)
        for user_id in here:
            state = telephony_of(call, user_id)
            if state is None:
                continue
            if state is TelephonyState.IDLE and self._other_live_call(user_id, call.call_id):
                continue  # still in (or ringing for) another call
            try:
                await self._telephony.set_telephony(user_id, state)
            except ProcallError as error:
                _log.info("telephony of %s not set: %s", user_id, error.message)

    def _other_live_call(self, user_id: str, call_id: str) -> bool:
        return any(c.call_id != call_id and c.is_party(user_id) for c in self._live.values())

    def _arm_ring_timer(self, call: Call) -> None:
        timer = self._ring_timers.get(call.call_id)
        if call.state is not CallState.RINGING:
            if timer is not None:
                self._ring_timers.pop(call.call_id)
                timer.cancel()
            return
        if timer is None and not self._stopping:
            delay = max(0.0, self.calls.ring_deadline(call) - time.time())
            self._ring_timers[call.call_id] = asyncio.create_task(
                self._ring_out(call.call_id, delay), name=f"ring-{call.call_id}"
            )

    async def _ring_out(self, call_id: str, delay: float) -> None:
        await asyncio.sleep(delay)
        self._ring_timers.pop(call_id, None)
        await self.calls.ring_timeout(call_id)

    # -- SessionObserver --------------------------------------------------------------------

    async def session_opened(self, claims: SessionClaims, client_name: str) -> None:
        """Nothing to do: a new client reads its calls with ListActiveCalls."""

    async def session_closed(self, claims: SessionClaims, last_of_user: bool) -> None:
        """The user's last client here went away (logout, or its resume window lapsed):
        its calls end. Not when this server stops: calls outlive their UCServer."""
        if last_of_user and not self._stopping:
            try:  # a logout never fails for its calls: they expire with their TTL instead
                await self.calls.user_gone(claims.user_id)
            except ProcallError as error:
                _log.warning("calls of %s not ended: %s", claims.user_id, error.message)

    async def session_moved(self, claims: SessionClaims, last_of_user: bool) -> None:
        """The user's calls go on, kept up by the new home from now on (``moved_in``):
        this server lets go of those that no longer have a party here."""
        if not last_of_user:
            return
        for call_id, call in list(self._live.items()):
            if call.is_party(claims.user_id) and not any(
                self._hub.sessions_of(p) for p in call.parties()
            ):
                del self._live[call_id]
                timer = self._ring_timers.pop(call_id, None)
                if timer is not None:
                    timer.cancel()

    async def moved_in(self, user_id: str) -> None:
        """A user's sessions were handed over to this server: keep up its live calls here
        (refresh, ring timer, telephony state)."""
        try:
            calls = await self.calls.active(user_id)
        except ProcallError as error:
            _log.warning("calls of moved user %s not taken over: %s", user_id, error.message)
            return
        for call in calls:
            await self.observe(call, [user_id])

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, app: ServerApp) -> None:
        """Keep connected calls alive in the shared state while their parties are here."""
        self._refresher = asyncio.create_task(self._refresh(), name="call-refresh")
        self._prober = asyncio.create_task(self._probe_media(), name="media-probe")

    async def _refresh(self) -> None:
        interval = max(0.5, self.calls.timings.live_ttl / 3)
        while True:
            await asyncio.sleep(interval)
            connected = [c for c in self._live.values() if c.state is CallState.CONNECTED]
            try:
                await self._store.refresh(connected, self.calls.timings.live_ttl)
            except ProcallError as error:
                _log.warning("calls not refreshed (retrying): %s", error.message)

    async def _probe_media(self) -> None:
        """Probe the MediaServers of live calls; move the calls of one that fails."""
        while True:
            await asyncio.sleep(self.probe_seconds)
            on: dict[MediaAllocation, list[str]] = {}
            for call in self._live.values():
                media = MediaAllocation(call.media_server_id, call.media_address)
                on.setdefault(media, []).append(call.call_id)
            if not on:
                continue
            try:
                await self._move_off_failed(on)
            except Exception:  # the probe must outlive any one failure; it retries next tick
                _log.exception("MediaServer probe failed; retrying")

    async def _move_off_failed(self, on: dict[MediaAllocation, list[str]]) -> None:
        """Probe each MediaServer: move the calls of one that fails twice in a row, and end
        the calls whose bridge it no longer has."""
        if on:
            servers = list(on)
            answers = await asyncio.gather(*(self._media.bridges(m) for m in servers))
            for media, bridges in zip(servers, answers, strict=True):
                if bridges is None:
                    await asyncio.sleep(0.1)
                    bridges = await self._media.bridges(media)  # one lost probe is no failure
                if bridges is None:
                    _log.warning(
                        "MediaServer %s does not answer: moving its calls", media.server_id
                    )
                    for call_id in on[media]:
                        try:
                            await self.calls.media_failed(call_id, media.server_id)
                        except ProcallError as error:
                            _log.warning("call %s not moved: %s", call_id, error.message)
                    continue
                await self._follow_bridges(media.server_id, on[media], bridges)

    async def _follow_bridges(
        self, server_id: str, call_ids: Sequence[str], bridges: frozenset[str]
    ) -> None:
        """A connected call whose bridge this server saw and its MediaServer no longer has
        lost its media (a peer went away): it ends."""
        for call_id in call_ids:
            key = (call_id, server_id)
            if call_id in bridges:
                self._bridged.add(key)
                continue
            call = self._live.get(call_id)
            if key not in self._bridged or call is None or call.state is not CallState.CONNECTED:
                continue
            self._bridged.discard(key)
            try:
                await self.calls.media_ended(call_id, server_id)
            except ProcallError as error:
                _log.warning("call %s not ended: %s", call_id, error.message)

    async def stop(self, app: ServerApp) -> None:
        """Stop the timers (the calls go on: the other party's server or the TTLs end them)."""
        self._stopping = True
        loops = [t for t in (self._refresher, self._prober) if t is not None]
        tasks = [*self._ring_timers.values(), *loops]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._ring_timers.clear()
        await self._media.close()
