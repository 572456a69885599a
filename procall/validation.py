"""Checks of what clients send, shared by every area (field names are those of the wire).

Each check raises ``InvalidArgument.field(<request field>, <why>)``, so the caller gets
a ``BadRequest`` naming the field. Area-specific rules (a chat title, a directory
username) live with their area and build on these.
"""

from __future__ import annotations

from collections.abc import Sequence

from procall.errors import InvalidArgument

__all__ = [
    "MAX_ID_CHARS",
    "MAX_VERSION",
    "MAX_REQUEST_ID_CHARS",
    "check_id",
    "check_ids",
    "check_request_id",
    "check_text",
    "check_version",
    "reject_nul",
]

#: Longest id (user, conversation, entry ...) a client may send.
MAX_ID_CHARS = 64
#: Longest client idempotency key.
MAX_REQUEST_ID_CHARS = 128


def reject_nul(value: str, field: str) -> None:
    """Refuse U+0000 in ``value``.

    PostgreSQL (and ODBC drivers) cannot store it in text: refusing it up front is
    better than accepting a write the central database rejects later.
    """
    if "\x00" in value:
        raise InvalidArgument.field(field, "must not contain NUL (U+0000) characters")


def check_id(value: str, field: str) -> str:
    """A required id (conversation, user, entry): 1 to ``MAX_ID_CHARS`` characters."""
    if not value:
        raise InvalidArgument.field(field, "is required")
    if len(value) > MAX_ID_CHARS:
        raise InvalidArgument.field(field, f"is longer than {MAX_ID_CHARS} characters")
    reject_nul(value, field)
    return value


def check_ids(values: Sequence[str], field: str, *, max_count: int) -> list[str]:
    """A list of ids (order and repeats kept), each valid, at most ``max_count`` of them."""
    if len(values) > max_count:
        raise InvalidArgument.field(field, f"at most {max_count} ids per request")
    return [check_id(value, field) for value in values]


def check_text(text: str, field: str, max_bytes: int) -> str:
    """Free text: not empty, at most ``max_bytes`` of UTF-8; kept exactly as sent."""
    if not text:
        raise InvalidArgument.field(field, "must not be empty")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise InvalidArgument.field(field, f"is {size} bytes; at most {max_bytes} are allowed")
    reject_nul(text, field)
    return text


def check_request_id(request_id: str, *, required: bool = True) -> str:
    """A client's idempotency key (field ``request_id``)."""
    if not request_id:
        if required:
            raise InvalidArgument.field("request_id", "is required (a UUID chosen by the client)")
        return ""
    if len(request_id) > MAX_REQUEST_ID_CHARS:
        raise InvalidArgument.field(
            "request_id", f"is longer than {MAX_REQUEST_ID_CHARS} characters"
        )
    reject_nul(request_id, "request_id")
    return request_id


#: Versions are signed 64-bit integers in SQL; one more must fit after a write.
MAX_VERSION = 2**63 - 1


def check_version(value: int, field: str) -> int:
    """A version a write is based on: 0 or more and below ``MAX_VERSION``
    (INVALID_ARGUMENT otherwise, naming ``field``)."""
    if not 0 <= value < MAX_VERSION:
        raise InvalidArgument.field(field, f"must be from 0 to {MAX_VERSION - 1}")
    return value
