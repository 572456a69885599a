"""Creating Redis clients from settings: a plain URL or Redis Sentinel."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from procall.settings import RedisSettings

__all__ = ["RedisUnavailableError", "check_redis", "create_redis", "describe_redis"]


class RedisUnavailableError(Exception):
    """Redis did not answer; the message names where it was expected."""


def describe_redis(settings: RedisSettings) -> str:
    """Where Redis is expected, without the password, for messages and logs."""
    if settings.sentinels:
        return f"Redis Sentinel {','.join(settings.sentinels)} (master {settings.sentinel_master})"
    parts = urlsplit(settings.url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _retry() -> Retry:
    """One quick retry of a command whose connection broke: after Redis restarted, a pooled
    connection from before fails once; a Redis that is down fails again at once."""
    return Retry(ExponentialBackoff(cap=0.1, base=0.01), retries=1)


def create_redis(settings: RedisSettings) -> aioredis.Redis:
    """A client for the configured Redis (through Sentinel when sentinels are set)."""
    timeout = settings.socket_timeout
    if settings.sentinels:
        hosts = []
        for item in settings.sentinels:
            host, _, port = item.rpartition(":")
            hosts.append((host or "127.0.0.1", int(port)))
        parts = urlsplit(settings.url)
        db = int(parts.path.lstrip("/") or 0)
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            hosts, socket_timeout=timeout, password=parts.password, db=db
        )
        client: aioredis.Redis = sentinel.master_for(
            settings.sentinel_master,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            max_connections=settings.max_connections,
            driver_info=None,  # no CLIENT SETINFO (redis-py reads package metadata each time)
            retry=_retry(),
            retry_on_error=[RedisConnectionError],
        )
        return client
    return aioredis.Redis.from_url(
        settings.url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=5,
        max_connections=settings.max_connections,
        driver_info=None,  # no CLIENT SETINFO (redis-py reads package metadata each time)
        retry=_retry(),
        retry_on_error=[RedisConnectionError],
    )


async def check_redis(client: aioredis.Redis, settings: RedisSettings) -> None:
    """Raise ``RedisUnavailableError`` unless Redis answers PING."""
    try:
        await client.ping()
    except (RedisError, OSError, ValueError) as exc:
        raise RedisUnavailableError(
            f"Redis at {describe_redis(settings)} does not answer ({type(exc).__name__})"
        ) from None
