"""The one error-mapping interceptor shared by every server.

- Domain errors (``procall.errors.ProcallError``) become their canonical status
  code with ``google.rpc.ErrorInfo{reason, domain="procall.dev"}``, plus
  ``BadRequest`` and ``RetryInfo`` details where they apply.
- A request body that does not decode answers INVALID_ARGUMENT
  (MALFORMED_REQUEST) instead of grpcio's UNKNOWN with parser text.
- RPCs of the contract a release does not serve yet (the generated servicer
  base raises ``NotImplementedError``) answer UNIMPLEMENTED naming the method.
- Anything else answers INTERNAL with a reference id; the traceback goes to the
  log only, never onto the wire.
- Messages and details are clipped (``MAX_MESSAGE_BYTES``, ``MAX_DETAIL_BYTES``): an
  error that quotes a hostile request (a 70 kB user id) must still fit the 16 KiB
  that gRPC allows for trailing metadata, or the caller gets a transport error
  (RESOURCE_EXHAUSTED "Stream removed") instead of the answer.
"""

from __future__ import annotations

import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from procall.errors import InvalidArgument, ProcallError, Unavailable, Unimplemented

__all__ = ["ERROR_DOMAIN", "ErrorMappingInterceptor", "status_for"]

ERROR_DOMAIN = "procall.dev"
#: Longest status message in UTF-8 bytes (it travels twice: grpc-message percent-encoded,
#: and inside the status details).
MAX_MESSAGE_BYTES = 512
#: Longest ErrorInfo metadata value or BadRequest field / description, in UTF-8 bytes.
MAX_DETAIL_BYTES = 128
#: ErrorInfo metadata entries and BadRequest violations kept, at most.
MAX_DETAIL_ITEMS = 16
_ELLIPSIS = "\u2026"
_STATUS_DETAILS_KEY = "grpc-status-details-bin"
_log = logging.getLogger(__name__)


class _Malformed:
    """Stands in for a request whose bytes did not decode."""


_MALFORMED = _Malformed()


def _clip(text: str, limit: int) -> str:
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= limit:
        return text
    # cut on a character boundary, leaving room for the ellipsis (3 bytes)
    return encoded[: limit - 3].decode("utf-8", "ignore") + _ELLIPSIS


def status_for(error: ProcallError) -> tuple[grpc.StatusCode, status_pb2.Status]:
    """The gRPC status code and the rich ``google.rpc.Status`` for a domain error.

    The message and the details are clipped to a bounded size (see the module doc).
    """
    code = grpc.StatusCode[error.kind.value]
    metadata = {
        _clip(key, MAX_DETAIL_BYTES): _clip(value, MAX_DETAIL_BYTES)
        for key, value in list(error.metadata.items())[:MAX_DETAIL_ITEMS]
    }
    details = [
        error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=metadata)
    ]
    extra: list[Any] = []
    if error.violations:
        extra.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=_clip(v.field, MAX_DETAIL_BYTES),
                        description=_clip(v.description, MAX_DETAIL_BYTES),
                    )
                    for v in error.violations[:MAX_DETAIL_ITEMS]
                ]
            )
        )
    if error.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(error.retry_after * 1e9))
        extra.append(error_details_pb2.RetryInfo(retry_delay=delay))
    packed = []
    for detail in [*details, *extra]:
        wrapper = any_pb2.Any()
        wrapper.Pack(detail)
        packed.append(wrapper)
    message = _clip(error.message, MAX_MESSAGE_BYTES)
    return code, status_pb2.Status(code=code.value[0], message=message, details=packed)


async def _abort(context: grpc.aio.ServicerContext[Any, Any], error: ProcallError) -> None:
    code, status = status_for(error)
    await context.abort(
        code, status.message, trailing_metadata=((_STATUS_DETAILS_KEY, status.SerializeToString()),)
    )


def _translate(exc: BaseException, method: str) -> ProcallError:
    if isinstance(exc, ProcallError):
        return exc
    if isinstance(exc, NotImplementedError):
        return Unimplemented(f"{method} is not implemented in this release of procall")
    if type(exc).__name__ == "_ServerStoppedError":  # grpc's own, while the server stops
        return Unavailable("the server is shutting down; reconnect", reason="SERVER_DRAINING")
    reference = uuid.uuid4().hex[:12]
    _log.error("unexpected error in %s (reference %s)", method, reference, exc_info=exc)
    return ProcallError(f"internal error (reference {reference})")


def _malformed() -> InvalidArgument:
    return InvalidArgument("the request body could not be decoded", reason="MALFORMED_REQUEST")


async def _checked_iterator(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if request is _MALFORMED:
            raise _malformed()
        yield request


def _safe_deserializer(
    deserialize: Callable[[bytes], Any] | None,
) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def wrapped(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:
            return _MALFORMED

    return wrapped


def _checked_request(request: Any, streaming: bool) -> Any:
    """The request a handler receives: request streams checked message by message, a single
    request that could not be decoded refused with INVALID_ARGUMENT."""
    if streaming:
        return _checked_iterator(request)
    if request is _MALFORMED:
        raise _malformed()
    return request


def _wrap_unary_response(behaviour: Callable[..., Any], method: str, streaming: bool) -> Any:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            request = _checked_request(request, streaming)
            result = behaviour(request, context)
            if inspect.isawaitable(result):
                result = await result
            return result
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # mapped, logged, never leaked
            await _abort(context, _translate(exc, method))

    return handler


def _wrap_stream_response(behaviour: Callable[..., Any], method: str, streaming: bool) -> Any:
    if inspect.iscoroutinefunction(behaviour):
        # a handler writing its responses with ``context.write`` (the Connect stream) stays a
        # coroutine: the aio server runs it with the writer API, and this wrapper costs one
        # await per call instead of one generator hop per message
        return _wrap_unary_response(behaviour, method, streaming)

    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            request = _checked_request(request, streaming)
            result = behaviour(request, context)
            if inspect.isasyncgen(result):
                async for item in result:
                    yield item
            elif inspect.isawaitable(result):
                await result
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # mapped, logged, never leaked
            await _abort(context, _translate(exc, method))

    return handler


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """Maps every failure of every RPC to a clean canonical status (see module doc)."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method.lstrip("/")
        deserializer = _safe_deserializer(handler.request_deserializer)
        serializer = handler.response_serializer
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary_response(handler.unary_unary, method, False), deserializer, serializer
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary_response(handler.stream_unary, method, True), deserializer, serializer
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream_response(handler.unary_stream, method, False),
                deserializer,
                serializer,
            )
        assert handler.stream_stream is not None
        return grpc.stream_stream_rpc_method_handler(
            _wrap_stream_response(handler.stream_stream, method, True), deserializer, serializer
        )
