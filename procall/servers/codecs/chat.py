"""Chat and journal: domain objects <-> protobuf messages."""

from __future__ import annotations

from google.protobuf import duration_pb2

from procall.api.chat.v1 import chat_pb2
from procall.api.journal.v1 import journal_pb2
from procall.api.session.v1 import session_pb2
from procall.chat.model import (
    ChatMessage,
    Conversation,
    ConversationKind,
    MemberConversation,
    ReadMarker,
)
from procall.chat.ports import TypingNotice
from procall.journal.model import JournalEntry, JournalKind
from procall.servers.codecs.time import seconds_or_none, timestamp

__all__ = [
    "conversation_event",
    "conversation_to_proto",
    "delivery_key",
    "entry_event",
    "entry_to_proto",
    "kind_from_proto",
    "journal_kind_from_proto",
    "message_event",
    "message_to_proto",
    "receipt_event",
    "seconds_or_none",
    "typing_event",
]


def delivery_key(event: session_pb2.Event) -> tuple[str, str, int] | None:
    """What makes an event a duplicate for a session: a message it already got."""
    if event.WhichOneof("payload") == "message_created":
        message = event.message_created.message
        return ("message", message.conversation_id, message.message_id)
    return None


def kind_from_proto(kind: int) -> ConversationKind | None:
    """The conversation kind, or None when unspecified or unknown."""
    try:
        return ConversationKind(kind)
    except ValueError:
        return None


def journal_kind_from_proto(kind: int) -> JournalKind | None:
    """The journal entry kind, or None when unspecified or unknown."""
    try:
        return JournalKind(kind)
    except ValueError:
        return None


def conversation_to_proto(view: MemberConversation) -> chat_pb2.Conversation:
    """A conversation as its member sees it."""
    conversation = view.conversation
    return chat_pb2.Conversation(
        conversation_id=conversation.conversation_id,
        kind=int(conversation.kind),  # type: ignore[arg-type]
        title=conversation.title,
        member_user_ids=conversation.member_ids,
        create_time=timestamp(conversation.created_at),
        update_time=timestamp(conversation.updated_at),
        last_message_id=conversation.last_message_id,
        read_message_id=view.read_message_id,
        unread_count=view.unread_count,
    )


def message_to_proto(message: ChatMessage) -> chat_pb2.Message:
    """A message."""
    return chat_pb2.Message(
        conversation_id=message.conversation_id,
        message_id=message.message_id,
        sender_user_id=message.sender_id,
        text=message.text,
        create_time=timestamp(message.created_at),
        request_id=message.request_id,
    )


def entry_to_proto(entry: JournalEntry) -> journal_pb2.JournalEntry:
    """A journal entry."""
    proto = journal_pb2.JournalEntry(
        entry_id=entry.entry_id,
        user_id=entry.user_id,
        kind=int(entry.kind),  # type: ignore[arg-type]
        peer_user_id=entry.peer_user_id,
        call_id=entry.call_id,
        event_time=timestamp(entry.event_time),
        text=entry.text,
        request_id=entry.request_id,
    )
    if entry.duration_ms is not None:
        seconds, millis = divmod(entry.duration_ms, 1000)
        proto.duration.CopyFrom(duration_pb2.Duration(seconds=seconds, nanos=millis * 1_000_000))
    return proto


def message_event(message: ChatMessage) -> session_pb2.Event:
    """The session event of a new message."""
    return session_pb2.Event(
        message_created=chat_pb2.MessageCreated(message=message_to_proto(message))
    )


def receipt_event(marker: ReadMarker) -> session_pb2.Event:
    """The session event of a moved read marker."""
    return session_pb2.Event(
        read_receipt=chat_pb2.ReadReceipt(
            conversation_id=marker.conversation_id,
            user_id=marker.user_id,
            read_message_id=marker.read_message_id,
            read_time=timestamp(marker.read_at),
        )
    )


def typing_event(notice: TypingNotice) -> session_pb2.Event:
    """The session event of a typing indication."""
    return session_pb2.Event(
        typing_changed=chat_pb2.TypingChanged(
            conversation_id=notice.conversation_id,
            user_id=notice.user_id,
            typing=notice.typing,
            expire_time=timestamp(notice.expires_at),
        )
    )


def conversation_event(conversation: Conversation, removed: bool) -> session_pb2.Event:
    """The session event of a created or changed conversation (markers are not included)."""
    return session_pb2.Event(
        conversation_changed=chat_pb2.ConversationChanged(
            conversation=conversation_to_proto(MemberConversation(conversation, 0)),
            removed=removed,
        )
    )


def entry_event(entry: JournalEntry) -> session_pb2.Event:
    """The session event of a new journal entry."""
    return session_pb2.Event(
        journal_entry_added=journal_pb2.JournalEntryAdded(entry=entry_to_proto(entry))
    )
