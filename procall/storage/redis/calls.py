"""The shared call state in Redis (the ``CallStore`` port).

Key layout (all under ``procall:call:``):

- ``procall:call:{<call_id>}`` — the call, a JSON object with its ``version``; expires
  (PX) unless refreshed: every change sets the lifetime the use cases ask for.
- ``procall:call:req:<len(caller)>:<caller>:<request_id>`` — the call id a PlaceCall
  request made (for idempotent retries); expires after the request TTL.
- ``procall:call:user:<user_id>`` — a set of the ids of the user's calls that have not
  ended. Entries are hints: a read drops ids whose call expired or ended, so the index
  never has to be updated in the same script as the call (each script touches one key).

Changes are compare-and-set scripts on the call's key alone: a change is stored only
over the version it was based on. Every Redis or socket failure is ``Unavailable``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from procall.calls.model import Call, CallState, EndReason
from procall.errors import FailedPrecondition, Unavailable

__all__ = ["RedisCallStore", "decode_call", "encode_call"]

_PREFIX = "procall:call:"
_BACKEND = "Redis"

# KEYS: request, call; ARGV: call id, call json, call ttl (ms), request ttl (ms)
# -> {call id, stored json or false}: the existing call when the request made one before
_CREATE = """
local earlier = redis.call('GET', KEYS[1])
if earlier then
  return {earlier, redis.call('GET', ARGV[5] .. earlier .. '}')}
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
return {ARGV[1], ARGV[2]}
"""
# the same without a request id
_CREATE_PLAIN = """
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return {ARGV[1], ARGV[2]}
"""

# KEYS: call; ARGV: new json, expected stored version, ttl (ms) -> 1 stored, 0 stale
_REPLACE = """
local stored = redis.call('GET', KEYS[1])
if not stored then return 0 end
if tostring(cjson.decode(stored)['version']) ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""


def _call_key(call_id: str) -> str:
    return f"{_PREFIX}{{{call_id}}}"


def _user_key(user_id: str) -> str:
    return f"{_PREFIX}user:{user_id}"


def _request_key(caller: str, request_id: str) -> str:
    return f"{_PREFIX}req:{len(caller)}:{caller}:{request_id}"


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def encode_call(call: Call) -> str:
    """The stored JSON form of a call."""
    return json.dumps(
        {
            "id": call.call_id,
            "caller": call.caller,
            "callee": call.callee,
            "target": call.target,
            "state": int(call.state),
            "created": call.create_time,
            "caller_session": call.caller_session,
            "answered_by": call.answered_by,
            "answered_session": call.answered_session,
            "end_reason": int(call.end_reason),
            "media": call.media_server_id,
            "media_address": call.media_address,
            "video": call.video,
            "ring_time": call.ring_time,
            "answered": call.answer_time,
            "ended": call.end_time,
            "forwarded_from": list(call.forwarded_from),
            "request_id": call.request_id,
            "no_answer_target": call.no_answer_target,
            "no_answer_seconds": call.no_answer_seconds,
            "failed_media": list(call.failed_media),
            "trace": dict(call.trace_context),
            "version": call.version,
        },
        separators=(",", ":"),
    )


def decode_call(text: str | bytes) -> Call:
    """A call from its stored JSON form."""
    raw: dict[str, Any] = json.loads(text)
    return Call(
        call_id=raw["id"],
        caller=raw["caller"],
        callee=raw["callee"],
        target=raw["target"],
        state=CallState(raw["state"]),
        create_time=raw["created"],
        caller_session=raw.get("caller_session", ""),
        answered_by=raw.get("answered_by", ""),
        answered_session=raw.get("answered_session", ""),
        end_reason=EndReason(raw.get("end_reason", 0)),
        media_server_id=raw.get("media", ""),
        media_address=raw.get("media_address", ""),
        video=bool(raw.get("video", False)),
        ring_time=raw.get("ring_time", raw["created"]),
        answer_time=raw.get("answered"),
        end_time=raw.get("ended"),
        forwarded_from=tuple(raw.get("forwarded_from", ())),
        request_id=raw.get("request_id", ""),
        no_answer_target=raw.get("no_answer_target", ""),
        no_answer_seconds=float(raw.get("no_answer_seconds", 0.0)),
        failed_media=tuple(raw.get("failed_media", ())),
        trace_context=tuple(sorted(raw.get("trace", {}).items())),
        version=int(raw["version"]),
    )


class RedisCallStore:
    """Calls shared by every UCServer, in Redis."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._create = redis.register_script(_CREATE)
        self._create_plain = redis.register_script(_CREATE_PLAIN)
        self._replace = redis.register_script(_REPLACE)

    async def create(self, call: Call, ttl: float, request_ttl: float) -> Call:
        """Store a new call (or return the one its request id made before)."""
        text = encode_call(call)
        try:
            if call.request_id:
                keys = [_request_key(call.caller, call.request_id), _call_key(call.call_id)]
                args: list[str | int] = [
                    call.call_id,
                    text,
                    _ms(ttl),
                    _ms(request_ttl),
                    _PREFIX + "{",
                ]
                call_id, stored = await self._create(keys=keys, args=args)
            else:
                keys = [_call_key(call.call_id)]
                call_id, stored = await self._create_plain(
                    keys=keys, args=[call.call_id, text, _ms(ttl)]
                )
            result = decode_call(stored) if stored else None
            if result is None or not result.ended:
                await self._index(call if result is None else result, ttl)
        except (RedisError, OSError):
            raise Unavailable.backend(_BACKEND) from None
        if result is None:  # the earlier call of this request expired: nothing to return
            raise FailedPrecondition(
                f"the call of request {call.request_id!r} is over; use a new request id",
                metadata={"call_id": _text(call_id)},
            )
        return result

    async def _index(self, call: Call, ttl: float) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id in call.parties():
                pipe.sadd(_user_key(user_id), call.call_id)
                pipe.pexpire(_user_key(user_id), _ms(ttl))
            await pipe.execute()

    async def by_request(self, caller: str, request_id: str) -> Call | None:
        """The call a caller's request id made, if still known."""
        try:
            call_id = await self._redis.get(_request_key(caller, request_id))
            if call_id is None:
                return None
            text = await self._redis.get(_call_key(_text(call_id)))
        except (RedisError, OSError):
            raise Unavailable.backend(_BACKEND) from None
        return decode_call(text) if text is not None else None

    async def get(self, call_id: str) -> Call | None:
        """One call, None when unknown or expired."""
        try:
            text = await self._redis.get(_call_key(call_id))
        except (RedisError, OSError):
            raise Unavailable.backend(_BACKEND) from None
        return decode_call(text) if text is not None else None

    async def replace(self, call: Call, ttl: float) -> bool:
        """Compare-and-set: store ``call`` over version ``call.version - 1``."""
        try:
            stored = await self._replace(
                keys=[_call_key(call.call_id)],
                args=[encode_call(call), str(call.version - 1), _ms(ttl)],
            )
            if not stored:
                return False
            if call.ended:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for user_id in call.notified():
                        pipe.srem(_user_key(user_id), call.call_id)
                    await pipe.execute()
            else:
                await self._index(call, ttl)
        except (RedisError, OSError):
            raise Unavailable.backend(_BACKEND) from None
        return True

    async def active_of(self, user_id: str) -> list[Call]:
        """The user's calls that have not ended (stale index entries are dropped)."""
        try:
            ids = [_text(i) for i in await self._redis.smembers(_user_key(user_id))]
            if not ids:
                return []
            texts = await self._redis.mget([_call_key(i) for i in ids])
            calls = [decode_call(t) if t is not None else None for t in texts]
            stale = [
                i
                for i, c in zip(ids, calls, strict=True)
                if c is None or c.ended or not c.is_party(user_id)
            ]
            if stale:
                await self._redis.srem(_user_key(user_id), *stale)
        except (RedisError, OSError):
            raise Unavailable.backend(_BACKEND) from None
        return [c for c in calls if c is not None and not c.ended and c.is_party(user_id)]

    async def refresh(self, calls: Sequence[Call], ttl: float) -> None:
        """Extend the lifetime of live calls and of their parties' indexes."""
        if not calls:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for call in calls:
                    pipe.pexpire(_call_key(call.call_id), _ms(ttl))
                    for user_id in call.parties():
                        pipe.pexpire(_user_key(user_id), _ms(ttl))
                await pipe.execute()
        except (RedisError, OSError):
            raise Unavailable.backend(_BACKEND) from None


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
