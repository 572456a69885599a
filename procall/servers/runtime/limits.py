"""The limits interceptor: rates, request sizes, streams per user and idle streams.

It wraps every method handler (keeping its kind: a coroutine stays a coroutine,
an async generator stays an async generator, which the aio server relies on)
and applies ``procall.limits.CallLimits`` to each call:

* before the handler runs, the caller's request rate (per user for a session,
  per network source for anonymous calls) of the client-facing ``procall.api.*``
  methods (mesh services, mesh methods, administrators, health and reflection are
  not rate-limited) and, for server-streaming methods, the
  user's open-stream count;
* each request message against the method's size limit, before it is decoded;
* for client-streaming methods, an idle bound: a caller that sends nothing for
  ``stream_idle_seconds`` has its call ended with UNAVAILABLE (``STREAM_IDLE``).

The caller is the one the policy enforcer verified and bound
(``procall.servers.runtime.auth``); this interceptor therefore sits inside it in
the server's interceptor list.
Errors are domain errors, mapped by the error interceptor around everything.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from procall.limits import (
    CLIENT_API_PREFIX,
    CallLimits,
    LimitsConfig,
    LoadShedder,
    StreamSlot,
    stream_idle,
)
from procall.servers.runtime.auth import current_claims_or_none, current_service
from procall.servers.runtime.handlers import WrappedHandlers
from procall.servers.runtime.overload import is_sheddable
from procall.session.tokens import SessionClaims
from procall.settings import ConfigError, Settings

__all__ = ["LimitsInterceptor", "call_limits", "source_of"]

Context = grpc.aio.ServicerContext[Any, Any]


def source_of(peer: str) -> str:
    """The network source of a grpc peer string, without the port
    (``ipv4:10.0.0.7:51234`` -> ``ipv4:10.0.0.7``, ``ipv6:[::1]:5`` -> ``ipv6:[::1]``)."""
    if peer.startswith(("ipv4:", "ipv6:")):
        return peer.rsplit(":", 1)[0]
    return peer


class _TooLarge:
    """Stands in for a request message above the method's limit."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size


class _IdleWatch:
    """Cancels the handler's task once the caller has sent nothing for ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self.last = self._loop.time()
        self.expired = False
        self._handle = self._loop.call_at(self.last + seconds, self._check)

    def _check(self) -> None:
        due = self.last + self._seconds
        if self._loop.time() < due:
            self._handle = self._loop.call_at(due, self._check)
            return
        self.expired = True
        if self._task is not None:
            self._task.cancel()

    def touch(self) -> None:
        """The caller sent something."""
        self.last = self._loop.time()

    def stop(self) -> None:
        """The call ended."""
        self._handle.cancel()

    def uncancel(self) -> None:
        """Take back the cancellation this watch caused, so the call can end cleanly."""
        if self._task is not None:
            self._task.uncancel()


class LimitsInterceptor(grpc.aio.ServerInterceptor):
    """Applies ``CallLimits`` to every call (see the module doc)."""

    def __init__(
        self,
        limits: CallLimits,
        *,
        limit_anonymous: bool = True,
        shedder: LoadShedder | None = None,
    ) -> None:
        """``limit_anonymous`` False leaves calls without a session to other guards (the
        Directory: its anonymous callers are UCServers, or refused by the enforcer).
        ``shedder`` refuses new unary client calls while the server is past its capacity
        (``procall.limits.overload``)."""
        self.limits = limits
        self._limit_anonymous = limit_anonymous
        self._shedder = shedder
        self._wrapped = WrappedHandlers(self._wrap)

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        # the wrapper depends on the method only: built once per method (this runs per call)
        return self._wrapped.get(handler, handler_call_details.method)

    def _wrap(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        limit = self.limits.message_limit(method)
        # the client- and admin-facing API; mesh methods are bounded by the servers that call
        # them, health is polled by orchestrators, reflection serves tools
        rated = method.startswith(CLIENT_API_PREFIX)
        replaced: dict[str, Any] = {}
        if limit is not None and handler.request_deserializer is not None:
            replaced["request_deserializer"] = _sized(handler.request_deserializer, limit)
        streaming_in = handler.request_streaming
        streaming_out = handler.response_streaming
        shed = self._shedder is not None and is_sheddable(method)
        if not streaming_in and not streaming_out:
            replaced["unary_unary"] = self._unary(handler.unary_unary, method, limit, rated, shed)
        elif streaming_in and not streaming_out:
            replaced["stream_unary"] = self._unary(handler.stream_unary, method, limit, rated, shed)
        elif not streaming_in:
            replaced["unary_stream"] = self._stream(handler.unary_stream, method, limit, rated)
        else:
            replaced["stream_stream"] = self._stream(handler.stream_stream, method, limit, rated)
        # NamedTuple._replace is grpc's documented way of wrapping a handler
        wrapped: grpc.RpcMethodHandler[Any, Any] = handler._replace(**replaced)  # type: ignore[attr-defined]
        return wrapped

    # -- the checks -----------------------------------------------------------------------

    def _claims(self, context: Context) -> SessionClaims | None:
        return current_claims_or_none()

    def _admit(self, context: Context, rated: bool) -> SessionClaims | None:
        """Rate-check the call; returns the caller's session, if any."""
        claims = self._claims(context)
        if claims is None and not self._limit_anonymous:
            return None
        if rated and current_service() is None and (claims is None or not claims.admin):
            self.limits.admit(
                user_id=claims.user_id if claims is not None else None,
                source=source_of(context.peer() or ""),
            )
        return claims

    def _take_slot(self, claims: SessionClaims | None) -> LoadShedder | None:
        """Count the call in progress with the shedder (refused while overloaded); the
        shedder to tell when it ends, None for callers that are never refused."""
        shedder = self._shedder
        if shedder is None or current_service() is not None or (claims and claims.admin):
            return None
        shedder.admit()
        return shedder

    def _open_stream(self, claims: SessionClaims | None) -> StreamSlot | None:
        if claims is None or current_service() is not None:
            return None
        return self.limits.open_stream(claims.user_id)

    def _checked_request(
        self, request: Any, method: str, limit: int | None
    ) -> tuple[Any, _IdleWatch | None]:
        """The request a handler receives, and the idle watch of a request stream: streams
        are checked message by message, a single request over ``limit`` is refused."""
        if hasattr(request, "__aiter__"):
            idle = self.limits.config.stream_idle_seconds
            watch = _IdleWatch(idle) if idle > 0 else None
            return _checked(request, method, self.limits, watch), watch
        if isinstance(request, _TooLarge):
            raise self.limits.too_large(method, request.size, limit or 0)
        return request, None

    # -- the wrappers ---------------------------------------------------------------------

    def _unary(
        self, behaviour: Any, method: str, limit: int | None, rated: bool, shed: bool
    ) -> Callable[..., Any]:
        limits = self.limits
        idle = limits.config.stream_idle_seconds

        async def handler(request: Any, context: Context) -> Any:
            claims = self._admit(context, rated)
            slot = self._take_slot(claims) if shed else None
            watch: _IdleWatch | None = None
            try:
                request, watch = self._checked_request(request, method, limit)
                result = behaviour(request, context)
                if inspect.isawaitable(result):
                    result = await result
                return result
            except asyncio.CancelledError:
                if watch is not None and watch.expired:
                    watch.uncancel()
                    raise stream_idle(idle) from None
                raise
            finally:
                if watch is not None:
                    watch.stop()
                if slot is not None:
                    slot.finished()

        return handler

    def _stream(
        self, behaviour: Any, method: str, limit: int | None, rated: bool
    ) -> Callable[..., Any]:
        limits = self.limits
        idle = limits.config.stream_idle_seconds
        if inspect.iscoroutinefunction(behaviour):
            return self._writer_stream(behaviour, method, limit, rated)

        async def handler(request: Any, context: Context) -> AsyncIterator[Any]:
            claims = self._admit(context, rated)
            slot = self._open_stream(claims)
            watch: _IdleWatch | None = None
            try:
                request, watch = self._checked_request(request, method, limit)
                result = behaviour(request, context)
                try:
                    if inspect.isasyncgen(result):
                        async for item in result:
                            yield item
                    elif inspect.isawaitable(result):
                        await result
                except asyncio.CancelledError:
                    if watch is not None and watch.expired:
                        watch.uncancel()
                        raise stream_idle(idle) from None
                    raise
            finally:
                if watch is not None:
                    watch.stop()
                if slot is not None:
                    slot.close()

        return handler

    def _writer_stream(
        self, behaviour: Any, method: str, limit: int | None, rated: bool
    ) -> Callable[..., Any]:
        """``_stream`` for a handler that writes its responses with ``context.write`` (the
        Connect stream): the same checks, once per call, and no hop per response message."""
        idle = self.limits.config.stream_idle_seconds

        async def handler(request: Any, context: Context) -> None:
            claims = self._admit(context, rated)
            slot = self._open_stream(claims)
            watch: _IdleWatch | None = None
            try:
                request, watch = self._checked_request(request, method, limit)
                await behaviour(request, context)
            except asyncio.CancelledError:
                if watch is not None and watch.expired:
                    watch.uncancel()
                    raise stream_idle(idle) from None
                raise
            finally:
                if watch is not None:
                    watch.stop()
                if slot is not None:
                    slot.close()

        return handler


def _sized(deserialize: Callable[[bytes], Any], limit: int) -> Callable[[bytes], Any]:
    def checked(data: bytes) -> Any:
        if len(data) > limit:
            return _TooLarge(len(data))
        return deserialize(data)

    return checked


async def _checked(
    requests: AsyncIterator[Any], method: str, limits: CallLimits, watch: _IdleWatch | None
) -> AsyncIterator[Any]:
    limit = limits.message_limit(method) or 0
    async for request in requests:
        if watch is not None:
            watch.touch()
        if isinstance(request, _TooLarge):
            raise limits.too_large(method, request.size, limit)
        yield request


def call_limits(settings: Settings) -> CallLimits:
    """The ``CallLimits`` of ``[limits]`` (sizes capped by ``[server] max_message_bytes``)."""
    section = settings.limits
    sizes: dict[str, int] = {}
    for method, value in section.method_message_bytes.items():
        try:
            sizes[method.lstrip("/")] = int(value)
        except ValueError:
            raise ConfigError(
                f"[limits] method_message_bytes: {method} must be a number of bytes"
            ) from None
    config = LimitsConfig(
        user_rate=section.user_rate,
        user_burst=section.user_burst,
        source_rate=section.source_rate,
        source_burst=section.source_burst,
        streams_per_user=section.streams_per_user,
        client_message_bytes=section.client_message_bytes,
        method_message_bytes=sizes,
        stream_idle_seconds=section.stream_idle_seconds,
    )
    return CallLimits(config, server_max_message_bytes=settings.server.max_message_bytes)
