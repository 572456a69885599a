"""Redis: the shared volatile state of the mesh."""

from procall.storage.redis.client import RedisUnavailableError, check_redis, create_redis

__all__ = ["RedisUnavailableError", "check_redis", "create_redis"]
