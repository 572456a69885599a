"""The SQL audit store on SQLite and PostgreSQL, and paging merged across two databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from procall.audit import (
    AuditEvent,
    AuditListing,
    AuditOutcome,
    AuditQuery,
    BufferedAuditLog,
)
from procall.errors import InvalidArgument
from procall.storage.sql import SqlDatabase, upgrade_to_head
from procall.storage.sql.audit import SqlAuditStore


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest) -> AsyncIterator[SqlDatabase]:
    """A migrated database on each backend."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url = request.getfixturevalue(fixture)
    db = SqlDatabase(url, name="audit test database")
    await upgrade_to_head(db)
    yield db
    await db.dispose()


def _event(time: float, actor: str, action: str, subject: str = "") -> AuditEvent:
    return AuditEvent(
        time=time,
        actor=actor,
        action=action,
        outcome=AuditOutcome.SUCCESS,
        subject=subject,
        source="ipv4:10.0.0.1",
        detail={"k": "välue"},
    )


async def test_events_come_back_newest_first_with_filters(database: SqlDatabase) -> None:
    store = SqlAuditStore(database)
    await store.append(
        [
            _event(1.0, "root", "directory.CreateUser", "u-1"),
            _event(2.0, "root", "directory.DeleteUser", "u-2"),
            _event(3.0, "u-3", "presence.SetPresence", "u-1"),
            _event(3.0, "bob", "auth.login_failed", "u-9"),
        ]
    )
    everything = await store.list_events(AuditQuery(), None, 10)
    assert [e.event.time for e in everything] == [3.0, 3.0, 2.0, 1.0]
    assert everything[-1].event.detail == {"k": "välue"}
    assert everything[-1].event.source == "ipv4:10.0.0.1"
    by_root = await store.list_events(AuditQuery(actor="root"), None, 10)
    assert [e.event.action for e in by_root] == ["directory.DeleteUser", "directory.CreateUser"]
    for_u1 = await store.list_events(AuditQuery(subject="u-1"), None, 10)
    assert {e.event.actor for e in for_u1} == {"root", "u-3"}
    directory = await store.list_events(AuditQuery(action="directory."), None, 10)
    assert len(directory) == 2
    exact = await store.list_events(AuditQuery(action="directory.DeleteUser"), None, 10)
    assert [e.event.subject for e in exact] == ["u-2"]


async def test_overlong_and_hostile_texts_are_stored_clipped(database: SqlDatabase) -> None:
    store = SqlAuditStore(database)
    await store.append([_event(1.0, "x" * 10_000 + "'; DROP TABLE audit_events; --", "a" * 500)])
    (stored,) = await store.list_events(AuditQuery(), None, 10)
    assert len(stored.event.actor) == 160 and len(stored.event.action) == 128


async def test_pages_merge_two_databases_without_gaps_or_repeats(
    database: SqlDatabase, tmp_path: object
) -> None:
    other = SqlDatabase(f"sqlite+aiosqlite:///{tmp_path}/other.db", name="other")
    await upgrade_to_head(other)
    try:
        first, second = SqlAuditStore(database), SqlAuditStore(other)
        await first.append([_event(float(t), "root", "directory.X") for t in range(0, 40, 2)])
        await second.append([_event(float(t), "root", "admin.Y") for t in range(1, 40, 2)])
        listing = AuditListing([first, second])
        seen: list[float] = []
        token = ""
        while True:
            page = await listing.page(AuditQuery(), 7, token)
            seen += [e.event.time for e in page.events]
            token = page.next_page_token
            if not token:
                break
        assert seen == [float(t) for t in range(39, -1, -1)]
        with pytest.raises(InvalidArgument):  # a token only continues the same query
            await listing.page(
                AuditQuery(actor="root"),
                7,
                (await listing.page(AuditQuery(), 7, "")).next_page_token,
            )
    finally:
        await other.dispose()


async def test_the_buffered_log_never_fails_and_writes_once_the_store_answers(
    database: SqlDatabase,
) -> None:
    class Flaky:
        def __init__(self) -> None:
            self.down = True
            self.store = SqlAuditStore(database)

        async def append(self, events: object) -> None:
            if self.down:
                raise ConnectionError("down")
            await self.store.append(events)  # type: ignore[arg-type]

    sink = Flaky()
    log = BufferedAuditLog(sink, retry_seconds=0.05)
    log.start()
    try:
        for index in range(5):
            await log.record(_event(float(index), "root", "admin.Z"))
        await asyncio.sleep(0.2)
        assert log.queued == 5
        sink.down = False
        for _ in range(100):
            if not log.queued:
                break
            await asyncio.sleep(0.05)
        stored = await sink.store.list_events(AuditQuery(), None, 10)
        assert len(stored) == 5
    finally:
        await log.stop()
