"""Reading the audit log: filters, stored events and pages across several stores.

Audit events may sit in more than one database (the Directory's user database and
the UCServers' chat and journal database, unless ``[database] audit_url`` puts
them in one): ``AuditListing`` asks each ``AuditReader`` for its next events
after the cursor and merges them, newest first, into one page. The cursor is the
(time, id) of the last event shown, in an opaque page token (``procall.paging``),
so that pages neither skip nor repeat events when new ones are recorded.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from procall.audit.model import AuditEvent
from procall.paging import (
    bad_page_token,
    decode_page_token,
    encode_page_token,
    page_size,
    time_from_cursor,
    time_in_cursor,
)

__all__ = ["AuditListing", "AuditPage", "AuditQuery", "AuditReader", "StoredAuditEvent"]


@dataclass(frozen=True)
class AuditQuery:
    """Which events to list (empty fields match everything)."""

    actor: str = ""
    subject: str = ""
    #: An exact action ("directory.CreateUser") or a prefix ending in "." ("directory.").
    action: str = ""

    def scope(self) -> dict[str, str]:
        """The query as page-token scope (a token is only valid for the same query)."""
        return {"actor": self.actor, "subject": self.subject, "action": self.action}


@dataclass(frozen=True)
class StoredAuditEvent:
    """An event as stored, with its id."""

    event_id: str
    event: AuditEvent


@dataclass(frozen=True)
class AuditPage:
    """One page of events, newest first, and the token of the next page ("" at the end)."""

    events: list[StoredAuditEvent]
    next_page_token: str


class AuditReader(Protocol):
    """One store of audit events."""

    async def list_events(
        self, query: AuditQuery, before: tuple[float, str] | None, limit: int
    ) -> list[StoredAuditEvent]:
        """Up to ``limit`` events matching ``query``, newest first, older than ``before``
        (time, id) when given."""
        ...


def _key(item: StoredAuditEvent) -> tuple[float, str]:
    return item.event.time, item.event_id


class AuditListing:
    """Pages of audit events merged from every store."""

    def __init__(self, readers: Sequence[AuditReader]) -> None:
        self._readers = list(readers)

    async def page(self, query: AuditQuery, requested_size: int, page_token: str) -> AuditPage:
        """The page after ``page_token`` (the first page for "")."""
        size = page_size(requested_size)
        cursor = decode_page_token(page_token, "audit", query.scope())
        before: tuple[float, str] | None = None
        if cursor is not None:
            if len(cursor) != 2 or not isinstance(cursor[1], str):
                raise bad_page_token()
            before = (time_from_cursor(cursor[0]), cursor[1])
        found: list[StoredAuditEvent] = []
        for reader in self._readers:
            found.extend(await reader.list_events(query, before, size + 1))
        merged = heapq.nlargest(size + 1, found, key=_key)
        events = merged[:size]
        token = ""
        if len(merged) > size:
            last = events[-1]
            token = encode_page_token(
                "audit", query.scope(), [time_in_cursor(last.event.time), last.event_id]
            )
        return AuditPage(events, token)
