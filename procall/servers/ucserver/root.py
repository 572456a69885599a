"""Composition root of a UCServer (``procall serve ucserver``)."""

from __future__ import annotations

import asyncio
import logging

from procall.api.call.v1 import call_service_pb2 as call_pb
from procall.api.call.v1 import call_service_pb2_grpc as call_grpc
from procall.routing.models import ServerRole
from procall.servers.runtime.app import Hook, ServerApp, binding, ensure_server_id, not_yet_served
from procall.servers.runtime.redis_connect import connect_redis
from procall.servers.ucserver.chat import ChatComponent
from procall.servers.ucserver.presence import PresenceComponent
from procall.servers.ucserver.sessions import SessionComponent
from procall.servers.upstream.clients import UpstreamClients
from procall.servers.upstream.registration import LookupRegistration
from procall.settings import Settings
from procall.storage.sql.engine import SqlDatabase

__all__ = ["build_ucserver"]

_log = logging.getLogger(__name__)


async def build_ucserver(settings: Settings) -> ServerApp:
    """Wire the client-facing services, the admin service and the peer mesh."""
    server_id = ensure_server_id(settings, "ucserver")
    redis = await connect_redis(settings)
    app: ServerApp | None = None

    def address() -> str:
        return app.address if app is not None else ""

    clients = UpstreamClients(settings)
    database = SqlDatabase(
        settings.database.resolved("chat"),
        name="chat and journal database",
        connect_timeout=settings.database.connect_timeout,
    )
    sessions = SessionComponent(settings, redis, server_id, address, clients)
    presence = PresenceComponent(settings, redis, database, server_id, sessions.manager, clients)
    chat = ChatComponent(
        settings, redis, database, server_id, sessions.manager, presence.mesh, clients
    )

    async def close_connections(_: ServerApp) -> None:
        await clients.close()
        try:  # a database that stopped answering must not hold up the shutdown
            await asyncio.wait_for(database.dispose(), 5)
        except TimeoutError:
            _log.warning("%s did not close its connections in time", database.name)
        await redis.aclose()

    services = [
        *sessions.bindings(),
        *presence.bindings(),
        *chat.bindings(),
        binding(
            not_yet_served(call_grpc.CallServiceServicer),
            call_pb,
            call_grpc.add_CallServiceServicer_to_server,
            "CallService",
        ),
    ]
    on_start: list[Hook] = [presence.start, chat.start, sessions.start]
    # stop hooks run last-first: sessions end (users go offline), then the mesh, then pending
    # chat writes reach the database or the outbox, then the connections close
    on_stop: list[Hook] = [close_connections, chat.stop, presence.stop, sessions.stop]
    if settings.lookup.address:  # registered with the Lookup; deregistered first on stop
        registration = LookupRegistration(
            settings,
            ServerRole.UCSERVER,
            settings.server.capacity,
            lambda: len(sessions.manager.hub),
            degraded=lambda: presence.manager.degraded or not chat.writer.central_available,
            outbox_depth=lambda: chat.writer.depth,
        )
        on_start.append(registration.on_start)
        on_stop.append(registration.on_stop)
    app = ServerApp(
        "ucserver",
        settings,
        services,
        on_start=on_start,
        on_stop=on_stop,
        components={"sessions": sessions, "presence": presence, "chat": chat},
    )
    return app
