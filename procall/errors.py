"""Transport-free domain errors.

Domain code raises these with a reason code (the names of
``procall.api.common.v1.ErrorReason`` without the prefix); one server
interceptor maps them to a canonical gRPC status with ``google.rpc.ErrorInfo``
(and ``BadRequest`` / ``RetryInfo`` where they fit). Messages are meant for the
caller: they never carry exception text, SQL, or a traceback.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "Aborted",
    "AlreadyExists",
    "ErrorKind",
    "FailedPrecondition",
    "FieldViolation",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ProcallError",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
]


class ErrorKind(enum.Enum):
    """The canonical class of an error; maps one to one to a gRPC status code."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field of a request (becomes a ``google.rpc.BadRequest`` entry)."""

    field: str
    description: str


class ProcallError(Exception):
    """Base of all domain errors.

    ``reason`` is an ``ErrorReason`` name without prefix (``"NOT_FOUND"``),
    ``metadata`` goes into ``ErrorInfo.metadata``, ``violations`` into
    ``BadRequest`` and ``retry_after`` (seconds) into ``RetryInfo``.
    """

    kind: ErrorKind = ErrorKind.INTERNAL
    default_reason: str = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        violations: Sequence[FieldViolation] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata: dict[str, str] = dict(metadata or {})
        self.violations: tuple[FieldViolation, ...] = tuple(violations)
        self.retry_after = retry_after


class InvalidArgument(ProcallError):
    """A request field is missing or invalid."""

    kind = ErrorKind.INVALID_ARGUMENT
    default_reason = "INVALID_FIELD"

    @classmethod
    def field(cls, name: str, description: str) -> InvalidArgument:
        """An error about a single field, named in the message and the BadRequest detail."""
        return cls(f"{name}: {description}", violations=[FieldViolation(name, description)])


class NotFound(ProcallError):
    """The named resource does not exist (or the caller may not know it exists)."""

    kind = ErrorKind.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExists(ProcallError):
    """A resource with the same unique key exists."""

    kind = ErrorKind.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class PermissionDenied(ProcallError):
    """The caller lacks the right for this action."""

    kind = ErrorKind.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class Unauthenticated(ProcallError):
    """Credentials or session token are missing, wrong or expired."""

    kind = ErrorKind.UNAUTHENTICATED
    default_reason = "BAD_CREDENTIALS"


class FailedPrecondition(ProcallError):
    """The request conflicts with the current state (wrong home server, read-only, ...)."""

    kind = ErrorKind.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class Aborted(ProcallError):
    """A concurrent change won (stale version, lost race); re-read and retry."""

    kind = ErrorKind.ABORTED
    default_reason = "STALE_VERSION"


class ResourceExhausted(ProcallError):
    """A quota, pool or rate limit is exhausted."""

    kind = ErrorKind.RESOURCE_EXHAUSTED
    default_reason = "RATE_LIMITED"


class Unavailable(ProcallError):
    """A backend is unreachable; ``backend`` names it in the message and metadata."""

    kind = ErrorKind.UNAVAILABLE
    default_reason = "BACKEND_UNAVAILABLE"

    @classmethod
    def backend(cls, name: str, retry_after: float | None = 1.0) -> Unavailable:
        """The standard error for an unreachable backend (database, directory, Redis)."""
        return cls(
            f"{name} is unavailable; try again later",
            metadata={"backend": name},
            retry_after=retry_after,
        )


class Unimplemented(ProcallError):
    """The RPC is part of the contract but not served by this release."""

    kind = ErrorKind.UNIMPLEMENTED
    default_reason = "NOT_IMPLEMENTED"
