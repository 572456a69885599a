"""The configuration part of a UCServer: its live view, the cache file, changes heard
through Redis, periodic re-reads, and the parts that apply changes without a restart.

At start the server reads every property it runs with from the configuration database
and rewrites its cache file. When the database does not answer it runs from the cache
file instead and says so (``health_detail``; registered as degraded); with neither it
refuses to start (``StartupError``, one line). A cache file that fails its checksum or
does not parse is refused (logged) and replaced from the database. While running, a
change announced on Redis is re-read from the database and applied; a full re-read every
``[server] config_reread_seconds`` (and whenever the Redis subscription is made again)
catches what was missed. A database outage changes nothing for a running server; admin
writes meanwhile answer UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from procall.config import (
    UCSERVER_PROPERTIES,
    ConfigService,
    ConfigValue,
    LeaseCheck,
    LiveConfig,
    PropertyKey,
    PropertyRegistry,
)
from procall.errors import Unavailable
from procall.limits import CallLimits
from procall.servers.runtime.app import ServerApp, StartupError
from procall.settings import Settings
from procall.storage.config_cache import CacheFileError, ConfigCacheFile
from procall.storage.ucserver import UCServerStores

__all__ = ["ConfigComponent", "cache_path", "settings_defaults"]

_log = logging.getLogger(__name__)


def settings_defaults(settings: Settings) -> dict[str, str]:
    """The properties' defaults on this server: the values of its settings file."""
    s = settings
    return {
        "limits.user_rate": str(s.limits.user_rate),
        "limits.user_burst": str(s.limits.user_burst),
        "limits.source_rate": str(s.limits.source_rate),
        "limits.source_burst": str(s.limits.source_burst),
        "limits.streams_per_user": str(s.limits.streams_per_user),
        "limits.sessions_per_user": str(s.limits.sessions_per_user),
        "limits.stream_idle_seconds": str(s.limits.stream_idle_seconds),
        "limits.client_message_bytes": str(s.limits.client_message_bytes),
        "limits.overload_lag_ms": str(s.limits.overload_lag_ms),
        "limits.max_in_flight": str(s.limits.max_in_flight),
        "calls.ring_seconds": str(s.calls.ring_seconds),
        "calls.media_probe_seconds": str(s.calls.media_probe_seconds),
        "calls.ended_ttl_seconds": str(s.calls.ended_ttl_seconds),
        "chat.typing_ttl_seconds": str(s.chat.typing_ttl_seconds),
        "chat.request_id_ttl_seconds": str(s.chat.request_id_ttl_seconds),
        "auth.license_pool_size": str(s.auth.license_pool_size),
        "server.capacity": str(s.server.capacity),
        "chat.outbox_max_records": str(s.chat.outbox_max_records),
        "media.capacity": str(s.media.capacity),
    }


def cache_path(settings: Settings, server_id: str) -> Path:
    """Where ``server_id`` keeps its configuration cache file (see ``[server]``)."""
    configured = settings.server.config_cache_path
    if configured:
        return Path(configured.replace("{server_id}", server_id))
    outbox = Path(settings.chat.outbox_path.replace("{server_id}", server_id))
    return outbox.parent / f"{server_id}.config-cache.json"


class _Announce:
    """The ``ChangeNotifier`` of the service: apply here at once, then tell the others."""

    def __init__(self, component: ConfigComponent) -> None:
        self._component = component

    async def changed(self, key: PropertyKey, version: int) -> None:
        await self._component.heard(key)
        await self._component.stores.config_changes.changed(key, version)


class ConfigComponent:
    """See the module doc."""

    def __init__(
        self,
        settings: Settings,
        server_id: str,
        stores: UCServerStores,
        *,
        leases: LeaseCheck | None = None,
    ) -> None:
        self.stores = stores
        self.registry = PropertyRegistry(UCSERVER_PROPERTIES).with_defaults(
            settings_defaults(settings)
        )
        #: What this server runs with.
        self.live = LiveConfig(self.registry, server_id)
        self.cache = ConfigCacheFile(cache_path(settings, server_id), server_id)
        self.service = ConfigService(
            self.registry,
            stores.config,
            server_id,
            time.time,
            leases=leases,
            notifier=_Announce(self),
            local=self.live,
        )
        self._reread_seconds = settings.server.config_reread_seconds
        self._reread: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        #: Whether the values came from the cache file (the database did not answer at
        #: start) and have not been confirmed by the database since.
        self.from_cache = False

    @property
    def degraded(self) -> bool:
        """Whether the server runs from its cache file."""
        return self.from_cache

    @property
    def health_detail(self) -> str:
        """One line on where the configuration comes from."""
        if self.from_cache:
            return (
                f"configuration from the local cache file {self.cache.path} (the configuration "
                "database did not answer at start)"
            )
        return "configuration from the configuration database"

    # -- applying changes ------------------------------------------------------------------

    def apply_to_limits(self, limits: CallLimits) -> None:
        """Keep ``limits`` at the limits.* properties."""
        fields = {
            "limits.user_rate": "user_rate",
            "limits.user_burst": "user_burst",
            "limits.source_rate": "source_rate",
            "limits.source_burst": "source_burst",
            "limits.streams_per_user": "streams_per_user",
            "limits.stream_idle_seconds": "stream_idle_seconds",
        }
        for name, attribute in fields.items():

            def update(value: ConfigValue, attribute: str = attribute) -> None:
                changes: dict[str, Any] = {attribute: value}
                limits.reconfigure(dataclasses.replace(limits.config, **changes))

            self.live.watch(name, update)
            current = self.live.value(name)
            if getattr(limits.config, attribute) != current:
                update(current)

    def follow(self, name: str, setter: Callable[[ConfigValue], None]) -> None:
        """Call ``setter`` with ``name``'s value now and whenever it changes."""
        self.live.watch(name, setter)
        setter(self.live.value(name))

    # -- start and stop ---------------------------------------------------------------------

    async def load(self) -> None:
        """Read the configuration from the database, else from the cache file (see the
        module doc); ``StartupError`` with neither."""
        try:
            await self.stores.migrate_config()
            await self.live.refresh(self.stores.config)
        except Unavailable:
            self._load_cache()
            return
        self._check_old_cache()
        self._write_cache()

    def _load_cache(self) -> None:
        try:
            values = self.cache.read()
        except CacheFileError as exc:
            raise StartupError(
                f"the configuration database does not answer and there is no usable cache "
                f"file ({exc})"
            ) from None
        self.live.apply_all(values)
        self.from_cache = True
        _log.warning(
            "the configuration database does not answer: running from the cache file %s "
            "(%d values)",
            self.cache.path,
            len(values),
        )

    def _check_old_cache(self) -> None:
        if not self.cache.path.exists():
            return
        try:
            self.cache.read()
        except CacheFileError as exc:
            _log.warning("%s: refused; replaced from the configuration database", exc)

    def _write_cache(self) -> None:
        try:
            self.cache.write(self.live.snapshot())
        except OSError as exc:
            _log.warning(
                "configuration cache file %s not written (%s)", self.cache.path, exc.strerror
            )

    async def start(self, app: ServerApp) -> None:
        """Load, then listen for changes and re-read periodically."""
        await self.load()
        self.stores.config_changes.start(self.heard)
        self._reread = asyncio.create_task(self._keep_rereading(), name="config-reread")

    async def stop(self, app: ServerApp) -> None:
        """Stop listening and re-reading."""
        await self.stores.config_changes.stop()
        if self._reread is not None:
            self._reread.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reread
            self._reread = None

    # -- keeping up ------------------------------------------------------------------------

    async def heard(self, key: PropertyKey | None) -> None:
        """A change of ``key`` was announced (None: anything may have changed)."""
        try:
            async with self._lock:
                if key is None and self.from_cache:  # the schema may not exist yet
                    await self.stores.migrate_config()
                if key is None:
                    changed = await self.live.refresh(self.stores.config) > 0
                else:
                    changed = await self.live.refresh_one(self.stores.config, key)
                if changed or (key is None and self.from_cache):
                    self._write_cache()
                if key is None and self.from_cache:
                    self.from_cache = False
                    _log.info("the configuration database answers again: cache file refreshed")
        except Unavailable:
            pass  # the next re-read tries again; the values held stay in force

    async def reread(self) -> None:
        """Re-read every property now (what the periodic task does)."""
        await self.heard(None)

    async def _keep_rereading(self) -> None:
        while True:
            await asyncio.sleep(self._reread_seconds)
            try:
                await self.reread()
            except Exception:  # tried again at the next interval, whatever went wrong
                _log.exception("re-reading the configuration failed")
