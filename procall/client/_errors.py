"""``ProcallClientError``: a failed call as the server described it."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.rpc import error_details_pb2, status_pb2

__all__ = ["ProcallClientError", "error_from_rpc"]

_DETAILS_KEY = "grpc-status-details-bin"


class ProcallClientError(Exception):
    """A call failed.

    ``code`` is the canonical gRPC status code, ``reason`` the
    ``google.rpc.ErrorInfo`` reason the server gave (``"WRONG_HOME_SERVER"``,
    ``"RESUME_EXPIRED"``, ``"TOKEN_EXPIRED"``, ...; empty when it gave none),
    ``message`` the server's message, ``metadata`` the ErrorInfo metadata,
    ``field_violations`` the ``BadRequest`` entries as ``(field, description)``
    and ``retry_after`` the ``RetryInfo`` delay in seconds when the server sent one.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
        field_violations: tuple[tuple[str, str], ...] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {message}" if message else code.name)
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})
        self.field_violations = field_violations
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """Whether trying again later may succeed (the server or network is in trouble)."""
        return self.code in _TRANSIENT


_TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)


def error_from_rpc(error: grpc.aio.AioRpcError) -> ProcallClientError:
    """The ``ProcallClientError`` of a failed gRPC call, with its rich status details."""
    reason = ""
    metadata: dict[str, str] = {}
    violations: list[tuple[str, str]] = []
    retry_after: float | None = None
    for key, value in error.trailing_metadata() or ():
        if key != _DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except Exception:  # a foreign or damaged detail must not hide the error itself
            continue
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            bad = error_details_pb2.BadRequest()
            retry = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                reason, metadata = info.reason, dict(info.metadata)
            elif detail.Unpack(bad):
                violations += [(v.field, v.description) for v in bad.field_violations]
            elif detail.Unpack(retry):
                retry_after = retry.retry_delay.ToNanoseconds() / 1e9
    return ProcallClientError(
        error.code(),
        error.details() or "",
        reason=reason,
        metadata=metadata,
        field_violations=tuple(violations),
        retry_after=retry_after,
    )
