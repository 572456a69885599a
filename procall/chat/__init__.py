"""Chat: 1:1 and group conversations, messages, read markers and typing (transport-free).

The use-cases ``Conversations`` and ``Messaging`` (with ``Membership`` and ``UserCheck``)
work through the ports of ``procall.chat.ports``: the SQL stores, the Redis ``ChatState``
(``procall.storage.redis.chat``), the Directory (``UserDirectory``) and the durable write
path (``MessageWrites``, which ``procall.outbox.DurableWriter`` satisfies).
"""

from procall.chat.conversations import Conversations, UserCheck
from procall.chat.members import Membership
from procall.chat.messaging import Messaging, MessagingLimits
from procall.chat.model import (
    MAX_GROUP_MEMBERS,
    MAX_REQUEST_ID_CHARS,
    MAX_TEXT_BYTES,
    MAX_TITLE_CHARS,
    ChatMessage,
    Conversation,
    ConversationKind,
    MemberConversation,
    ReadMarker,
    direct_conversation_id,
)
from procall.chat.ports import (
    Allocation,
    ChatEventSink,
    ChatState,
    ConversationStore,
    MemberAllocation,
    MessageStore,
    MessageWrites,
    SendConfirmation,
    TypingNotice,
    UserDirectory,
)

__all__ = [
    "MAX_GROUP_MEMBERS",
    "MAX_REQUEST_ID_CHARS",
    "MAX_TEXT_BYTES",
    "MAX_TITLE_CHARS",
    "Allocation",
    "ChatEventSink",
    "ChatMessage",
    "ChatState",
    "Conversation",
    "ConversationKind",
    "ConversationStore",
    "Conversations",
    "MemberAllocation",
    "MemberConversation",
    "Membership",
    "MessageStore",
    "MessageWrites",
    "Messaging",
    "MessagingLimits",
    "ReadMarker",
    "SendConfirmation",
    "TypingNotice",
    "UserCheck",
    "UserDirectory",
    "direct_conversation_id",
]
