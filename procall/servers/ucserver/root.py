"""Composition root of a UCServer (``procall serve ucserver``).

The shared pieces are built here, once, and handed to the parts that use them: the
stores (from ``procall.storage``), the session hub and ``SessionManager``, the peer
links to the other UCServers, the ``EventRouter`` that delivers events to users
wherever they are homed, the dispatcher of what peers deliver (presence events to
presence, the rest to the local sessions) and the schema migration, a start hook of
its own. The parts (sessions, presence, chat) only serve and keep up their own area.
Moving users (``procall.servers.moves``) shares the hub, the manager, the router and the
peer links: the hub forwards a moved user's deliveries over the links, the router's cached
homes are dropped when a move is announced.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable

from procall.api.session.v1 import session_pb2
from procall.audit import AuditListing, BufferedAuditLog
from procall.config import ConfigValue
from procall.leases import EditLeases
from procall.limits import CallLimits, LoadShedder
from procall.mesh.peer.v1 import peer_service_pb2 as peer_pb
from procall.mesh.peer.v1 import peer_service_pb2_grpc as peer_grpc
from procall.policies import ClientPolicies
from procall.routing.models import DependencyHealth, ServerRole
from procall.servers.codecs.chat import delivery_key
from procall.servers.moves.coordinator import MoveCoordinator
from procall.servers.moves.endpoint import MoveEndpoint
from procall.servers.moves.follower import MovedHomesFollower
from procall.servers.moves.peers import PeerCalls
from procall.servers.moves.rehoming import LiveHomes
from procall.servers.peering.dispatch import PeerEventDispatcher
from procall.servers.peering.links import PeerLinks
from procall.servers.peering.router import EventRouter
from procall.servers.peering.servicer import PeerServicer
from procall.servers.runtime.app import (
    Hook,
    ServerApp,
    StartupError,
    binding,
    ensure_server_id,
    token_signer,
)
from procall.servers.runtime.audit import AuditInterceptor
from procall.servers.runtime.channels import MeshChannels
from procall.servers.runtime.identity import mesh_auth_required
from procall.servers.runtime.limits import LimitsInterceptor, call_limits
from procall.servers.runtime.overload import LagSampler, shedder_of
from procall.servers.ucserver.admin import admin_binding
from procall.servers.ucserver.audited import UCSERVER_AUDIT_RULES
from procall.servers.ucserver.calls import CallComponent
from procall.servers.ucserver.chat import ChatComponent
from procall.servers.ucserver.config import ConfigComponent
from procall.servers.ucserver.metrics import event_kind, observe_dependencies, observe_ucserver
from procall.servers.ucserver.policies import PolicyInterceptor
from procall.servers.ucserver.presence import PresenceComponent
from procall.servers.ucserver.schema import SchemaMigration
from procall.servers.ucserver.sessions import SessionComponent
from procall.servers.upstream.clients import UpstreamClients
from procall.servers.upstream.registration import LookupRegistration
from procall.session.hub import SessionHub
from procall.session.manager import SessionManager
from procall.session.moves import SessionMover
from procall.session.openings import OpeningGate
from procall.settings import Settings
from procall.storage.redis import RedisUnavailableError
from procall.storage.ucserver import UCServerStores, open_ucserver_stores

__all__ = ["apply_config", "build_ucserver"]

_log = logging.getLogger(__name__)

#: Seconds the router keeps a user's home (``[moves] forward_seconds`` should be longer).
_ROUTER_CACHE_SECONDS = 60.0


def _session_manager(
    settings: Settings,
    server_id: str,
    address: Callable[[], str],
    hub: SessionHub[session_pb2.Event],
    stores: UCServerStores,
    clients: UpstreamClients,
) -> SessionManager[session_pb2.Event]:
    return SessionManager(
        server_id=server_id,
        run_id=uuid.uuid4().hex[:12],
        own_address=address,
        hub=hub,
        signer=token_signer(settings.auth),
        authenticator=clients.authenticator,
        locator=clients.locator,
        licenses=stores.licenses,
        clock=time.time,
        revocations=stores.revocations,
        sessions_per_user=settings.limits.sessions_per_user,
        openings=OpeningGate(
            settings.limits.opening_concurrency,
            settings.limits.opening_queue,
            retry_after=settings.limits.opening_retry_seconds,
        ),
    )


def apply_config(
    config: ConfigComponent,
    limits: CallLimits,
    manager: SessionManager[session_pb2.Event],
    calls: CallComponent,
    chat: ChatComponent,
    shedder: LoadShedder,
) -> None:
    """Let the parts follow the live configuration properties (``procall.config``)."""
    config.apply_to_limits(limits)

    def overload_lag(value: ConfigValue) -> None:
        shedder.config = dataclasses.replace(shedder.config, lag_target=float(value) / 1000)

    def in_flight(value: ConfigValue) -> None:
        shedder.config = dataclasses.replace(shedder.config, max_in_flight=int(value))

    config.follow("limits.overload_lag_ms", overload_lag)
    config.follow("limits.max_in_flight", in_flight)

    def sessions_per_user(value: ConfigValue) -> None:
        manager.sessions_per_user = int(value)

    def ring(value: ConfigValue) -> None:
        calls.calls.timings = dataclasses.replace(calls.calls.timings, ring_seconds=float(value))

    def probe(value: ConfigValue) -> None:
        calls.probe_seconds = float(value)

    def typing(value: ConfigValue) -> None:
        chat.messaging.limits = dataclasses.replace(chat.messaging.limits, typing_ttl=float(value))

    def request_ttl(value: ConfigValue) -> None:
        chat.messaging.limits = dataclasses.replace(chat.messaging.limits, request_ttl=float(value))

    config.follow("limits.sessions_per_user", sessions_per_user)
    config.follow("calls.ring_seconds", ring)
    config.follow("calls.media_probe_seconds", probe)
    config.follow("chat.typing_ttl_seconds", typing)
    config.follow("chat.request_id_ttl_seconds", request_ttl)


def _dependencies(
    presence: PresenceComponent,
    chat: ChatComponent,
    config: ConfigComponent,
    clients: UpstreamClients,
) -> list[DependencyHealth]:
    """Whether this UCServer reaches each backend, and what it does meanwhile (heartbeats)."""
    found = [
        DependencyHealth(
            "redis",
            not presence.degraded,
            "" if not presence.degraded else "presence and calls across servers stopped",
        ),
        DependencyHealth(
            "chat database",
            not chat.degraded,
            "" if not chat.degraded else "chat writes go to the local outbox",
        ),
        DependencyHealth(
            "configuration database",
            not config.degraded,
            "" if not config.degraded else config.health_detail,
        ),
    ]
    probe = clients.directory_probe
    if probe is not None:
        found.append(
            DependencyHealth(
                "directory", probe.available, "" if probe.available else "new logins fail"
            )
        )
    return found


async def build_ucserver(settings: Settings) -> ServerApp:
    """Wire the client-facing services, the admin service and the peer links."""
    server_id = ensure_server_id(settings, "ucserver")
    try:
        stores = await open_ucserver_stores(settings, server_id)
    except RedisUnavailableError as exc:
        raise StartupError(str(exc)) from None
    app: ServerApp | None = None

    def address() -> str:
        return app.address if app is not None else ""

    def mesh_address() -> str:
        return app.mesh_address if app is not None else ""

    clients = UpstreamClients(settings, MeshChannels(settings, "ucserver", server_id))
    hub = SessionHub[session_pb2.Event](
        time.time, settings.auth.replay_buffer_events, once_key=delivery_key, kind_of=event_kind
    )
    manager = _session_manager(settings, server_id, address, hub, stores, clients)
    # the leases (procall.leases) are not wired yet: versions alone guard writes
    # the administrators' edit leases (shared by every server through Redis): served by the
    # AdminService, asked by whatever writes leased resources (``fencing_for``)
    edit_leases = EditLeases(stores.leases, server_id, time.time)

    config = ConfigComponent(settings, server_id, stores, leases=edit_leases)
    epoch = time.time_ns() // 1000  # grows with every run of this server

    async def peer_lost(peer_id: str) -> None:
        await presence.peer_lost(peer_id)

    links = PeerLinks(
        server_id,
        epoch,
        clients.channels,
        clients.lookup,
        settings.lookup.heartbeat_interval,
        on_peer_lost=peer_lost,
        own_address=mesh_address,  # peers link back to our mesh port
    )
    lookup = clients.lookup

    async def home_of(user_id: str) -> str | None:
        return await lookup.resolve_home(user_id) if lookup is not None else None

    router = EventRouter(server_id, hub, links, home_of, cache_seconds=_ROUTER_CACHE_SECONDS)

    def forward(target_id: str, users: list[str], event: session_pb2.Event) -> None:
        # deliveries to users moved away from here go on to their new home
        if not links.send(target_id, users, event):
            for peer_id in links.peer_ids():  # no link yet: each peer delivers to its own
                links.send(peer_id, users, event)

    hub.forwarder = forward
    peer_calls = PeerCalls(clients.channels, clients)

    async def moved_in(user_id: str) -> None:
        await calls.moved_in(user_id)

    mover = SessionMover(
        manager, peer_calls, forward_seconds=settings.moves.forward_seconds, moved_in=moved_in
    )
    registration: LookupRegistration | None = None

    def set_draining(draining: bool) -> None:
        manager.draining = draining
        if registration is not None and registration.registrar is not None:
            registration.registrar.beat_now()  # the Lookup and the peers learn it at once

    moves = MoveCoordinator(
        server_id,
        mover,
        peer_calls,
        clients.directory,
        stores.homes,
        progress=stores.move_operations,
        forget_home=router.forget,
        set_draining=set_draining,
        default_rate=settings.moves.moves_per_second,
    )
    moved_homes = MovedHomesFollower(
        stores.homes, router.forget, settings.lookup.heartbeat_interval
    )
    if clients.lookup is not None:
        manager.rehoming = LiveHomes(
            peer_calls, clients.directory, stores.homes, forget_home=router.forget
        )
    schema = SchemaMigration(
        stores.migrate, stores.database_name, settings.lookup.heartbeat_interval
    )
    # the administrators' client policies: checked before each feature, told in the Welcome
    policies = ClientPolicies(stores.policies, clients, time.time, time.monotonic)

    async def allowed_features(user_id: str) -> list[int]:
        return [int(feature) for feature in await policies.allowed(user_id)]

    sessions = SessionComponent(
        settings,
        manager=manager,
        hub=hub,
        logged_on=stores.sessions,
        licenses=stores.licenses,
        revocations=stores.revocations,
        features=allowed_features,
    )
    presence = PresenceComponent(
        settings,
        server_id,
        store=stores.presence,
        contacts=stores.contacts,
        delegations=clients,
        users=clients,
        sessions=manager,
        hub=hub,
        links=links,
    )
    chat = ChatComponent(
        settings,
        conversations=stores.conversations,
        messages=stores.messages,
        state=stores.chat_state,
        journal=stores.journal,
        central=stores.central,
        outbox=stores.outbox,
        router=router,
        sessions=manager,
        clients=clients,
    )
    calls = CallComponent(
        settings,
        store=stores.calls,
        forwarding=stores.forwarding,
        presence_store=stores.presence,
        telephony=presence,
        journal=chat.journal,
        clients=clients,
        router=router,
        hub=hub,
    )
    # the logged-on list first, then presence (as before: admins see a session go online),
    # then the calls (a user whose last client left ends its calls)
    manager.observers.extend([sessions, presence, calls])
    peer = PeerServicer(
        server_id,
        epoch,
        PeerEventDispatcher(hub, presence.received, calls.received),
        on_hello=links.hello_from,
        require_identity=mesh_auth_required(settings),
        moves=MoveEndpoint(manager, mover, router.forget, lambda: set_draining(manager.draining)),
    )

    async def join_peers(_: ServerApp) -> None:
        await links.start()
        if clients.directory_probe is not None:
            clients.directory_probe.start()

    async def leave_peers(_: ServerApp) -> None:
        if clients.directory_probe is not None:
            await clients.directory_probe.stop()
        await links.stop()

    # the audit log: queued, written in batches (never slowing or failing the audited call)
    audit = BufferedAuditLog(stores.audit)
    audit_listing = AuditListing(stores.audit_readers)

    async def start_audit(_: ServerApp) -> None:
        audit.start()

    async def close_connections(_: ServerApp) -> None:
        await moves.stop()
        await peer_calls.close()
        await clients.close()
        await audit.stop()
        await stores.close()

    services = [
        *sessions.bindings(),
        *presence.bindings(),
        *chat.bindings(),
        binding(peer, peer_pb, peer_grpc.add_PeerServiceServicer_to_server, "PeerService"),
        admin_binding(
            manager,
            stores.sessions,
            stores.licenses,
            clients,
            audit_listing,
            edit_leases,
            config.service,
            policies,
            moves=moves,
        ),
        *calls.bindings(),
    ]
    limits = call_limits(settings)
    shedder = shedder_of(settings)
    lag = LagSampler(shedder)

    async def start_config(app: ServerApp) -> None:
        # first: the other parts start with the configured values
        try:
            await config.start(app)
        except StartupError:
            await stores.close()  # no stop hook runs for a server that did not start
            raise
        apply_config(config, limits, manager, calls, chat, shedder)

    on_start: list[Hook] = [
        start_config,
        schema.start,
        start_audit,
        join_peers,
        presence.start,
        moved_homes.start,
        chat.start,
        calls.start,
        sessions.start,
    ]
    # stop hooks run last-first: sessions end (users go offline), presence delivers what is
    # queued, the peer links close, pending chat writes reach the database or the outbox,
    # then the connections close
    on_stop: list[Hook] = [
        close_connections,
        schema.stop,
        chat.stop,
        leave_peers,
        moved_homes.stop,
        presence.stop,
        sessions.stop,
        calls.stop,  # first: the users' sessions end, but their calls go on
        config.stop,
    ]
    if settings.lookup.address:  # registered with the Lookup; deregistered first on stop
        registration = LookupRegistration(
            settings,
            ServerRole.UCSERVER,
            lambda: int(config.live.value("server.capacity")),
            lambda: len(hub),
            draining=lambda: manager.draining,
            degraded=lambda: (
                not all(d.available for d in _dependencies(presence, chat, config, clients))
            ),
            outbox_depth=lambda: chat.outbox_depth,
            dependencies=lambda: _dependencies(presence, chat, config, clients),
        )
        on_start.append(registration.on_start)
        on_stop.append(registration.on_stop)
    app = ServerApp(
        "ucserver",
        settings,
        services,
        on_start=on_start,
        on_stop=on_stop,
        # inside the policy enforcer, which binds the verified caller they read
        interceptors=[
            LimitsInterceptor(limits, shedder=shedder),
            PolicyInterceptor(policies),
            AuditInterceptor(audit, UCSERVER_AUDIT_RULES),
        ],
        components={
            "sessions": sessions,
            "hub": hub,
            "presence": presence,
            "chat": chat,
            "calls": calls,
            "links": links,
            "router": router,
            "moves": moves,
            "limits": limits,
            "shedder": shedder,
            "lag": lag,
            "config": config,
            "audit": audit,
            "leases": edit_leases,
        },
        # tokens are verified by the sessions: cached until expiry, logouts refused at once
        verifier=manager,
        audit=audit,
        lag=lag,
    )
    observe_ucserver(app.metrics, hub, links, presence, chat)

    def health() -> list[DependencyHealth]:
        found = _dependencies(presence, chat, config, clients)
        if registration is not None and registration.registrar is not None:
            reachable = registration.registrar.reachable
            found.append(DependencyHealth("lookup", reachable, ""))
        return found

    observe_dependencies(app.metrics, health)
    return app
