"""RPC latency by method and status code, for every call a server answers.

``RpcMetricsInterceptor`` is the outermost interceptor (outside the policy enforcer,
so that refused calls count too). Per call it reads the clock twice and records one
histogram point with the attributes ``rpc.method`` and ``rpc.grpc.status_code``; the
wrapped handler and the attribute sets are built once per method (and per code), so
the per-call work is the record itself. Streams are recorded when they end (their
duration falls into the last buckets; their counts by code are what matters).

The code of a call is OK when its handler returned; the code it aborted with
(``context.code()``, set by the error interceptor inside); a domain error's kind when
one escapes the inner interceptors; CANCELLED when the caller went away; UNKNOWN
for anything else.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from opentelemetry.metrics import Histogram

from procall.errors import ProcallError
from procall.servers.runtime.handlers import WrappedHandlers

__all__ = ["RPC_DURATION", "RpcMetricsInterceptor"]

#: Name of the histogram (Prometheus: ``procall_rpc_server_duration_seconds``).
RPC_DURATION = "procall.rpc.server.duration"

Context = grpc.aio.ServicerContext[Any, Any]


def _code_after_abort(context: Context) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    return "UNKNOWN"


def _code_of(exc: BaseException, context: Context) -> str:
    if isinstance(exc, grpc.aio.AbortError):
        return _code_after_abort(context)
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    if isinstance(exc, ProcallError):
        return exc.kind.value
    return "UNKNOWN"


class _Recorder:
    """Records one method's calls, with the attribute set of each code built once."""

    __slots__ = ("_attributes", "_histogram", "_method")

    def __init__(self, histogram: Histogram, method: str) -> None:
        self._histogram = histogram
        self._method = method
        self._attributes: dict[str, dict[str, str]] = {}

    def record(self, began: float, code: str) -> None:
        attributes = self._attributes.get(code)
        if attributes is None:
            attributes = {"rpc.method": self._method, "rpc.grpc.status_code": code}
            self._attributes[code] = attributes
        self._histogram.record(time.perf_counter() - began, attributes)


class RpcMetricsInterceptor(grpc.aio.ServerInterceptor):
    """Records the duration of every call by method and status code (see the module doc)."""

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
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
        return self._wrapped.get(handler, handler_call_details.method)

    def _wrap(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        recorder = _Recorder(self._histogram, method)
        if handler.unary_unary is not None:
            replaced = {"unary_unary": _unary(handler.unary_unary, recorder)}
        elif handler.stream_unary is not None:
            replaced = {"stream_unary": _unary(handler.stream_unary, recorder)}
        elif handler.unary_stream is not None:
            replaced = {"unary_stream": _stream(handler.unary_stream, recorder)}
        else:
            replaced = {"stream_stream": _stream(handler.stream_stream, recorder)}
        # NamedTuple._replace is grpc's documented way of wrapping a handler
        wrapped: grpc.RpcMethodHandler[Any, Any] = handler._replace(**replaced)  # type: ignore[attr-defined]
        return wrapped


def _unary(behaviour: Any, recorder: _Recorder) -> Callable[..., Any]:
    async def handler(request: Any, context: Context) -> Any:
        began = time.perf_counter()
        try:
            result = behaviour(request, context)
            if inspect.isawaitable(result):
                result = await result
        except BaseException as exc:
            recorder.record(began, _code_of(exc, context))
            raise
        recorder.record(began, "OK")
        return result

    return handler


def _stream(behaviour: Any, recorder: _Recorder) -> Callable[..., Any]:
    async def handler(request: Any, context: Context) -> AsyncIterator[Any]:
        began = time.perf_counter()
        try:
            result = behaviour(request, context)
            if inspect.isasyncgen(result):
                async for item in result:
                    yield item
            elif inspect.isawaitable(result):
                await result
        except BaseException as exc:
            recorder.record(began, _code_of(exc, context))
            raise
        recorder.record(began, "OK")

    return handler
