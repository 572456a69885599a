"""Typed events of a client's ``Connect`` stream.

Every event is a small frozen dataclass deriving from ``ClientEvent``, which
carries the stream metadata: ``sequence`` (per session, 1, 2, 3, ...; 0 for
events the client itself reports: ``Connected``, ``Disconnected``,
``Resynced``, and a ``Redirected`` caused by a WRONG_HOME_SERVER error),
``time`` (when it happened on the server) and ``raw`` (the protobuf
``session.v1.Event``, for fields this module does not lift out). Match on the
class::

    async for event in client.events():
        match event:
            case PresenceChanged(user_id=user, availability=Availability.BUSY):
                ...
            case Resynced(contacts=contacts):
                ...  # missed events are lost: rebuild the state from `contacts`

Payloads newer than this SDK arrive as ``UnknownEvent``.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime
from typing import Any

from procall.api.call.v1 import call_pb2
from procall.api.common.v1 import client_feature_pb2
from procall.api.journal.v1 import journal_pb2
from procall.api.session.v1 import session_pb2
from procall.client._models import (
    Availability,
    Call,
    Presence,
    ServerEndpoint,
    TelephonyState,
    datetime_from_proto,
    enum_name,
)

__all__ = [
    "CallChanged",
    "ClientEvent",
    "Connected",
    "ConversationChanged",
    "Disconnected",
    "JournalEntryAdded",
    "MessageCreated",
    "PresenceChanged",
    "ReadReceipt",
    "Redirected",
    "Resynced",
    "SessionClosed",
    "TypingChanged",
    "UnknownEvent",
    "event_from_proto",
]


@dataclass(frozen=True)
class ClientEvent:
    """Base of every event: stream metadata, set by keyword."""

    _: KW_ONLY
    #: Per-session sequence number; 0 for events the client reports itself.
    sequence: int = 0
    #: When it happened on the server (None for client-side events).
    time: datetime | None = None
    #: The wire event, when the event came from the server.
    raw: session_pb2.Event | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Connected(ClientEvent):
    """The stream is open on ``server``; ``resumed`` says no event was missed;
    ``allowed_features`` is what the administrators let this user's clients use
    (``"chat"``, ``"calls"``, ``"video"``, ...; the servers refuse the others)."""

    server: ServerEndpoint
    session_id: str
    resumed: bool
    allowed_features: tuple[str, ...] = ()


@dataclass(frozen=True)
class Disconnected(ClientEvent):
    """The stream dropped; the client reconnects in ``retry_in`` seconds."""

    reason: str
    retry_in: float


@dataclass(frozen=True)
class Redirected(ClientEvent):
    """The session continues on another UCServer (user moved, server draining)."""

    server: ServerEndpoint
    reason: str


@dataclass(frozen=True)
class Resynced(ClientEvent):
    """Events were lost (the server could not resume the stream): refresh your state.

    ``contacts`` is the current presence of every contact, fetched after the new
    stream opened; later events are newer than it (compare ``version``).
    """

    reason: str
    contacts: tuple[Presence, ...]


@dataclass(frozen=True)
class SessionClosed(ClientEvent):
    """The server ended the session; no event follows."""

    reason: str


@dataclass(frozen=True)
class PresenceChanged(ClientEvent):
    """A contact's (or the user's own) presence changed."""

    user_id: str
    availability: Availability
    note: str
    version: int
    telephony_state: TelephonyState = TelephonyState.UNSPECIFIED
    set_by_user_id: str = ""
    capabilities: frozenset[str] = frozenset()
    update_time: datetime | None = None

    @property
    def presence(self) -> Presence:
        """The new presence as a ``Presence``."""
        return Presence(
            user_id=self.user_id,
            availability=self.availability,
            note=self.note,
            version=self.version,
            telephony_state=self.telephony_state,
            capabilities=self.capabilities,
            update_time=self.update_time,
            set_by_user_id=self.set_by_user_id,
        )


@dataclass(frozen=True)
class MessageCreated(ClientEvent):
    """A chat message arrived.

    A message this session sent itself (``ChatService.SendMessage`` over this client's
    channel) does not come back as an event: the ``SendMessage`` response carries it,
    with its id and time, so show it from there. The user's other sessions (another
    device, another ``ProcallClient``) get it here like every other member. Rarely an
    id arrives twice (a retried send is announced again): keep the one you have.
    """

    conversation_id: str
    message_id: int
    sender_user_id: str
    text: str
    create_time: datetime | None = None


@dataclass(frozen=True)
class ReadReceipt(ClientEvent):
    """A member's read marker moved."""

    conversation_id: str
    user_id: str
    read_message_id: int


@dataclass(frozen=True)
class TypingChanged(ClientEvent):
    """A member started or stopped typing."""

    conversation_id: str
    user_id: str
    typing: bool


@dataclass(frozen=True)
class ConversationChanged(ClientEvent):
    """A conversation was created or changed; ``removed`` when the user left it."""

    conversation_id: str
    title: str
    member_user_ids: tuple[str, ...]
    removed: bool


@dataclass(frozen=True)
class CallChanged(ClientEvent):
    """A call of the user changed; ``state`` is ``initiating|ringing|connected|ended``."""

    call_id: str
    state: str
    caller_user_id: str
    callee_user_id: str
    target_user_id: str = ""
    answered_by_user_id: str = ""
    #: Why the call ended (``hangup``, ``declined``, ...); empty until it has.
    end_reason: str = ""
    #: The MediaServer carrying the call; a new one while ``connected`` means the call
    #: moved off a failed server and each party must negotiate its media again.
    media_server_id: str = ""

    @property
    def call(self) -> Call | None:
        """The whole call as a ``Call`` (None for an event not built from the wire)."""
        if self.raw is None or self.raw.WhichOneof("payload") != "call_changed":
            return None
        return Call.from_proto(self.raw.call_changed.call)


@dataclass(frozen=True)
class JournalEntryAdded(ClientEvent):
    """An entry was added to the user's journal; ``kind`` is e.g. ``call_missed``."""

    entry_id: str
    kind: str
    peer_user_id: str
    call_id: str
    text: str


@dataclass(frozen=True)
class UnknownEvent(ClientEvent):
    """An event this SDK does not know (a newer server); ``payload`` names its kind."""

    payload: str


def _endpoint(message: session_pb2.ServerEndpoint) -> ServerEndpoint:
    return ServerEndpoint(message.server_id, message.address)


def event_from_proto(event: session_pb2.Event) -> ClientEvent:
    """The typed event of a wire event."""
    meta: dict[str, Any] = {
        "sequence": event.sequence,
        "time": datetime_from_proto(event.event_time),
        "raw": event,
    }
    kind = event.WhichOneof("payload")
    if kind == "welcome":
        session = event.welcome.session
        allowed = tuple(
            client_feature_pb2.ClientFeature.Name(f).removeprefix("CLIENT_FEATURE_").lower()
            for f in event.welcome.allowed_features
            if f in client_feature_pb2.ClientFeature.values()
        )
        return Connected(
            _endpoint(session.home_server),
            session.session_id,
            event.welcome.resumed,
            allowed,
            **meta,
        )
    if kind == "redirect":
        return Redirected(_endpoint(event.redirect.server), event.redirect.reason, **meta)
    if kind == "session_closed":
        return SessionClosed(event.session_closed.reason, **meta)
    if kind == "presence_changed":
        p = Presence.from_proto(event.presence_changed.presence)
        return PresenceChanged(
            p.user_id, p.availability, p.note, p.version, p.telephony_state,
            p.set_by_user_id, p.capabilities, p.update_time, **meta,
        )  # fmt: skip
    if kind == "message_created":
        m = event.message_created.message
        return MessageCreated(
            m.conversation_id, m.message_id, m.sender_user_id, m.text,
            datetime_from_proto(m.create_time), **meta,
        )  # fmt: skip
    if kind == "read_receipt":
        r = event.read_receipt
        return ReadReceipt(r.conversation_id, r.user_id, r.read_message_id, **meta)
    if kind == "typing_changed":
        t = event.typing_changed
        return TypingChanged(t.conversation_id, t.user_id, t.typing, **meta)
    if kind == "conversation_changed":
        c = event.conversation_changed
        conv = c.conversation
        return ConversationChanged(
            conv.conversation_id, conv.title, tuple(conv.member_user_ids), c.removed, **meta
        )
    if kind == "call_changed":
        call = event.call_changed.call
        return CallChanged(
            call.call_id,
            enum_name(call_pb2.CallState, call.state, "CALL_STATE_"),
            call.caller_user_id,
            call.callee_user_id,
            call.target_user_id,
            call.answered_by_user_id,
            enum_name(call_pb2.EndReason, call.end_reason, "END_REASON_"),
            call.media_server_id,
            **meta,
        )
    if kind == "journal_entry_added":
        e = event.journal_entry_added.entry
        return JournalEntryAdded(
            e.entry_id,
            enum_name(journal_pb2.JournalEntryKind, e.kind, "JOURNAL_ENTRY_KIND_"),
            e.peer_user_id,
            e.call_id,
            e.text,
            **meta,
        )
    return UnknownEvent(kind or "", **meta)
