"""Edit leases: which administrator is editing what, since when, on which server.

A lease is advisory for reads and binding for writes: while one administrator holds the
lease of a resource, the writes of every other administrator to it are refused. Each new
lease of a resource carries a *fencing number* higher than any earlier lease of that
resource, so a store that remembers the highest number it was written under can refuse the
late write of a holder whose lease lapsed while it was paused.

Transport-free values; times are :data:`procall.clock.UnixTime` seconds.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass

from procall.clock import UnixTime
from procall.errors import InvalidArgument
from procall.validation import MAX_ID_CHARS, reject_nul

__all__ = [
    "DEFAULT_LEASE_TTL",
    "MAX_LEASE_TTL",
    "MAX_RESOURCE_CHARS",
    "MIN_LEASE_TTL",
    "EditLease",
    "check_resource",
    "new_lease_id",
    "resource_of_lease",
]

#: Seconds a lease lasts unless renewed, when the caller names no lifetime.
DEFAULT_LEASE_TTL = 60.0
#: The longest lifetime one acquisition or renewal may ask for (seconds).
MAX_LEASE_TTL = 600.0
#: The shortest lifetime (seconds).
MIN_LEASE_TTL = 1.0
#: Longest resource name accepted.
MAX_RESOURCE_CHARS = 400

# a configuration property name: dotted words ("chat.max_message_bytes")
_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.\-]*"
_ID = r"[^/\s]+"
_SHAPES = (
    re.compile(rf"config/global/{_NAME}"),
    re.compile(rf"config/local/{_ID}/{_NAME}"),
    re.compile(rf"user/{_ID}"),
    re.compile(rf"group/{_ID}"),
)
_SHAPE_TEXT = (
    "config/global/<name>, config/local/<server_id>/<name>, user/<user_id> or group/<group_id>"
)


@dataclass(frozen=True)
class EditLease:
    """One administrator's lease of one resource."""

    #: Opaque identifier, sent back on renewals, releases and writes under the lease.
    lease_id: str
    #: What is being edited (see :func:`check_resource`).
    resource: str
    #: The administrator holding the lease.
    holder_user_id: str
    #: The server the administrator acquired it through.
    server_id: str
    acquire_time: UnixTime
    #: When it lapses unless renewed.
    expire_time: UnixTime
    #: Higher than the number of every earlier lease of the same resource.
    fencing: int


def check_resource(resource: str, field: str = "resource") -> str:
    """``resource`` when it has one of the known shapes; INVALID_ARGUMENT otherwise."""
    if not resource:
        raise InvalidArgument.field(field, "is required")
    if len(resource) > MAX_RESOURCE_CHARS:
        raise InvalidArgument.field(field, f"is longer than {MAX_RESOURCE_CHARS} characters")
    reject_nul(resource, field)
    if not any(shape.fullmatch(resource) for shape in _SHAPES):
        raise InvalidArgument.field(field, f"must look like {_SHAPE_TEXT}")
    return resource


def new_lease_id(resource: str) -> str:
    """A fresh, unguessable lease id of ``resource``.

    The id carries its resource (encoded), so a renewal or release finds the lease from
    the id alone in one atomic step, and an expired id still tells which resource it was
    for (to name whoever holds it now). Callers treat it as opaque.
    """
    encoded = base64.urlsafe_b64encode(resource.encode()).decode().rstrip("=")
    return f"{secrets.token_urlsafe(12)}.{encoded}"


def resource_of_lease(lease_id: str) -> str | None:
    """The resource a lease id was issued for; None when it is no lease id of ours."""
    if not lease_id or len(lease_id) > 2 * MAX_RESOURCE_CHARS + MAX_ID_CHARS:
        return None
    _, dot, encoded = lease_id.partition(".")
    if not dot or not encoded:
        return None
    try:
        resource = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, ValueError):
        return None
    try:
        return check_resource(resource)
    except InvalidArgument:
        return None
