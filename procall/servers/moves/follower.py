"""Keeps this UCServer's cached homes fresh: every announced move of a user (from any
server) drops the user's cached home here, so events for the user go to the new home
from then on instead of taking the detour through the old one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from procall.errors import Unavailable
from procall.servers.runtime.app import ServerApp
from procall.storage.redis.homes import RedisHomeStore
from procall.tasks import stop_task

__all__ = ["MovedHomesFollower"]

_log = logging.getLogger(__name__)


class MovedHomesFollower:
    """Start and stop hooks of the task following ``RedisHomeStore.follow_moved``."""

    def __init__(
        self, homes: RedisHomeStore, forget_home: Callable[[str], None], retry: float
    ) -> None:
        self._homes = homes
        self._forget = forget_home
        self._retry = retry
        self._task: asyncio.Task[None] | None = None

    async def start(self, app: ServerApp) -> None:
        """Follow the announcements in the background."""
        self._task = asyncio.create_task(self._follow(), name="moved-homes")

    async def _follow(self) -> None:
        while True:
            try:
                async for user_ids in self._homes.follow_moved():
                    for user_id in user_ids:
                        self._forget(user_id)
            except Unavailable:
                pass  # missed announcements: the router's cache lapses, the old home forwards
            except Exception:  # a background task must outlive any one failure
                _log.exception("following moved homes failed")
            await asyncio.sleep(self._retry)

    async def stop(self, app: ServerApp) -> None:
        """Stop following (bounded: closing a subscription can hang on a sick link)."""
        await stop_task(self._task, patience=2.0)
