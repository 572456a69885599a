"""Turning a failed call to another server into the domain error it means here."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

from procall.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ProcallError,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

__all__ = ["domain_error"]


def domain_error(error: grpc.aio.AioRpcError, backend: str) -> ProcallError:
    """The domain error for a failed RPC to ``backend``; the peer's message is kept
    only for the codes whose messages procall servers write for callers."""
    code = error.code()
    details = error.details() or ""
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return Unauthenticated(details or "authentication failed")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:  # the peer's RetryInfo is passed on
        return ResourceExhausted(
            details or f"{backend} is busy", retry_after=_retry_after(error) or 5.0
        )
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(details or "not found")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDenied(details or "permission denied")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(details or "invalid request")
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return FailedPrecondition(details or f"{backend} refused the request")
    return Unavailable.backend(backend)


def _retry_after(error: grpc.aio.AioRpcError) -> float | None:
    """The ``google.rpc.RetryInfo`` delay of a failed call, in seconds, if it has one."""
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except Exception:  # a damaged detail: fall back to the default delay
            return None
        for detail in status.details:
            retry = error_details_pb2.RetryInfo()
            if detail.Unpack(retry):
                return retry.retry_delay.ToNanoseconds() / 1e9 or None
    return None
