"""Configuration changes announced through Redis pub/sub (the ``ChangeNotifier`` of
``procall.config``) and the listener every UCServer runs.

A message names the property and its new version; the receiving servers re-read the
property from the configuration database (the message is a hint, never the value). Pub/sub
is fire-and-forget: a server that is cut off from Redis misses messages, so whenever its
subscription is (re)established the listener asks for a full re-read, and every server
re-reads everything periodically as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from procall.config.model import PropertyKey, Scope
from procall.tasks import stop_task

__all__ = ["CONFIG_CHANNEL", "RedisConfigChanges"]

_log = logging.getLogger(__name__)

#: The pub/sub channel of configuration changes.
CONFIG_CHANNEL = "procall:config:changes"
#: Seconds between attempts to subscribe again after Redis failed.
_RETRY_SECONDS = 1.0

#: Called with a changed property, or None for "re-read everything".
OnChange = Callable[[PropertyKey | None], Awaitable[None]]


class RedisConfigChanges:
    """Publishes configuration changes and listens for them."""

    def __init__(self, redis: aioredis.Redis, *, retry_seconds: float = _RETRY_SECONDS) -> None:
        self._redis = redis
        self._retry = retry_seconds
        self._task: asyncio.Task[None] | None = None

    async def changed(self, key: PropertyKey, version: int) -> None:
        """Announce ``key``'s new version (logged, never raised, when Redis is down)."""
        message = json.dumps(
            {
                "scope": key.scope.value,
                "server_id": key.server_id,
                "name": key.name,
                "version": version,
            }
        )
        try:
            await self._redis.publish(CONFIG_CHANNEL, message)
        except (RedisError, OSError) as exc:
            _log.warning(
                "configuration change of %s not announced: Redis unavailable (%s); other "
                "servers take it at their next re-read",
                key.resource,
                type(exc).__name__,
            )

    def start(self, on_change: OnChange) -> None:
        """Listen in the background until ``stop``."""
        if self._task is None:
            self._task = asyncio.create_task(self._listen(on_change), name="config-changes")

    async def stop(self) -> None:
        """Stop listening."""
        task, self._task = self._task, None
        await stop_task(task)

    async def _listen(self, on_change: OnChange) -> None:
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(CONFIG_CHANNEL)
                await on_change(None)  # whatever was missed while not subscribed
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None:
                        continue
                    key = _key_of(message.get("data"))
                    if key is not None:
                        await on_change(key)
            except (RedisError, OSError) as exc:
                _log.warning(
                    "configuration changes: Redis unavailable (%s); subscribing again",
                    type(exc).__name__,
                )
            except asyncio.CancelledError:
                raise
            except Exception:  # the listener must survive whatever one message does
                _log.exception("configuration changes: listener failed; subscribing again")
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(self._retry)


def _key_of(data: object) -> PropertyKey | None:
    try:
        document = json.loads(data if isinstance(data, str | bytes) else "")
        return PropertyKey(
            Scope(document["scope"]), str(document["server_id"]), str(document["name"])
        )
    except (ValueError, KeyError, TypeError):
        _log.warning("configuration changes: malformed message ignored")
        return None
