"""The admin views: paging through everyone's sessions, the license pool, the live servers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from procall.admin_views import (
    DEFAULT_SESSIONS_PAGE,
    AdminViews,
    LicenseCounter,
    LicenseUsage,
    LiveServers,
    LoggedOnSession,
    LoggedOnSessions,
    ServerState,
    SessionFilter,
    state_of,
)
from procall.errors import InvalidArgument
from procall.paging import MAX_PAGE_SIZE
from procall.routing.models import ServerInfo, ServerRole


class MemorySessions:
    """``LoggedOnSessions``: a list that tests change between pages."""

    def __init__(self, sessions: list[LoggedOnSession]) -> None:
        self.sessions = sessions

    async def list_all(self) -> list[LoggedOnSession]:
        return list(reversed(self.sessions))  # the store promises no order


class MemoryLicenses:
    """``LicenseCounter`` with a fixed usage."""

    def __init__(self, usage: LicenseUsage) -> None:
        self._usage = usage

    async def usage(self) -> LicenseUsage:
        return self._usage


class MemoryServers:
    """``LiveServers`` with a fixed list."""

    def __init__(self, servers: list[ServerInfo]) -> None:
        self._servers = servers

    async def servers(self) -> list[ServerInfo]:
        return list(self._servers)


def _session(n: int, server_id: str = "uc-1", admin: bool = False) -> LoggedOnSession:
    return LoggedOnSession(
        f"s{n:04d}", f"u{n}", f"user{n}", server_id, "cli", 1_700_000_000.0 + n / 10, admin
    )


def _views(
    sessions: list[LoggedOnSession],
    usage: LicenseUsage | None = None,
    servers: list[ServerInfo] | None = None,
) -> tuple[AdminViews, MemorySessions]:
    store = MemorySessions(sessions)
    ports: tuple[LoggedOnSessions, LicenseCounter, LiveServers] = (
        store,
        MemoryLicenses(usage or LicenseUsage(0)),
        MemoryServers(servers or []),
    )
    return AdminViews(*ports), store


async def _all_pages(views: AdminViews, wanted: SessionFilter, size: int) -> list[list[str]]:
    pages: list[list[str]] = []
    token = ""
    while True:
        page, token = await views.list_sessions(wanted, size, token)
        pages.append([s.session_id for s in page])
        if not token:
            return pages


async def test_sessions_are_paged_oldest_login_first_without_gaps_or_repeats() -> None:
    views, _ = _views([_session(n) for n in range(7)])
    pages = await _all_pages(views, SessionFilter(), 3)
    assert pages == [["s0000", "s0001", "s0002"], ["s0003", "s0004", "s0005"], ["s0006"]]


async def test_a_logout_between_pages_does_not_shift_the_rest() -> None:
    views, store = _views([_session(n) for n in range(6)])
    first, token = await views.list_sessions(SessionFilter(), 3, "")
    assert [s.session_id for s in first] == ["s0000", "s0001", "s0002"]
    del store.sessions[1]  # one of the shown sessions ended
    second, token = await views.list_sessions(SessionFilter(), 3, token)
    assert [s.session_id for s in second] == ["s0003", "s0004", "s0005"]
    assert token == ""


async def test_filters_by_server_and_admins_and_tokens_stick_to_their_filter() -> None:
    sessions = [_session(n, "uc-1" if n % 2 else "uc-2", admin=n % 3 == 0) for n in range(9)]
    views, _ = _views(sessions)
    page, _ = await views.list_sessions(SessionFilter(server_id="uc-2"), 0, "")
    assert [s.session_id for s in page] == ["s0000", "s0002", "s0004", "s0006", "s0008"]
    page, _ = await views.list_sessions(SessionFilter(admins_only=True), 0, "")
    assert [s.session_id for s in page] == ["s0000", "s0003", "s0006"]
    _, token = await views.list_sessions(SessionFilter(server_id="uc-2"), 2, "")
    with pytest.raises(InvalidArgument) as other_filter:
        await views.list_sessions(SessionFilter(server_id="uc-1"), 2, token)
    assert other_filter.value.violations[0].field == "page_token"


async def test_page_sizes_default_cap_and_refuse_negative_and_tokens_are_not_offsets() -> None:
    views, _ = _views([_session(n) for n in range(DEFAULT_SESSIONS_PAGE + 5)])
    page, token = await views.list_sessions(SessionFilter(), 0, "")
    assert len(page) == DEFAULT_SESSIONS_PAGE and token
    page, token = await views.list_sessions(SessionFilter(), MAX_PAGE_SIZE * 10, "")
    assert len(page) == DEFAULT_SESSIONS_PAGE + 5 and token == ""
    for bad_size, bad_token, field in ((-1, "", "page_size"), (1, "3", "page_token")):
        with pytest.raises(InvalidArgument) as refused:
            await views.list_sessions(SessionFilter(), bad_size, bad_token)
        assert refused.value.violations[0].field == field


async def test_license_pool_and_servers_by_role() -> None:
    uc = ServerInfo("uc-1", ServerRole.UCSERVER, "127.0.0.1:1", degraded=True)
    lookup = ServerInfo("lookup-1", ServerRole.LOOKUP, "127.0.0.1:2", draining=True)
    media = ServerInfo(
        "media-1", ServerRole.MEDIA, "127.0.0.1:3", start_time=datetime(2026, 1, 1, tzinfo=UTC)
    )
    views, _ = _views([], LicenseUsage(10, {"uc-1": 3, "uc-2": 4}), [uc, lookup, media])
    pool = await views.license_pool()
    assert (pool.total, pool.in_use) == (10, 7)
    assert await views.servers() == [uc, lookup, media]
    assert await views.servers(ServerRole.UCSERVER) == [uc]
    assert [state_of(s) for s in (uc, lookup, media)] == [
        ServerState.DEGRADED,
        ServerState.DRAINING,
        ServerState.SERVING,
    ]
    both = ServerInfo("uc-2", ServerRole.UCSERVER, "a", draining=True, degraded=True)
    assert state_of(both) is ServerState.DRAINING  # going away wins
