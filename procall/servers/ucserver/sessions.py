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
from procall.errors import Unavailable
from procall.servers.codecs.chat import delivery_key
from procall.servers.runtime.app import ServerApp, binding
from procall.servers.runtime.grpc_server import ServiceBinding
from procall.servers.ucserver.admin_servicer import AdminServicer
from procall.servers.ucserver.session_servicer import SessionServicer, add_session_service
from procall.servers.upstream.clients import UpstreamClients
from procall.session.hub import SessionHub
from procall.session.manager import SessionManager
from procall.session.tokens import SessionClaims, TokenSigner
from procall.settings import Settings
from procall.storage.redis.licenses import LicensePool
from procall.storage.redis.revocations import RedisRevocationStore
from procall.storage.redis.sessions import LoggedOn, RedisSessionRegistry

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
        clients: UpstreamClients,
    ) -> None:
        self._settings = settings
        self._task: asyncio.Task[None] | None = None
        secret = settings.auth.token_secret
        if not secret:
            secret = secrets.token_hex(32)
            _log.warning("auth.token_secret is not set: tokens only work on this one server")
        self._licenses = LicensePool(redis, server_id, ttl_seconds=settings.lookup.heartbeat_ttl)
        self._logged_on = RedisSessionRegistry(redis, server_id, settings.lookup.heartbeat_ttl)
        self._revocations = RedisRevocationStore(redis)
        self._follower: asyncio.Task[None] | None = None
        self._clients = clients
        self.manager: SessionManager[session_pb2.Event] = SessionManager(
            server_id=server_id,
            run_id=uuid.uuid4().hex[:12],
            own_address=address,
            hub=SessionHub[session_pb2.Event](
                time.time, settings.auth.replay_buffer_events, once_key=delivery_key
            ),
            signer=TokenSigner(secret, settings.auth.token_ttl_seconds),
            authenticator=clients.authenticator,
            locator=clients.locator,
            licenses=self._licenses,
            clock=time.time,
            revocations=self._revocations,
        )
        self.manager.observers.append(self)

    def bindings(self) -> list[ServiceBinding]:
        """The SessionService and AdminService bindings."""
        return [
            binding(
                SessionServicer(self.manager, time.time),
                session_pb,
                add_session_service,
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

    def _entries(self) -> list[LoggedOn]:
        return [self._entry(s.claims, s.client_name) for s in self.manager.hub.sessions()]

    async def session_opened(self, claims: SessionClaims, client_name: str) -> None:
        """Publish the new session for admins (repaired by the upkeep if Redis is down)."""
        with contextlib.suppress(Unavailable):
            await self._logged_on.add(self._entry(claims, client_name))

    async def session_closed(self, claims: SessionClaims, last_of_user: bool) -> None:
        """Withdraw the session from the admins' view."""
        with contextlib.suppress(Unavailable):
            await self._logged_on.remove(claims.session_id)

    async def start(self, app: ServerApp) -> None:
        """Load the revoked sessions, publish the pool size and start the upkeep (session
        expiry, license renewal) and the revocation follower."""
        try:  # before the first client call, when Redis answers (else the follower loads)
            self.manager.revoked.merge(await self._revocations.load())
        except Unavailable:
            _log.warning("Redis unavailable: revoked sessions are loaded when it returns")
        await self._publish_pool_size()
        self._task = asyncio.create_task(self._upkeep(), name="session-upkeep")
        self._follower = asyncio.create_task(self._follow_revocations(), name="revocations")

    async def _follow_revocations(self) -> None:
        """Learn the other servers' logouts as they happen (reloading after an outage); a
        session logged out elsewhere that lives here ends here."""
        while True:
            try:
                async for session_id, until in self._revocations.follow():
                    await self.manager.revoked_elsewhere(session_id, until)
            except Unavailable:
                pass
            except Exception:  # a background task must outlive any one failure
                _log.exception("following session revocations failed")
            await asyncio.sleep(self._settings.lookup.heartbeat_interval)

    async def _publish_pool_size(self) -> None:
        try:
            await self._licenses.set_total(self._settings.auth.license_pool_size)
        except Unavailable:
            _log.warning("Redis unavailable: the license pool size is published later")

    async def _upkeep(self) -> None:
        while True:
            await asyncio.sleep(self._settings.lookup.heartbeat_interval)
            try:
                self.manager.revoked.prune(time.time())
                await self.manager.expire_lapsed(self._settings.auth.resume_window_seconds)
                await self.manager.save_revocations()
                await self.manager.renew_licenses()
                await self._logged_on.heartbeat(self._entries, len(self.manager.hub))
                await self._publish_pool_size()
            except Unavailable:
                _log.warning("Redis unavailable: licenses are renewed when it returns")

    async def stop(self, app: ServerApp) -> None:
        """Stop the upkeep and release the sessions (clients reconnect and resynchronise)."""
        for task in (self._task, self._follower):
            if task is not None:
                task.cancel()
                # bounded: closing the follower's Redis subscription can hang on a sick link
                await asyncio.wait({task}, timeout=2.0)
        with contextlib.suppress(Unavailable):
            await self.manager.save_revocations()
        with contextlib.suppress(Unavailable):
            await self.manager.shutdown()
