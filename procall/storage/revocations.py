"""The revocation store of servers that hold no sessions but check tokens (the Directory)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from procall.session.revocations import RevocationStore
from procall.settings import Settings
from procall.storage.redis.client import create_redis
from procall.storage.redis.revocations import RedisRevocationStore

__all__ = ["open_revocation_store"]


def open_revocation_store(
    settings: Settings,
) -> tuple[RevocationStore, Callable[[], Awaitable[None]]]:
    """The shared revocation store on ``[redis]`` and the coroutine that closes it.

    Redis is not contacted here: a server that only follows revocations starts while
    Redis is down and learns them once it answers.
    """
    redis = create_redis(settings.redis)
    return RedisRevocationStore(redis), redis.aclose
