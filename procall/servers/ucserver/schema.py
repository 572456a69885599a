"""The chat, journal and contacts schema of a UCServer, migrated as its own start hook.

A UCServer starts without its database (chat and contacts answer UNAVAILABLE until it
comes): when the database does not answer at start, the migration is retried every
interval until it succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from procall.errors import Unavailable
from procall.servers.runtime.app import ServerApp

__all__ = ["SchemaMigration"]

_log = logging.getLogger(__name__)


class SchemaMigration:
    """Runs ``migrate`` at start, and again every ``retry_interval`` until it succeeds."""

    def __init__(
        self, migrate: Callable[[], Awaitable[None]], name: str, retry_interval: float
    ) -> None:
        self._migrate = migrate
        self._name = name
        self._interval = retry_interval
        self._retry: asyncio.Task[None] | None = None
        #: Whether the schema is known to be up to date.
        self.done = False

    async def _attempt(self) -> bool:
        try:
            await self._migrate()
        except Unavailable:
            return False
        self.done = True
        return True

    async def start(self, app: ServerApp) -> None:
        """Migrate now; when the database does not answer, keep trying in the background."""
        if await self._attempt():
            return
        _log.warning("%s unavailable: schema check postponed", self._name)
        self._retry = asyncio.create_task(self._keep_trying(), name="schema-migration")

    async def _keep_trying(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                if await self._attempt():
                    _log.info("%s answers again: schema is up to date", self._name)
                    return
            except Exception:  # retried at the next interval, whatever went wrong
                _log.exception("migrating the %s failed", self._name)

    async def stop(self, app: ServerApp) -> None:
        """Stop retrying."""
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
            self._retry = None
