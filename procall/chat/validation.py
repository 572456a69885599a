"""Checks of what clients send to chat (field names are those of the wire requests).

The checks every area shares (ids, idempotency keys, NUL) live in ``procall.validation``;
this module adds chat's own rules on top of them.
"""

from __future__ import annotations

from collections.abc import Sequence

from procall import validation
from procall.chat.model import MAX_GROUP_MEMBERS, MAX_TEXT_BYTES, MAX_TITLE_CHARS
from procall.errors import InvalidArgument
from procall.validation import check_id, check_request_id, reject_nul

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


def check_text(text: str, field: str = "text", max_bytes: int = MAX_TEXT_BYTES) -> str:
    """Message text: not empty, at most ``max_bytes`` of UTF-8; kept exactly as sent."""
    return validation.check_text(text, field, max_bytes)


def check_title(title: str) -> str:
    """A group title: not blank, at most ``MAX_TITLE_CHARS`` characters."""
    if not title.strip():
        raise InvalidArgument.field("title", "must not be empty for a group conversation")
    if len(title) > MAX_TITLE_CHARS:
        raise InvalidArgument.field("title", f"is longer than {MAX_TITLE_CHARS} characters")
    reject_nul(title, "title")
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
    reject_nul(query, "query")
    return query
