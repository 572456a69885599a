"""Presence rules for what clients ask: update masks, whose capabilities count, paging."""

from __future__ import annotations

import pytest

from procall.errors import InvalidArgument
from procall.paging import MAX_PAGE_SIZE
from procall.presence.model import Availability, Capabilities
from procall.presence.policy import (
    DEFAULT_CONTACTS_PAGE,
    MAX_USERS_PER_REQUEST,
    CallerSession,
    check_user_ids,
    contacts_page,
    requested_change,
)

CAPS = Capabilities(chat=True, audio=True)
LIVE = CallerSession("alice", "s-1", live_here=True)


def _field(error: pytest.ExceptionInfo[InvalidArgument]) -> str:
    (violation,) = error.value.violations
    return violation.field


def test_an_empty_mask_changes_every_field() -> None:
    change = requested_change(LIVE, "alice", [], Availability.BUSY, "in a meeting", CAPS)
    assert change.availability is Availability.BUSY
    assert change.note == "in a meeting"
    assert change.session_capabilities == ("s-1", CAPS)


def test_a_mask_changes_only_what_it_names() -> None:
    change = requested_change(LIVE, "alice", ["note"], Availability.BUSY, "", CAPS)
    assert (change.availability, change.note, change.session_capabilities) == (None, "", None)


def test_unknown_mask_fields_are_refused_by_name() -> None:
    with pytest.raises(InvalidArgument) as refused:
        requested_change(LIVE, "alice", ["note", "mood", "colour"], None, "", CAPS)
    assert _field(refused) == "update_mask"
    assert "colour, mood" in refused.value.message


@pytest.mark.parametrize(
    ("caller", "target"),
    [
        (CallerSession("alice", "s-1", live_here=False), "alice"),  # no live session here
        (CallerSession("bob", "s-2", live_here=True), "alice"),  # a delegate
    ],
)
def test_capabilities_count_only_for_your_own_live_session(
    caller: CallerSession, target: str
) -> None:
    change = requested_change(caller, target, ["capabilities", "availability"], None, "", CAPS)
    assert change.session_capabilities is None
    assert change.availability is None  # not given: left as it is


def test_user_ids_are_checked_and_capped() -> None:
    assert check_user_ids(["a", "b"], "user_ids") == ["a", "b"]
    for bad in ([""], ["u" * 65], ["x"] * (MAX_USERS_PER_REQUEST + 1)):
        with pytest.raises(InvalidArgument) as refused:
            check_user_ids(bad, "user_ids")
        assert _field(refused) == "user_ids"


def _pages(contacts: list[str], size: int) -> list[list[str]]:
    pages, token = [], ""
    while True:
        page, token = contacts_page("alice", contacts, size, token)
        pages.append(page)
        if not token:
            return pages


def test_contacts_are_paged_in_the_order_added() -> None:
    contacts = ["zoe", "bob", "carol", "dave", "erin"]
    assert _pages(contacts, 2) == [["zoe", "bob"], ["carol", "dave"], ["erin"]]
    assert _pages(contacts, 5) == [contacts]
    assert _pages([], 3) == [[]]


def test_page_sizes_default_and_cap() -> None:
    many = [f"u{i}" for i in range(MAX_PAGE_SIZE + 10)]
    page, token = contacts_page("alice", many, 0, "")
    assert len(page) == DEFAULT_CONTACTS_PAGE and token
    page, token = contacts_page("alice", many, MAX_PAGE_SIZE + 10, "")
    assert len(page) == MAX_PAGE_SIZE and token
    with pytest.raises(InvalidArgument) as refused:
        contacts_page("alice", many, -1, "")
    assert _field(refused) == "page_size"


def test_the_next_page_continues_after_the_last_contact_shown_despite_changes() -> None:
    contacts = ["a", "b", "c", "d", "e", "f"]
    first, token = contacts_page("alice", contacts, 2, "")
    assert first == ["a", "b"]
    removed_before = ["b", "c", "d", "e", "f"]  # "a" was removed meanwhile
    assert contacts_page("alice", removed_before, 2, token)[0] == ["c", "d"]
    last_removed = ["a", "c", "d", "e", "f"]  # the last one shown was removed
    assert contacts_page("alice", last_removed, 2, token)[0] == ["c", "d"]


def test_tokens_are_not_offsets_and_belong_to_their_user() -> None:
    contacts = ["a", "b", "c"]
    _, token = contacts_page("alice", contacts, 1, "")
    for user, bad in (("alice", "1"), ("bob", token)):
        with pytest.raises(InvalidArgument) as refused:
            contacts_page(user, contacts, 1, bad)
        assert _field(refused) == "page_token"
