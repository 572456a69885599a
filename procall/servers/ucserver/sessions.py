"""The session part of a UCServer: the SessionService, the logged-on list and the upkeep.

The root builds the ``SessionManager`` (every part uses it); this part serves it and keeps
sessions, licenses and revocations alive in the shared store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from procall.admin_views.model import LoggedOnSession
from procall.api.session.v1 import session_pb2
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.errors import Unavailable
from procall.servers.runtime.app import ServerApp, binding
from procall.servers.runtime.grpc_server import ServiceBinding
from procall.servers.ucserver.session_servicer import Features, SessionServicer, add_session_service
from procall.session.hub import SessionHub
from procall.session.manager import SessionManager
from procall.session.tokens import SessionClaims
from procall.settings import Settings
from procall.storage.redis.licenses import LicensePool
from procall.storage.redis.revocations import RedisRevocationStore
from procall.storage.redis.sessions import RedisSessionRegistry
from procall.tasks import stop_task

__all__ = ["SessionComponent"]

_log = logging.getLogger(__name__)


class SessionComponent:
    """Serves the SessionService of a UCServer and keeps its sessions and licenses alive."""

    def __init__(
        self,
        settings: Settings,
        *,
        manager: SessionManager[session_pb2.Event],
        hub: SessionHub[session_pb2.Event],
        logged_on: RedisSessionRegistry,
        licenses: LicensePool,
        revocations: RedisRevocationStore,
        features: Features | None = None,
    ) -> None:
        self._settings = settings
        self._features = features
        self._task: asyncio.Task[None] | None = None
        self._follower: asyncio.Task[None] | None = None
        self._manager = manager
        self._hub = hub
        self._logged_on = logged_on
        self._licenses = licenses
        self._revocations = revocations

    def bindings(self) -> list[ServiceBinding]:
        """The SessionService binding."""
        return [
            binding(
                SessionServicer(self._manager, time.time, self._features),
                session_pb,
                add_session_service,
                "SessionService",
            ),
        ]

    @staticmethod
    def _entry(claims: SessionClaims, client_name: str) -> LoggedOnSession:
        return LoggedOnSession(
            claims.session_id,
            claims.user_id,
            claims.username,
            claims.home_server_id,
            client_name,
            claims.issued_at,
            claims.admin,
        )

    def _entries(self) -> list[LoggedOnSession]:
        return [self._entry(s.claims, s.client_name) for s in self._hub.sessions()]

    async def session_opened(self, claims: SessionClaims, client_name: str) -> None:
        """Publish the new session for admins (repaired by the upkeep if Redis is down)."""
        with contextlib.suppress(Unavailable):
            await self._logged_on.add(self._entry(claims, client_name))

    async def session_closed(self, claims: SessionClaims, last_of_user: bool) -> None:
        """Withdraw the session from the admins' view."""
        with contextlib.suppress(Unavailable):
            await self._logged_on.remove(claims.session_id)

    async def session_moved(self, claims: SessionClaims, last_of_user: bool) -> None:
        """The session now lives on the user's new home: withdraw it from this server's list."""
        await self.session_closed(claims, last_of_user)

    async def start(self, app: ServerApp) -> None:
        """Load the revoked sessions, publish the pool size and start the upkeep (session
        expiry, license renewal) and the revocation follower."""
        try:  # before the first client call, when Redis answers (else the follower loads)
            self._manager.revoked.merge(await self._revocations.load())
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
                    await self._manager.revoked_elsewhere(session_id, until)
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
                self._manager.revoked.prune(time.time())
                await self._manager.expire_lapsed(self._settings.auth.resume_window_seconds)
                await self._manager.save_revocations()
                await self._manager.renew_licenses()
                await self._logged_on.heartbeat(self._entries, len(self._hub))
                await self._publish_pool_size()
            except Unavailable:
                _log.warning("Redis unavailable: licenses are renewed when it returns")

    async def stop(self, app: ServerApp) -> None:
        """Stop the upkeep and release the sessions (clients reconnect and resynchronise)."""
        for task in (self._task, self._follower):
            # bounded: closing the follower's Redis subscription can hang on a sick link
            await stop_task(task, patience=2.0)
        with contextlib.suppress(Unavailable):
            await self._manager.save_revocations()
        with contextlib.suppress(Unavailable):
            await self._manager.shutdown()
