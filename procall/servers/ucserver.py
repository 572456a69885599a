"""Composition root of a UCServer (``procall serve ucserver``)."""

from __future__ import annotations

from procall.api.admin.v1 import admin_service_pb2 as admin_pb
from procall.api.admin.v1 import admin_service_pb2_grpc as admin_grpc
from procall.api.call.v1 import call_service_pb2 as call_pb
from procall.api.call.v1 import call_service_pb2_grpc as call_grpc
from procall.api.chat.v1 import chat_service_pb2 as chat_pb
from procall.api.chat.v1 import chat_service_pb2_grpc as chat_grpc
from procall.api.journal.v1 import journal_service_pb2 as journal_pb
from procall.api.journal.v1 import journal_service_pb2_grpc as journal_grpc
from procall.api.presence.v1 import presence_service_pb2 as presence_pb
from procall.api.presence.v1 import presence_service_pb2_grpc as presence_grpc
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.mesh.peer.v1 import peer_service_pb2 as peer_pb
from procall.mesh.peer.v1 import peer_service_pb2_grpc as peer_grpc
from procall.servers._redis_hooks import connect_redis
from procall.servers.app import ServerApp, binding, not_yet_served
from procall.settings import Settings

__all__ = ["build_ucserver"]


async def build_ucserver(settings: Settings) -> ServerApp:
    """Wire the client-facing services, the admin service and the peer mesh."""
    redis = await connect_redis(settings)

    async def close_redis(_: ServerApp) -> None:
        await redis.aclose()

    services = [
        binding(
            not_yet_served(session_grpc.SessionServiceServicer),
            session_pb,
            session_grpc.add_SessionServiceServicer_to_server,
            "SessionService",
        ),
        binding(
            not_yet_served(presence_grpc.PresenceServiceServicer),
            presence_pb,
            presence_grpc.add_PresenceServiceServicer_to_server,
            "PresenceService",
        ),
        binding(
            not_yet_served(chat_grpc.ChatServiceServicer),
            chat_pb,
            chat_grpc.add_ChatServiceServicer_to_server,
            "ChatService",
        ),
        binding(
            not_yet_served(call_grpc.CallServiceServicer),
            call_pb,
            call_grpc.add_CallServiceServicer_to_server,
            "CallService",
        ),
        binding(
            not_yet_served(journal_grpc.JournalServiceServicer),
            journal_pb,
            journal_grpc.add_JournalServiceServicer_to_server,
            "JournalService",
        ),
        binding(
            not_yet_served(admin_grpc.AdminServiceServicer),
            admin_pb,
            admin_grpc.add_AdminServiceServicer_to_server,
            "AdminService",
        ),
        binding(
            not_yet_served(peer_grpc.PeerServiceServicer),
            peer_pb,
            peer_grpc.add_PeerServiceServicer_to_server,
            "PeerService",
        ),
    ]
    return ServerApp("ucserver", settings, services, on_stop=[close_redis])
