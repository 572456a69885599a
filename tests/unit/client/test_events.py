"""Wire events become typed events; typed events print as one line."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from procall.api.call.v1 import call_pb2
from procall.api.chat.v1 import chat_pb2
from procall.api.journal.v1 import journal_pb2
from procall.api.presence.v1 import presence_pb2
from procall.api.session.v1 import session_pb2
from procall.client import (
    Availability,
    CallChanged,
    Connected,
    ConversationChanged,
    Disconnected,
    JournalEntryAdded,
    MessageCreated,
    Presence,
    PresenceChanged,
    ReadReceipt,
    Redirected,
    Resynced,
    ServerEndpoint,
    SessionClosed,
    TelephonyState,
    TypingChanged,
    UnknownEvent,
    event_from_proto,
)
from procall.client._format import format_event, format_presence


def _event(**payload: object) -> session_pb2.Event:
    event = session_pb2.Event(sequence=7, resume_token="tok", **payload)  # type: ignore[arg-type]
    event.event_time.FromSeconds(1_700_000_000)
    return event


def test_presence_changed() -> None:
    wire = _event(
        presence_changed=presence_pb2.PresenceChanged(
            presence=presence_pb2.Presence(
                user_id="u1",
                availability=presence_pb2.AVAILABILITY_DO_NOT_DISTURB,
                note="focus",
                telephony_state=presence_pb2.TELEPHONY_STATE_ON_THE_PHONE,
                capabilities=presence_pb2.Capabilities(chat=True, audio=True),
                version=12,
                set_by_user_id="u2",
            )
        )
    )
    event = event_from_proto(wire)
    assert event == PresenceChanged(
        "u1", Availability.DO_NOT_DISTURB, "focus", 12, TelephonyState.ON_THE_PHONE, "u2",
        frozenset({"chat", "audio"}), None,
        sequence=7, time=datetime.fromtimestamp(1_700_000_000, UTC),
    )  # fmt: skip
    assert event.raw is wire
    assert isinstance(event, PresenceChanged)
    assert event.presence == Presence(
        "u1", Availability.DO_NOT_DISTURB, "focus", 12, TelephonyState.ON_THE_PHONE,
        frozenset({"chat", "audio"}), None, "u2",
    )  # fmt: skip
    line = format_event(event)
    assert line.endswith('#7 presence  u1  do_not_disturb  "focus"  v12  phone:on_the_phone  '
                         "(set by u2)")  # fmt: skip


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            {"welcome": session_pb2.Welcome(
                session=session_pb2.Session(
                    session_id="s1",
                    home_server=session_pb2.ServerEndpoint(server_id="uc-1", address="h:1"),
                ),
                resumed=True,
            )},
            Connected(ServerEndpoint("uc-1", "h:1"), "s1", True),
        ),
        (
            {"redirect": session_pb2.Redirect(
                server=session_pb2.ServerEndpoint(server_id="uc-2", address="h:2"),
                reason="user moved",
            )},
            Redirected(ServerEndpoint("uc-2", "h:2"), "user moved"),
        ),
        (
            {"session_closed": session_pb2.SessionClosed(reason="logged out")},
            SessionClosed("logged out"),
        ),
        (
            {"message_created": chat_pb2.MessageCreated(message=chat_pb2.Message(
                conversation_id="c1", message_id=3, sender_user_id="u2", text="hi"
            ))},
            MessageCreated("c1", 3, "u2", "hi"),
        ),
        (
            {"read_receipt": chat_pb2.ReadReceipt(
                conversation_id="c1", user_id="u2", read_message_id=3
            )},
            ReadReceipt("c1", "u2", 3),
        ),
        (
            {"typing_changed": chat_pb2.TypingChanged(
                conversation_id="c1", user_id="u2", typing=True
            )},
            TypingChanged("c1", "u2", True),
        ),
        (
            {"conversation_changed": chat_pb2.ConversationChanged(
                conversation=chat_pb2.Conversation(
                    conversation_id="c1", title="team", member_user_ids=["u1", "u2"]
                ),
                removed=False,
            )},
            ConversationChanged("c1", "team", ("u1", "u2"), False),
        ),
        (
            {"call_changed": call_pb2.CallChanged(call=call_pb2.Call(
                call_id="k1", caller_user_id="u1", callee_user_id="u2",
                state=call_pb2.CALL_STATE_ENDED, end_reason=call_pb2.END_REASON_NO_ANSWER,
            ))},
            CallChanged("k1", "ended", "u1", "u2", "", "", "no_answer"),
        ),
        (
            {"journal_entry_added": journal_pb2.JournalEntryAdded(entry=journal_pb2.JournalEntry(
                entry_id="j1", kind=journal_pb2.JOURNAL_ENTRY_KIND_CALL_MISSED,
                peer_user_id="u2", call_id="k1",
            ))},
            JournalEntryAdded("j1", "call_missed", "u2", "k1", ""),
        ),
        ({}, UnknownEvent("")),
    ],
)  # fmt: skip
def test_other_payloads(payload: dict[str, object], expected: object) -> None:
    event = event_from_proto(_event(**payload))
    assert dataclasses.replace(event, sequence=0, time=None) == expected
    assert event.sequence == 7 and event.time is not None
    assert "\n" not in format_event(event)


def test_client_side_events_print_without_sequence() -> None:
    now = datetime(2025, 1, 1, 12, 30, 5)
    assert format_event(Disconnected("UNAVAILABLE: gone", 0.4), now) == (
        "12:30:05    #- disconnected: UNAVAILABLE: gone; retrying in 0.4 s"
    )
    resynced = Resynced("cannot resume", (Presence("u1", Availability.AWAY),))
    assert format_event(resynced, now).endswith("resynced (cannot resume): 1 contact(s) refreshed")
    assert format_presence(Presence("u1", Availability.AWAY, "two\nlines")) == (
        'u1  away  "two lines"  v0'
    )


def test_events_are_immutable() -> None:
    event = SessionClosed("bye")
    with pytest.raises(AttributeError):
        event.reason = "other"  # type: ignore[misc]
