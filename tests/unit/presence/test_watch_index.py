"""The WatchIndex: which local users watch which users, and which users start or stop being
watched from this server when one watcher's contacts change."""

from __future__ import annotations

from procall.presence.manager import WatchIndex


def test_setting_contacts_reports_only_users_newly_watched_or_no_longer_watched() -> None:
    index = WatchIndex()
    assert index.set_contacts("alice", ["bob", "carol"]) == ({"bob", "carol"}, set())
    # dave already watches bob: only erin is new here
    assert index.set_contacts("dave", ["bob", "erin"]) == ({"erin"}, set())
    assert index.watchers_of("bob") == {"alice", "dave"}

    # alice drops bob (dave still watches him) and carol (no one else does), adds erin
    assert index.set_contacts("alice", ["erin"]) == (set(), {"carol"})
    assert index.watchers_of("bob") == {"dave"}
    assert index.watchers_of("erin") == {"alice", "dave"}

    assert index.set_contacts("dave", []) == (set(), {"bob"})
    assert index.set_contacts("alice", []) == (set(), {"erin"})
    assert index.watched() == set()
