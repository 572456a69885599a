"""Turning a failed call to another server into the domain error it means here."""

from __future__ import annotations

import grpc

from procall.errors import (
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
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return ResourceExhausted(details or f"{backend} is busy", retry_after=5.0)
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(details or "not found")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDenied(details or "permission denied")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(details or "invalid request")
    return Unavailable.backend(backend)
