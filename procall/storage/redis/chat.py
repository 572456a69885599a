"""The volatile, shared chat state in Redis (the ``ChatState`` port).

Key layout (all under ``procall:chat:``; ``{<cid>}`` is a Redis Cluster hash tag, so every
key of one conversation lives in one slot and each script touches a single slot):

- ``procall:chat:{<cid>}:seq`` — the conversation's message id sequence (a string
  integer, no TTL). It is created only from a seed (the newest id stored in SQL), so
  after Redis restarted empty the ids continue after the stored ones instead of
  restarting at 1.
- ``procall:chat:{<cid>}:req:<len(sender)>:<sender>:<request_id>`` — one send's
  idempotency record, a hash: ``id`` message id, ``at`` created_at (``repr`` of the float,
  so it round-trips exactly), ``ok`` 1 once the message is stored or durably queued.
  It expires ``request_ttl`` after the first send. The sender's length keeps
  (sender, request id) pairs containing ``:`` apart.
- ``procall:chat:{<cid>}:members`` — the cached member ids in join order, a JSON
  array in a string (replaced whole by one ``SET``); it expires after ``members_ttl``.
- ``procall:chat:{<cid>}:unread`` — a hash: user id -> unread count of that member.
  Kept per conversation (not per user) so that the per-message increment of all members
  is one single-slot script. A missing field means "unknown, count in SQL": increments
  never create one. It expires ``unread_ttl`` after its last change.
- ``procall:chat:{<cid>}:typing:<user_id>`` — set while the user types, with a PX TTL.

Every method is one round trip (a single command, a pipeline or a script; a script
costs one more only when Redis does not know it yet). Every Redis or socket failure
is ``Unavailable`` naming Redis.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from procall.chat.ports import Allocation, MemberAllocation, SendConfirmation
from procall.errors import Unavailable

__all__ = ["RedisChatState"]

_PREFIX = "procall:chat:"
_BACKEND = "Redis"
#: Default lifetime of the cached member list.
MEMBERS_TTL = 24 * 3600.0
#: Default lifetime of a conversation's unread counters after their last change.
UNREAD_TTL = 7 * 24 * 3600.0

# KEYS: seq, request; ARGV: now (repr), seed ('' when none), request ttl (ms)
# -> nil when the sequence is unknown and no seed was given, else {id, at, ok, duplicate}
_ALLOCATE = """
local first = redis.call('HMGET', KEYS[2], 'id', 'at', 'ok')
if first[1] then return {first[1], first[2], first[3], 1} end
local seq = redis.call('GET', KEYS[1])
if ARGV[2] ~= '' then
  -- another server may have seeded (and allocated) meanwhile: never go back
  if (not seq) or tonumber(ARGV[2]) > tonumber(seq) then redis.call('SET', KEYS[1], ARGV[2]) end
elseif not seq then
  return false
end
local id = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], 'id', id, 'at', ARGV[1], 'ok', '0')
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return {id, ARGV[1], '0', 0}
"""

# KEYS: members, seq, request; ARGV: sender, now (repr), request ttl (ms)
# -> {0} members not cached; {1, members} the sender is not a cached member;
#    {2, members} the sequence is unknown; else {3, members, id, at, ok, duplicate}.
# The membership check of a send and its allocation in one round trip; nothing is
# allocated for a sender the cache does not list (the caller asks SQL then).
_ALLOCATE_AS_MEMBER = """
local members = redis.call('GET', KEYS[1])
if not members then return {0} end
local found = false
for _, member in ipairs(cjson.decode(members)) do
  if member == ARGV[1] then found = true; break end
end
if not found then return {1, members} end
local first = redis.call('HMGET', KEYS[3], 'id', 'at', 'ok')
if first[1] then return {3, members, first[1], first[2], first[3], 1} end
if not redis.call('GET', KEYS[2]) then return {2, members} end
local id = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[3], 'id', id, 'at', ARGV[2], 'ok', '0')
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return {3, members, id, ARGV[2], '0', 0}
"""

# KEYS: request, unread; ARGV: request ttl (ms), unread ttl (ms), user ids...
# -> 1 when the record was confirmed now, 0 when it was already (or does not exist).
# The record keeps its TTL; one without a TTL (never written by allocate) gets one.
# Unread counters move only on the first confirmation, and only where they are known.
_CONFIRM = """
local ok = redis.call('HGET', KEYS[1], 'ok')
if (not ok) or ok == '1' then return 0 end
redis.call('HSET', KEYS[1], 'ok', '1')
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local n = 0
for i = 3, #ARGV do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 then
    redis.call('HINCRBY', KEYS[2], ARGV[i], 1)
    n = n + 1
  end
end
if n > 0 then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
return 1
"""

# KEYS: seq; ARGV: at least -> the sequence after the call
_ENSURE_SEQUENCE = """
local seq = redis.call('GET', KEYS[1])
if (not seq) or tonumber(ARGV[1]) > tonumber(seq) then
  redis.call('SET', KEYS[1], ARGV[1])
  return tonumber(ARGV[1])
end
return tonumber(seq)
"""

# KEYS: unread; ARGV: ttl (ms), user ids... -> how many counters were incremented
_ADD_UNREAD = """
local n = 0
for i = 2, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('HINCRBY', KEYS[1], ARGV[i], 1)
    n = n + 1
  end
end
if n > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""


def _conversation(conversation_id: str) -> str:
    return f"{_PREFIX}{{{conversation_id}}}:"


def _request_key(conversation_id: str, sender_id: str, request_id: str) -> str:
    return f"{_conversation(conversation_id)}req:{len(sender_id)}:{sender_id}:{request_id}"


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class RedisChatState:
    """Message id sequences, idempotency records, member cache, unread and typing in Redis.

    ``members_ttl`` and ``unread_ttl`` (seconds) bound how long unused cached members and
    counters are kept; both are rebuilt from SQL when missing.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        members_ttl: float = MEMBERS_TTL,
        unread_ttl: float = UNREAD_TTL,
    ) -> None:
        self._redis = redis
        self._members_ttl_ms = _ms(members_ttl)
        self._unread_ttl_ms = _ms(unread_ttl)
        self._allocate = redis.register_script(_ALLOCATE)
        self._allocate_as_member = redis.register_script(_ALLOCATE_AS_MEMBER)
        self._confirm = redis.register_script(_CONFIRM)
        self._add_unread = redis.register_script(_ADD_UNREAD)
        self._ensure_sequence = redis.register_script(_ENSURE_SEQUENCE)

    async def allocate(
        self,
        conversation_id: str,
        sender_id: str,
        request_id: str,
        now: float,
        seed: int | None,
        request_ttl: float,
    ) -> Allocation | None:
        """Hand out the next message id, or the first one's for a repeated request id.

        None when the sequence is unknown (Redis restarted empty) and no ``seed`` was
        given; with a seed the sequence continues after ``max(seed, current)``.
        """
        base = _conversation(conversation_id)
        try:
            reply = await self._allocate(
                keys=[base + "seq", _request_key(conversation_id, sender_id, request_id)],
                args=[
                    repr(float(now)),
                    "" if seed is None else str(int(seed)),
                    _ms(request_ttl),
                ],
            )
        except (RedisError, OSError):
            raise Unavailable.backend(_BACKEND) from None
        if reply is None:
            return None
        message_id, created_at, persisted, duplicate = reply
        return Allocation(
            message_id=int(message_id),
            created_at=float(_text(created_at)),
            duplicate=bool(int(duplicate)),
            persisted=_text(persisted) == "1",
        )

    async def allocate_as_member(
        self,
        conversation_id: str,
        sender_id: str,
        request_id: str,
        now: float,
        request_ttl: float,
    ) -> MemberAllocation:
        """The cached members and, when the sender is one of them and the sequence is
        known, the send's message id (the first one's for a repeated request id): one
        script, so a send costs one round trip here in the common case."""
        base = _conversation(conversation_id)
        try:
            reply = await self._allocate_as_member(
                keys=[
                    base + "members",
                    base + "seq",
                    _request_key(conversation_id, sender_id, request_id),
                ],
                args=[sender_id, repr(float(now)), _ms(request_ttl)],
            )
        except (RedisError, OSError):
            raise Unavailable.backend(_BACKEND) from None
        if int(reply[0]) == 0:
            return MemberAllocation(None, None)
        members = tuple(str(member) for member in json.loads(reply[1]))
        if int(reply[0]) != 3:
            return MemberAllocation(members, None)
        message_id, created_at, persisted, duplicate = reply[2:6]
        allocation = Allocation(
            message_id=int(message_id),
            created_at=float(_text(created_at)),
            duplicate=bool(int(duplicate)),
            persisted=_text(persisted) == "1",
        )
        return MemberAllocation(members, allocation)

    async def confirm(
        self,
        conversation_id: str,
        sender_id: str,
        request_id: str,
        request_ttl: float,
        unread_for: Sequence[str] = (),
    ) -> None:
        """Mark the send of this request id stored or durably queued (the record keeps
        its TTL; nothing happens when it is gone) and, on the first confirmation only,
        count the message unread for ``unread_for`` where their counters are known."""
        await self.confirm_many(
            [
                SendConfirmation(
                    conversation_id, sender_id, request_id, request_ttl, tuple(unread_for)
                )
            ]
        )

    async def confirm_many(self, confirmations: Sequence[SendConfirmation]) -> None:
        """``confirm`` for several sends in one round trip: a pipeline of the single-slot
        confirmation script, one call per send (loaded again after a Redis restart)."""
        if not confirmations:
            return
        try:
            for attempt in (1, 2):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for item in confirmations:
                        pipe.evalsha(
                            self._confirm.sha,
                            2,
                            _request_key(item.conversation_id, item.sender_id, item.request_id),
                            _conversation(item.conversation_id) + "unread",
                            _ms(item.request_ttl),
                            self._unread_ttl_ms,
                            *dict.fromkeys(item.unread_for),
                        )
                    results = await pipe.execute(raise_on_error=False)
                if attempt == 1 and any(isinstance(r, NoScriptError) for r in results):
                    # Redis restarted: load the script again; confirming twice is harmless
                    await self._redis.script_load(_CONFIRM)
                    continue
                failed = next((r for r in results if isinstance(r, Exception)), None)
                if failed is not None:
                    raise failed
                return
        except (RedisError, OSError):
            raise Unavailable.backend(_BACKEND) from None

    async def ensure_sequence(self, conversation_id: str, at_least: int) -> None:
        """Make the sequence known, continuing after ``at_least`` unless already further."""
        try:
            await self._ensure_sequence(
                keys=[_conversation(conversation_id) + "seq"], args=[int(at_least)]
            )
        except (RedisError, OSError):
            raise Unavailable.backend(_BACKEND) from None

    async def members(self, conversation_id: str) -> tuple[str, ...] | None:
        """The cached members in join order, or None when not cached."""
        try:
            raw = await self._redis.get(_conversation(conversation_id) + "members")
        except (RedisError, OSError):
            raise Unavailable.backend(_BACKEND) from None
        if raw is None:
            return None
        return tuple(str(member) for member in json.loads(raw))

    async def set_members(self, conversation_id: str, member_ids: Sequence[str]) -> None:
        """Cache the members in join order, replacing what was cached (one ``SET``)."""
        try:
            await self._redis.set(
                _conversation(conversation_id) + "members",
                json.dumps(list(member_ids), separators=(",", ":")),
                px=self._members_ttl_ms,
            )
        except (RedisError, OSError):
            raise Unavailable.backend(_BACKEND) from None

    async def add_unread(self, conversation_id: str, user_ids: Sequence[str]) -> None:
        """One more unread message for each user whose counter is known (others are left
        unknown: they are counted in SQL when next needed)."""
        users = list(dict.fromkeys(user_ids))
        if not users:
            return
        try:
            await self._add_unread(
                keys=[_conversation(conversation_id) + "unread"],
                args=[self._unread_ttl_ms, *users],
            )
        except (RedisError, OSError):
            raise Unavailable.backend(_BACKEND) from None

    async def unread(self, user_id: str, conversation_ids: Sequence[str]) -> dict[str, int]:
        """The user's known counters of these conversations (unknown ones are left out)."""
        ids = list(dict.fromkeys(conversation_ids))
        if not ids:
            return {}
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for conversation_id in ids:
                    pipe.hget(_conversation(conversation_id) + "unread", user_id)
                values = await pipe.execute()
        except (RedisError, OSError):
            raise Unavailable.backend(_BACKEND) from None
        return {
            conversation_id: int(value)
            for conversation_id, value in zip(ids, values, strict=True)
            if value is not None
        }

    async def set_unread(self, user_id: str, counts: Mapping[str, int]) -> None:
        """Set the user's counters (after counting in SQL, or after a read)."""
        if not counts:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for conversation_id, count in counts.items():
                    key = _conversation(conversation_id) + "unread"
                    pipe.hset(key, user_id, int(count))
                    pipe.pexpire(key, self._unread_ttl_ms)
                await pipe.execute()
        except (RedisError, OSError):
            raise Unavailable.backend(_BACKEND) from None

    async def forget_unread(self, user_id: str, conversation_ids: Sequence[str]) -> None:
        """Drop the user's counters of these conversations (counted in SQL when next needed)."""
        if not conversation_ids:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for conversation_id in dict.fromkeys(conversation_ids):
                    pipe.hdel(_conversation(conversation_id) + "unread", user_id)
                await pipe.execute()
        except (RedisError, OSError):
            raise Unavailable.backend(_BACKEND) from None

    async def set_typing(self, conversation_id: str, user_id: str, ttl: float) -> None:
        """The user types for ``ttl`` seconds unless renewed."""
        try:
            await self._redis.set(
                f"{_conversation(conversation_id)}typing:{user_id}", "1", px=_ms(ttl)
            )
        except (RedisError, OSError):
            raise Unavailable.backend(_BACKEND) from None

    async def clear_typing(self, conversation_id: str, user_id: str) -> bool:
        """The user stopped typing; False when no indication was set."""
        try:
            deleted = await self._redis.delete(f"{_conversation(conversation_id)}typing:{user_id}")
        except (RedisError, OSError):
            raise Unavailable.backend(_BACKEND) from None
        return bool(deleted)
