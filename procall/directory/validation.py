"""Field rules of the Directory: what a valid username, mail, phone number ... is.

Every check raises ``InvalidArgument.field(<request path>, <why>)`` so the caller
gets a ``BadRequest`` naming the field. Free text may hold any printable
character; control characters (NUL included) are refused everywhere because
some databases reject them and they have no business in a directory.
"""

from __future__ import annotations

import re
import unicodedata

from procall.errors import InvalidArgument

__all__ = [
    "MAX_QUERY_CHARS",
    "check_display_name",
    "check_group_name",
    "check_home_server_id",
    "check_mail",
    "check_phone_number",
    "check_principal_name",
    "check_text",
    "check_username",
    "has_control_chars",
    "is_searchable",
    "normalize_key",
    "phone_digits",
]

#: Searches for longer text find nothing (no directory field we search is that long).
MAX_QUERY_CHARS = 256

_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,127}")
_SERVER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_MAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")
_PHONE = re.compile(r"[0-9A-Za-z+*#() ./-]{1,64}")


def has_control_chars(text: str) -> bool:
    """Whether ``text`` holds a control character (NUL, newline, DEL, ...)."""
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def normalize_key(text: str) -> str:
    """The case-insensitive key of a name (unique keys, searches, ordering)."""
    return text.strip().lower()


def phone_digits(text: str) -> str:
    """The digits of a phone number (``+1 (555) 01-01`` -> ``155501 01`` without blanks)."""
    return "".join(ch for ch in text if ch.isdigit())


def is_searchable(text: str) -> bool:
    """Whether a search or lookup value can match anything at all.

    Over-long values and values holding control characters (NUL) cannot match a
    stored field; callers answer "nothing found" without asking the backend.
    """
    return 0 < len(text) <= MAX_QUERY_CHARS and not has_control_chars(text)


def check_text(field: str, value: str, *, max_chars: int, required: bool = False) -> str:
    """Free text: stripped, at most ``max_chars``, no control characters."""
    value = value.strip()
    if required and not value:
        raise InvalidArgument.field(field, "is required")
    if len(value) > max_chars:
        raise InvalidArgument.field(field, f"must be at most {max_chars} characters")
    if has_control_chars(value):
        raise InvalidArgument.field(field, "must not contain control characters")
    return value


def check_username(field: str, value: str) -> str:
    """Login name: 1-64 of letters, digits, ``.``, ``_``, ``-``, starting with a letter or digit."""
    value = value.strip()
    if not value:
        raise InvalidArgument.field(field, "is required")
    if not _USERNAME.fullmatch(value):
        raise InvalidArgument.field(
            field,
            "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return value


def check_display_name(field: str, value: str) -> str:
    """Shown name: required, at most 256 characters."""
    return check_text(field, value, max_chars=256, required=True)


def check_mail(field: str, value: str) -> str:
    """E-mail address (optional): ``local@domain.tld``, at most 254 characters."""
    value = check_text(field, value, max_chars=254)
    if value and not _MAIL.fullmatch(value):
        raise InvalidArgument.field(field, "must be an e-mail address like name@example.com")
    return value


def check_principal_name(field: str, value: str) -> str:
    """Principal name (optional, AD ``userPrincipalName``): ``name@domain``."""
    value = check_text(field, value, max_chars=256)
    if value and not _MAIL.fullmatch(value):
        raise InvalidArgument.field(field, "must look like name@example.com")
    return value


def check_phone_number(field: str, value: str) -> str:
    """Phone number (optional): digits and ``+*#()./-`` or blanks, at least one digit."""
    value = check_text(field, value, max_chars=64)
    if value and (not _PHONE.fullmatch(value) or not phone_digits(value)):
        raise InvalidArgument.field(
            field, "must be a phone number (digits, blanks and + * # ( ) . / -)"
        )
    return value


def check_home_server_id(field: str, value: str) -> str:
    """UCServer id (optional): letters, digits, ``.``, ``_``, ``:``, ``-``; at most 128."""
    value = value.strip()
    if value and not _SERVER_ID.fullmatch(value):
        raise InvalidArgument.field(
            field, "must be a server id of letters, digits, '.', '_', ':' or '-'"
        )
    return value


def check_group_name(field: str, value: str) -> str:
    """Group name: 1-128 letters, digits, blanks, ``.``, ``_``, ``-``."""
    value = value.strip()
    if not value:
        raise InvalidArgument.field(field, "is required")
    if not _GROUP_NAME.fullmatch(value):
        raise InvalidArgument.field(field, "must be 1-128 letters, digits, blanks, '.', '_' or '-'")
    return value
