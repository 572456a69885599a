"""AIP-158 paging: page sizes and opaque, validated page tokens.

A page token is the URL-safe base64 of a small JSON document holding the kind of
listing, a fingerprint of the request's other parameters (a token is only valid
for the same query, AIP-158) and the backend's cursor: a short tuple of strings
and integers whose meaning belongs to the store (a keyset position for SQL, a
scan offset plus the last name seen for LDAP). Tokens are not signed: a forged
cursor can only start a listing somewhere else, which any caller can do anyway.
Anything that does not decode, or belongs to another request, is answered with
INVALID_ARGUMENT naming ``page_token``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence

from procall.errors import InvalidArgument

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "Cursor",
    "bad_page_token",
    "decode_page_token",
    "encode_page_token",
    "page_size",
    "time_from_cursor",
    "time_in_cursor",
]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_MAX_TOKEN_CHARS = 4096
_MAX_CURSOR_ITEMS = 8

#: A store's position in a listing: a few strings and integers.
Cursor = tuple[str | int, ...]


def page_size(requested: int, *, field: str = "page_size", default: int = DEFAULT_PAGE_SIZE) -> int:
    """The page size to use: ``default`` for 0, capped at ``MAX_PAGE_SIZE``; negative is
    invalid."""
    if requested < 0:
        raise InvalidArgument.field(field, "must not be negative")
    if requested == 0:
        return min(default, MAX_PAGE_SIZE)
    return min(requested, MAX_PAGE_SIZE)


def bad_page_token(reason: str = "is not a valid page token") -> InvalidArgument:
    """The error for a page token that cannot be used."""
    return InvalidArgument.field("page_token", reason)


def _fingerprint(kind: str, scope: Mapping[str, str]) -> str:
    text = json.dumps([kind, sorted(scope.items())], separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_page_token(kind: str, scope: Mapping[str, str], cursor: Sequence[str | int]) -> str:
    """An opaque token continuing listing ``kind`` (with parameters ``scope``) at ``cursor``."""
    document = {"k": kind, "f": _fingerprint(kind, scope), "c": list(cursor)}
    raw = json.dumps(document, separators=(",", ":"), ensure_ascii=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, kind: str, scope: Mapping[str, str]) -> Cursor | None:
    """The cursor in ``token`` (``None`` for an empty token, i.e. the first page).

    Raises ``InvalidArgument`` (field ``page_token``) for garbage, or for a token of
    another listing or of the same listing with other parameters.
    """
    if not token:
        return None
    if len(token) > _MAX_TOKEN_CHARS:
        raise bad_page_token()
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        document = json.loads(raw.decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad_page_token() from None
    if not isinstance(document, dict) or document.get("k") != kind:
        raise bad_page_token()
    if document.get("f") != _fingerprint(kind, scope):
        raise bad_page_token("belongs to a request with other parameters")
    cursor = document.get("c")
    if (
        not isinstance(cursor, list)
        or not 0 < len(cursor) <= _MAX_CURSOR_ITEMS
        or not all(isinstance(item, str | int) and not isinstance(item, bool) for item in cursor)
    ):
        raise bad_page_token()
    return tuple(cursor)


def time_in_cursor(value: float) -> str:
    """A timestamp as a cursor item that decodes to exactly the same float."""
    return value.hex()


def time_from_cursor(item: str | int) -> float:
    """The timestamp of a cursor item made by ``time_in_cursor``."""
    if not isinstance(item, str):
        raise bad_page_token()
    try:
        value = float.fromhex(item)
    except (ValueError, OverflowError):
        raise bad_page_token() from None
    if value != value or value in (float("inf"), float("-inf")):
        raise bad_page_token()
    return value
