"""Limits: request rates, request sizes, streams and sessions per user (transport-free).

The runtime's limits interceptor (``procall.servers.runtime.limits``) applies
``CallLimits`` to every call a server serves; the session cap lives with the
sessions (``procall.session.manager``) and login throttling with the Directory
(``procall.directory.throttle``). ``LoadShedder`` refuses new work while a whole
server is past its capacity.
"""

from procall.limits.buckets import KeyedBuckets, TokenBucket
from procall.limits.overload import LoadShedder, OverloadConfig
from procall.limits.policy import (
    CLIENT_API_PREFIX,
    DEFAULT_METHOD_MESSAGE_BYTES,
    CallLimits,
    LimitsConfig,
    StreamSlot,
    stream_idle,
)

__all__ = [
    "CLIENT_API_PREFIX",
    "DEFAULT_METHOD_MESSAGE_BYTES",
    "CallLimits",
    "KeyedBuckets",
    "LimitsConfig",
    "LoadShedder",
    "OverloadConfig",
    "StreamSlot",
    "TokenBucket",
    "stream_idle",
]
