"""A watcher's view: each change reported once, whatever the mix of listings and events."""

from __future__ import annotations

from dataclasses import replace

from procall.routing import (
    ChangeKind,
    Listing,
    ServerInfo,
    ServerObserved,
    ServerRole,
    TopologyView,
)

NOW = 1_735_689_600.0  # 2025-01-01 UTC
UC = ServerInfo("uc-1", ServerRole.UCSERVER, "h:1", epoch=5, capacity=10, heartbeat_time=NOW)
MEDIA = ServerInfo("m-1", ServerRole.MEDIA, "h:2", epoch=6, capacity=10, heartbeat_time=NOW)


def kinds(changes: list[object]) -> list[tuple[ChangeKind, str]]:
    return [(c.kind, c.server.server_id) for c in changes]  # type: ignore[attr-defined]


def test_first_listing_joins_everything_in_id_order() -> None:
    view = TopologyView()
    assert kinds(view.observe(Listing((UC, MEDIA)))) == [
        (ChangeKind.JOINED, "m-1"),
        (ChangeKind.JOINED, "uc-1"),
    ]


def test_updates_need_a_real_change() -> None:
    view = TopologyView()
    view.observe(Listing((UC,)))
    renewed = replace(UC, heartbeat_time=NOW + 1)
    assert view.apply("uc-1", renewed) is None
    change = view.apply("uc-1", replace(UC, load=3))
    assert change is not None and change.kind is ChangeKind.UPDATED and change.server.load == 3
    restarted = view.apply("uc-1", replace(UC, load=3, epoch=9))
    assert restarted is not None and restarted.kind is ChangeKind.UPDATED


def test_left_carries_the_last_known_info_and_is_reported_once() -> None:
    view = TopologyView()
    view.observe(Listing((UC,)))
    view.apply("uc-1", replace(UC, load=4))
    left = view.observe(ServerObserved("uc-1", None))
    assert [(c.kind, c.server.load) for c in left] == [(ChangeKind.LEFT, 4)]
    assert view.observe(ServerObserved("uc-1", None)) == []
    assert view.observe(Listing(())) == []  # a listing saying the same adds nothing
    assert view.apply("never-seen", None) is None


def test_a_listing_after_a_gap_reports_only_the_differences() -> None:
    view = TopologyView()
    view.observe(Listing((UC, MEDIA)))
    other = ServerInfo("uc-2", ServerRole.UCSERVER, "h:3", epoch=7, capacity=10)
    changes = view.observe(Listing((replace(UC, load=1), other)))
    assert kinds(changes) == [
        (ChangeKind.LEFT, "m-1"),
        (ChangeKind.UPDATED, "uc-1"),
        (ChangeKind.JOINED, "uc-2"),
    ]
    assert set(view.servers) == {"uc-1", "uc-2"}


def test_role_filter() -> None:
    view = TopologyView(ServerRole.MEDIA)
    assert kinds(view.observe(Listing((UC, MEDIA)))) == [(ChangeKind.JOINED, "m-1")]
    assert view.apply("uc-1", replace(UC, load=1)) is None
    assert view.apply("uc-1", None) is None
    # an id that comes back in another role leaves the filtered view
    moved = view.apply("m-1", replace(MEDIA, role=ServerRole.UCSERVER))
    assert moved is not None and moved.kind is ChangeKind.LEFT
