"""The rules of a call's life that need no server: telephony and journal entries."""

from __future__ import annotations

from procall.calls.model import Call, CallState, EndReason, telephony_of
from procall.calls.service import journal_entries
from procall.journal.model import JournalKind
from procall.presence.model import TelephonyState

RINGING = Call("c1", "alice", "bob", "bob", CallState.RINGING, create_time=100.0, ring_time=100.0)


def _ended(call: Call, reason: EndReason, at: float = 160.0) -> Call:
    return call.changed(state=CallState.ENDED, end_reason=reason, end_time=at)


def test_telephony_follows_the_call() -> None:
    assert telephony_of(RINGING, "alice") is TelephonyState.DIALING
    assert telephony_of(RINGING, "bob") is TelephonyState.RINGING
    assert telephony_of(RINGING, "carol") is None
    talking = RINGING.changed(state=CallState.CONNECTED, answered_by="bob", answer_time=110.0)
    assert telephony_of(talking, "alice") is TelephonyState.ON_THE_PHONE
    assert telephony_of(talking, "bob") is TelephonyState.ON_THE_PHONE
    picked = RINGING.changed(state=CallState.CONNECTED, answered_by="carol", answer_time=110.0)
    assert telephony_of(picked, "bob") is TelephonyState.IDLE  # stops ringing
    assert telephony_of(picked, "carol") is TelephonyState.ON_THE_PHONE
    assert telephony_of(_ended(picked, EndReason.HANGUP), "carol") is TelephonyState.IDLE


def test_versions_grow_with_each_change() -> None:
    assert RINGING.changed(state=CallState.CONNECTED).version == RINGING.version + 1


def _kinds(call: Call) -> dict[str, tuple[JournalKind, int | None]]:
    return {e.user_id: (e.kind, e.duration_ms) for e in journal_entries(call)}


def test_an_answered_call_is_placed_and_received_with_its_duration() -> None:
    talking = RINGING.changed(state=CallState.CONNECTED, answered_by="bob", answer_time=110.0)
    assert _kinds(_ended(talking, EndReason.HANGUP)) == {
        "alice": (JournalKind.CALL_PLACED, 50_000),
        "bob": (JournalKind.CALL_RECEIVED, 50_000),
    }


def test_unanswered_declined_and_picked_up_calls() -> None:
    assert _kinds(_ended(RINGING, EndReason.NO_ANSWER)) == {
        "alice": (JournalKind.CALL_PLACED, None),
        "bob": (JournalKind.CALL_MISSED, None),
    }
    assert _kinds(_ended(RINGING, EndReason.DECLINED))["bob"] == (JournalKind.CALL_DECLINED, None)
    picked = RINGING.changed(state=CallState.CONNECTED, answered_by="carol", answer_time=130.0)
    assert _kinds(_ended(picked, EndReason.HANGUP)) == {
        "alice": (JournalKind.CALL_PLACED, 30_000),
        "bob": (JournalKind.CALL_PICKED_UP, None),
        "carol": (JournalKind.CALL_PICKED_UP, 30_000),
    }


def test_forwarding_users_get_a_forwarded_entry_and_ids_are_stable() -> None:
    forwarded = RINGING.changed(target="dave", forwarded_from=("bob",))
    kinds = _kinds(_ended(forwarded, EndReason.NO_ANSWER))
    assert kinds["bob"] == (JournalKind.CALL_FORWARDED, None)
    assert kinds["dave"] == (JournalKind.CALL_MISSED, None)
    first = journal_entries(_ended(forwarded, EndReason.NO_ANSWER))
    again = journal_entries(_ended(forwarded, EndReason.NO_ANSWER, at=170.0))
    assert [e.entry_id for e in first] == [e.entry_id for e in again]
