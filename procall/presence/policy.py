"""Presence rules for what clients ask: which fields an update changes, whose capabilities
count, and how a contact list is paged.

- An empty update mask means every maskable field (``availability``, ``note``,
  ``capabilities``); an unknown field is refused.
- Capabilities describe one client session: they count only when the caller sets its
  own presence from a session that is live on this server. A delegate, or a caller
  without a live session here (a login elsewhere, or a plain RPC without a stream),
  changes availability and note only.
- Contact lists are paged in the order the contacts were added, with AIP-158 page
  tokens (``procall.paging``) that continue after the last contact shown.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from procall.errors import InvalidArgument
from procall.paging import decode_page_token, encode_page_token, page_size
from procall.presence.model import Availability, Capabilities, PresenceChange
from procall.validation import check_ids

__all__ = [
    "DEFAULT_CONTACTS_PAGE",
    "MASKABLE_FIELDS",
    "MAX_USERS_PER_REQUEST",
    "CallerSession",
    "check_user_ids",
    "check_usernames",
    "contacts_page",
    "requested_change",
]

#: The fields of a presence an update mask may name.
MASKABLE_FIELDS = frozenset({"availability", "note", "capabilities"})
#: Most user ids one request may name.
MAX_USERS_PER_REQUEST = 1000
#: Contacts per page when the request names no page size.
DEFAULT_CONTACTS_PAGE = 200
_CONTACTS = "presence.contacts"


@dataclass(frozen=True)
class CallerSession:
    """Who asks: the caller's user and session, and whether that session is live here."""

    user_id: str
    session_id: str
    live_here: bool


def check_user_ids(user_ids: Sequence[str], field: str) -> list[str]:
    """User ids of one request: each 1 to 64 characters, at most ``MAX_USERS_PER_REQUEST``."""
    return check_ids(user_ids, field, max_count=MAX_USERS_PER_REQUEST)


def check_usernames(usernames: Sequence[str], field: str, ids_too: int = 0) -> list[str]:
    """Usernames of one request (each 1 to 256 characters); with the ``ids_too`` user ids
    beside them, at most ``MAX_USERS_PER_REQUEST`` users in all."""
    if len(usernames) + ids_too > MAX_USERS_PER_REQUEST:
        raise InvalidArgument.field(field, f"at most {MAX_USERS_PER_REQUEST} users per request")
    if any(not name or len(name) > 256 for name in usernames):
        raise InvalidArgument.field(field, "usernames must be 1 to 256 characters")
    return list(usernames)


def requested_change(
    caller: CallerSession,
    target: str,
    mask: Collection[str],
    availability: Availability | None,
    note: str,
    capabilities: Capabilities,
) -> PresenceChange:
    """The change an update of ``target``'s presence asks for (see the module's rules);
    ``availability`` None (not given) leaves it as it is."""
    paths = set(mask) or set(MASKABLE_FIELDS)
    unknown = paths - MASKABLE_FIELDS
    if unknown:
        raise InvalidArgument.field(
            "update_mask", f"unknown field(s): {', '.join(sorted(unknown))}"
        )
    own_live_session = target == caller.user_id and caller.live_here
    return PresenceChange(
        availability=availability if "availability" in paths else None,
        note=note if "note" in paths else None,
        session_capabilities=(caller.session_id, capabilities)
        if "capabilities" in paths and own_live_session
        else None,
    )


def contacts_page(
    user_id: str, contacts: Sequence[str], size: int, token: str
) -> tuple[list[str], str]:
    """One page of ``user_id``'s contact list (in the order added) and the next page's token.

    The token names the last contact shown and its position: the next page continues after
    that contact wherever it is now, or with the contact that followed it when it was
    removed meanwhile.
    """
    limit = page_size(size, default=DEFAULT_CONTACTS_PAGE)
    scope = {"user": user_id}
    cursor = decode_page_token(token, _CONTACTS, scope)
    start = 0
    if cursor is not None:
        if len(cursor) != 2 or not isinstance(cursor[0], int) or not isinstance(cursor[1], str):
            raise InvalidArgument.field("page_token", "is not a valid page token")
        position, last = int(cursor[0]), str(cursor[1])
        if 0 < position <= len(contacts) and contacts[position - 1] == last:
            start = position
        elif last in contacts:
            start = list(contacts).index(last) + 1
        else:
            # it was removed: what followed it moved up by one
            start = min(max(position - 1, 0), len(contacts))
    end = start + limit
    page = list(contacts[start:end])
    if end >= len(contacts):
        return page, ""
    return page, encode_page_token(_CONTACTS, scope, (end, page[-1]))
