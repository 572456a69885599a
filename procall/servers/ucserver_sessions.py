"""The session part of a UCServer: manager, servicer and its background upkeep."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import Callable

import redis.asyncio as aioredis

from procall.api.admin.v1 import admin_service_pb2 as admin_pb
from procall.api.admin.v1 import admin_service_pb2_grpc as admin_grpc
from procall.api.session.v1 import session_pb2
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.errors import Unavailable
from procall.servers.admin_servicer import AdminServicer
from procall.servers.app import ServerApp, binding
from procall.servers.clients.mesh import MeshClients
from procall.servers.runtime import ServiceBinding
from procall.servers.session_servicer import SessionServicer
from procall.session.hub import SessionHub
from procall.session.manager import SessionManager
from procall.session.tokens import SessionClaims, TokenSigner
from procall.settings import Settings
from procall.storage.redis.licenses import LicensePool
from procall.storage.redis.sessions import LoggedOn, RedisSessionDirectory

__all__ = ["SessionComponent"]

_log = logging.getLogger(__name__)


class SessionComponent:
    """Builds the SessionService of a UCServer and keeps its sessions and licenses alive."""

    def __init__(
        self,
        settings: Settings,
        redis: aioredis.Redis,
        server_id: str,
        address: Callable[[], str],
        clients: MeshClients,
    ) -> None:
        self._settings = settings
        self._task: asyncio.Task[None] | None = None
        secret = settings.auth.token_secret
        if not secret:
            secret = secrets.token_hex(32)
            _log.warning("auth.token_secret is not set: tokens only work on this one server")
        self._licenses = LicensePool(redis, server_id, ttl_seconds=settings.lookup.heartbeat_ttl)
        self._logged_on = RedisSessionDirectory(redis, server_id, settings.lookup.heartbeat_ttl)
        self._clients = clients
        self.manager: SessionManager[session_pb2.Event] = SessionManager(
            server_id=server_id,
            run_id=uuid.uuid4().hex[:12],
            own_address=address,
            hub=SessionHub[session_pb2.Event](time.time, settings.auth.replay_buffer_events),
            signer=TokenSigner(secret, settings.auth.token_ttl_seconds),
            authenticator=clients.authenticator,
            locator=clients.locator,
            licenses=self._licenses,
            clock=time.time,
        )
        self.manager.observers.append(self)

    def bindings(self) -> list[ServiceBinding]:
        """The SessionService and AdminService bindings."""
        return [
            binding(
                SessionServicer(self.manager, time.time),
                session_pb,
                session_grpc.add_SessionServiceServicer_to_server,
                "SessionService",
            ),
            binding(
                AdminServicer(self.manager, self._logged_on, self._licenses, self._clients),
                admin_pb,
                admin_grpc.add_AdminServiceServicer_to_server,
                "AdminService",
            ),
        ]

    @staticmethod
    def _entry(claims: SessionClaims, client_name: str) -> LoggedOn:
        return LoggedOn(
            claims.session_id,
            claims.user_id,
            claims.username,
            claims.home_server_id,
            client_name,
            claims.issued_at,
            claims.admin,
        )

    async def session_opened(self, claims: SessionClaims, client_name: str) -> None:
        """Publish the new session for admins (repaired by the upkeep if Redis is down)."""
        with contextlib.suppress(Unavailable):
            await self._logged_on.add(self._entry(claims, client_name))

    async def session_closed(self, claims: SessionClaims, last_of_user: bool) -> None:
        """Withdraw the session from the admins' view."""
        with contextlib.suppress(Unavailable):
            await self._logged_on.remove(claims.session_id)

    async def start(self, app: ServerApp) -> None:
        """Publish the pool size and start the upkeep (session expiry, license renewal)."""
        await self._publish_pool_size()
        self._task = asyncio.create_task(self._upkeep(), name="session-upkeep")

    async def _publish_pool_size(self) -> None:
        try:
            await self._licenses.set_total(self._settings.auth.license_pool_size)
        except Unavailable:
            _log.warning("Redis unavailable: the license pool size is published later")

    async def _upkeep(self) -> None:
        while True:
            await asyncio.sleep(self._settings.lookup.heartbeat_interval)
            try:
                await self.manager.expire_lapsed(self._settings.auth.resume_window_seconds)
                await self.manager.renew_licenses()
                await self._logged_on.publish(
                    self._entry(s.claims, s.client_name) for s in self.manager.hub.sessions()
                )
                await self._publish_pool_size()
            except Unavailable:
                _log.warning("Redis unavailable: licenses are renewed when it returns")

    async def stop(self, app: ServerApp) -> None:
        """Stop the upkeep and release the sessions (clients reconnect and resynchronise)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Unavailable):
            await self.manager.shutdown()
