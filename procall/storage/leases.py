"""The edit-lease store of servers that hold no other Redis store (the Directory)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from procall.leases import LeaseStore
from procall.settings import Settings
from procall.storage.redis.client import create_redis
from procall.storage.redis.leases import RedisLeaseStore

__all__ = ["open_lease_store"]


def open_lease_store(settings: Settings) -> tuple[LeaseStore, Callable[[], Awaitable[None]]]:
    """The shared edit-lease store on ``[redis]`` and the coroutine that closes it.

    Redis is not contacted here: a Directory starts while Redis is down; its lease checks
    answer UNAVAILABLE until Redis answers.
    """
    redis = create_redis(settings.redis)
    return RedisLeaseStore(redis), redis.aclose
