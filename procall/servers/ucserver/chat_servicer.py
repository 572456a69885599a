"""ChatService: conversations and messages (thin: decode, call the domain, encode)."""

from __future__ import annotations

import grpc

from procall.api.chat.v1 import chat_service_pb2 as chat_pb
from procall.api.chat.v1 import chat_service_pb2_grpc as chat_grpc
from procall.api.session.v1 import session_pb2
from procall.chat.conversations import Conversations
from procall.chat.messaging import Messaging
from procall.errors import InvalidArgument
from procall.servers.codecs.chat import conversation_to_proto, kind_from_proto, message_to_proto
from procall.servers.runtime.auth import current_claims
from procall.session.manager import SessionManager

__all__ = ["ChatServicer"]

Context = grpc.aio.ServicerContext[object, object]


class ChatServicer(chat_grpc.ChatServiceServicer):
    """Decodes requests, calls the chat use cases, encodes replies."""

    def __init__(
        self,
        conversations: Conversations,
        messaging: Messaging,
        sessions: SessionManager[session_pb2.Event],
    ) -> None:
        self._conversations = conversations
        self._messaging = messaging
        self._sessions = sessions

    def _caller(self, context: Context) -> str:
        return current_claims().user_id

    async def CreateConversation(
        self, request: chat_pb.CreateConversationRequest, context: Context
    ) -> chat_pb.CreateConversationResponse:
        view = await self._conversations.create(
            self._caller(context),
            kind_from_proto(request.kind),
            request.title,
            list(request.member_user_ids),
            request.request_id,
        )
        return chat_pb.CreateConversationResponse(conversation=conversation_to_proto(view))

    async def GetConversation(
        self, request: chat_pb.GetConversationRequest, context: Context
    ) -> chat_pb.GetConversationResponse:
        view = await self._conversations.get(self._caller(context), request.conversation_id)
        return chat_pb.GetConversationResponse(conversation=conversation_to_proto(view))

    async def ListConversations(
        self, request: chat_pb.ListConversationsRequest, context: Context
    ) -> chat_pb.ListConversationsResponse:
        views, token = await self._conversations.list_mine(
            self._caller(context), request.page_size, request.page_token
        )
        return chat_pb.ListConversationsResponse(
            conversations=[conversation_to_proto(v) for v in views], next_page_token=token
        )

    async def UpdateConversation(
        self, request: chat_pb.UpdateConversationRequest, context: Context
    ) -> chat_pb.UpdateConversationResponse:
        paths = set(request.update_mask.paths) or {"title"}
        if paths != {"title"}:
            raise InvalidArgument.field("update_mask", "only `title` can be changed")
        view = await self._conversations.rename(
            self._caller(context), request.conversation.conversation_id, request.conversation.title
        )
        return chat_pb.UpdateConversationResponse(conversation=conversation_to_proto(view))

    async def AddMembers(
        self, request: chat_pb.AddMembersRequest, context: Context
    ) -> chat_pb.AddMembersResponse:
        view = await self._conversations.add_members(
            self._caller(context), request.conversation_id, list(request.user_ids)
        )
        return chat_pb.AddMembersResponse(conversation=conversation_to_proto(view))

    async def RemoveMembers(
        self, request: chat_pb.RemoveMembersRequest, context: Context
    ) -> chat_pb.RemoveMembersResponse:
        view = await self._conversations.remove_members(
            self._caller(context), request.conversation_id, list(request.user_ids)
        )
        return chat_pb.RemoveMembersResponse(conversation=conversation_to_proto(view))

    async def LeaveConversation(
        self, request: chat_pb.LeaveConversationRequest, context: Context
    ) -> chat_pb.LeaveConversationResponse:
        await self._conversations.leave(self._caller(context), request.conversation_id)
        return chat_pb.LeaveConversationResponse()

    async def SendMessage(
        self, request: chat_pb.SendMessageRequest, context: Context
    ) -> chat_pb.SendMessageResponse:
        claims = current_claims()
        message = await self._messaging.send(
            claims.user_id,
            request.conversation_id,
            request.text,
            request.request_id,
            session_id=claims.session_id,
        )
        return chat_pb.SendMessageResponse(message=message_to_proto(message))

    async def ListMessages(
        self, request: chat_pb.ListMessagesRequest, context: Context
    ) -> chat_pb.ListMessagesResponse:
        messages, token = await self._messaging.page(
            self._caller(context),
            request.conversation_id,
            request.direction != chat_pb.LIST_DIRECTION_FORWARD,
            request.page_size,
            request.page_token,
        )
        return chat_pb.ListMessagesResponse(
            messages=[message_to_proto(m) for m in messages], next_page_token=token
        )

    async def MarkRead(
        self, request: chat_pb.MarkReadRequest, context: Context
    ) -> chat_pb.MarkReadResponse:
        unread = await self._messaging.mark_read(
            self._caller(context), request.conversation_id, request.message_id
        )
        return chat_pb.MarkReadResponse(unread_count=unread)

    async def SetTyping(
        self, request: chat_pb.SetTypingRequest, context: Context
    ) -> chat_pb.SetTypingResponse:
        await self._messaging.set_typing(
            self._caller(context), request.conversation_id, request.typing
        )
        return chat_pb.SetTypingResponse()

    async def SearchMessages(
        self, request: chat_pb.SearchMessagesRequest, context: Context
    ) -> chat_pb.SearchMessagesResponse:
        messages, token = await self._messaging.search(
            self._caller(context),
            request.query,
            request.conversation_id,
            request.page_size,
            request.page_token,
        )
        return chat_pb.SearchMessagesResponse(
            messages=[message_to_proto(m) for m in messages], next_page_token=token
        )
