"""Chat: 1:1 and group conversations, messages, read markers and typing (transport-free).

The package re-exports the model; the use cases live in ``procall.chat.conversations``
and ``procall.chat.messaging`` (imported from there, so that the ports can be shared with
the durable write path without import cycles).
"""

from procall.chat.model import (
    ChatMessage,
    Conversation,
    ConversationKind,
    MemberConversation,
    ReadMarker,
    direct_conversation_id,
)

__all__ = [
    "ChatMessage",
    "Conversation",
    "ConversationKind",
    "MemberConversation",
    "ReadMarker",
    "direct_conversation_id",
]
