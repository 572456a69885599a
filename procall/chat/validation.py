"""Checks of what clients send to chat (field names are those of the wire requests)."""

from __future__ import annotations

from collections.abc import Sequence

from procall.chat.model import (
    MAX_GROUP_MEMBERS,
    MAX_REQUEST_ID_CHARS,
    MAX_TEXT_BYTES,
    MAX_TITLE_CHARS,
)
from procall.errors import InvalidArgument

__all__ = [
    "MAX_QUERY_CHARS",
    "check_id",
    "check_member_ids",
    "check_query",
    "check_request_id",
    "check_text",
    "check_title",
]

#: Longest search query.
MAX_QUERY_CHARS = 256
_MAX_ID_CHARS = 64


def _no_nul(value: str, field: str) -> None:
    # PostgreSQL (and ODBC drivers) cannot store U+0000 in text: refuse it up front rather
    # than accept a write the central database will reject later
    if "\x00" in value:
        raise InvalidArgument.field(field, "must not contain NUL (U+0000) characters")


def check_id(value: str, field: str) -> str:
    """A required id (conversation, user, entry)."""
    if not value:
        raise InvalidArgument.field(field, "is required")
    if len(value) > _MAX_ID_CHARS:
        raise InvalidArgument.field(field, f"is longer than {_MAX_ID_CHARS} characters")
    _no_nul(value, field)
    return value


def check_text(text: str, field: str = "text", max_bytes: int = MAX_TEXT_BYTES) -> str:
    """Message text: not empty, at most ``max_bytes`` of UTF-8; kept exactly as sent."""
    if not text:
        raise InvalidArgument.field(field, "must not be empty")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise InvalidArgument.field(field, f"is {size} bytes; at most {max_bytes} are allowed")
    _no_nul(text, field)
    return text


def check_request_id(request_id: str, *, required: bool = True) -> str:
    """A client's idempotency key."""
    if not request_id:
        if required:
            raise InvalidArgument.field("request_id", "is required (a UUID chosen by the client)")
        return ""
    if len(request_id) > MAX_REQUEST_ID_CHARS:
        raise InvalidArgument.field(
            "request_id", f"is longer than {MAX_REQUEST_ID_CHARS} characters"
        )
    _no_nul(request_id, "request_id")
    return request_id


def check_title(title: str) -> str:
    """A group title: not blank, at most ``MAX_TITLE_CHARS`` characters."""
    if not title.strip():
        raise InvalidArgument.field("title", "must not be empty for a group conversation")
    if len(title) > MAX_TITLE_CHARS:
        raise InvalidArgument.field("title", f"is longer than {MAX_TITLE_CHARS} characters")
    _no_nul(title, "title")
    return title


def check_member_ids(user_ids: Sequence[str], field: str = "member_user_ids") -> list[str]:
    """User ids, each valid, duplicates dropped (first kept), at most the group limit."""
    seen: dict[str, None] = {}
    for user_id in user_ids:
        seen[check_id(user_id, field)] = None
    if len(seen) > MAX_GROUP_MEMBERS:
        raise InvalidArgument.field(field, f"more than {MAX_GROUP_MEMBERS} members")
    return list(seen)


def check_query(query: str) -> str:
    """A search query: not blank, at most ``MAX_QUERY_CHARS`` characters."""
    if not query.strip():
        raise InvalidArgument.field("query", "must not be empty")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidArgument.field("query", f"is longer than {MAX_QUERY_CHARS} characters")
    _no_nul(query, "query")
    return query
