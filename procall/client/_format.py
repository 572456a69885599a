"""One-line text forms of presences and events, for the ``procall client`` output."""

from __future__ import annotations

from datetime import datetime

from procall.client._events import (
    CallChanged,
    ClientEvent,
    Connected,
    ConversationChanged,
    Disconnected,
    JournalEntryAdded,
    MessageCreated,
    PresenceChanged,
    ReadReceipt,
    Redirected,
    Resynced,
    SessionClosed,
    TypingChanged,
    UnknownEvent,
)
from procall.client._models import Presence, TelephonyState

__all__ = ["format_event", "format_presence"]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def format_presence(presence: Presence) -> str:
    """``<user_id>  <availability>  "<note>"  v<version>`` plus telephony and delegate."""
    parts = [presence.user_id, presence.availability.value]
    if presence.note:
        parts.append(f'"{_one_line(presence.note)}"')
    parts.append(f"v{presence.version}")
    if presence.telephony_state not in (TelephonyState.UNSPECIFIED, TelephonyState.IDLE):
        parts.append(f"phone:{presence.telephony_state.value}")
    if presence.set_by_user_id:
        parts.append(f"(set by {presence.set_by_user_id})")
    return "  ".join(parts)


def _describe(event: ClientEvent) -> str:
    match event:
        case Connected(server=server, session_id=session_id, resumed=resumed):
            how = "resumed" if resumed else "new stream"
            where = f"{server.server_id or '?'} ({server.address})"
            return f"connected to {where}, {how}, session {session_id}"
        case Disconnected(reason=reason, retry_in=retry_in):
            return f"disconnected: {_one_line(reason)}; retrying in {retry_in:.1f} s"
        case Redirected(server=server, reason=reason):
            return (
                f"redirected to {server.server_id or '?'} ({server.address}): {_one_line(reason)}"
            )
        case Resynced(reason=reason, contacts=contacts):
            return f"resynced ({_one_line(reason)}): {len(contacts)} contact(s) refreshed"
        case SessionClosed(reason=reason):
            return f"session closed: {_one_line(reason)}"
        case PresenceChanged():
            return f"presence  {format_presence(event.presence)}"
        case MessageCreated():
            return (
                f"message  {event.conversation_id} #{event.message_id} from "
                f"{event.sender_user_id}: {_one_line(event.text)}"
            )
        case ReadReceipt():
            return f"read  {event.conversation_id} {event.user_id} up to #{event.read_message_id}"
        case TypingChanged():
            state = "typing" if event.typing else "stopped typing"
            return f"typing  {event.conversation_id} {event.user_id} {state}"
        case ConversationChanged():
            what = "removed" if event.removed else "changed"
            return f"conversation  {event.conversation_id} {what}"
        case CallChanged():
            ended = f" ({event.end_reason})" if event.end_reason else ""
            return (
                f"call  {event.call_id} {event.state}{ended} "
                f"{event.caller_user_id} -> {event.callee_user_id}"
            )
        case JournalEntryAdded():
            return f"journal  {event.kind} {event.peer_user_id} {_one_line(event.text)}".rstrip()
        case UnknownEvent(payload=payload):
            return f"event  {payload or 'unknown'} (not known to this client)"
    return type(event).__name__


def format_event(event: ClientEvent, now: datetime | None = None) -> str:
    """``HH:MM:SS #<sequence> <what happened>``; client-side events show ``#-``."""
    when = (event.time.astimezone() if event.time else now or datetime.now()).strftime("%H:%M:%S")
    number = f"#{event.sequence}" if event.sequence else "#-"
    return f"{when} {number:>5} {_describe(event)}"
