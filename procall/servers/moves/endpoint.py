"""The receiving side of the move calls between UCServers (``PeerService.MoveUsers``,
``AcceptSessions``, ``SetDraining``), over the ``SessionMover`` of this server."""

from __future__ import annotations

from collections.abc import Callable

from procall.api.session.v1 import session_pb2
from procall.errors import InvalidArgument
from procall.mesh.peer.v1 import peer_service_pb2 as peer_pb
from procall.servers.moves.peers import handover_from_proto
from procall.session.manager import SessionManager
from procall.session.moves import SessionMover

__all__ = ["MoveEndpoint"]

#: Most users one MoveUsers call may name.
MAX_USERS_PER_CALL = 1000


class MoveEndpoint:
    """What a UCServer does when a peer moves users out of or into it, or drains it."""

    def __init__(
        self,
        manager: SessionManager[session_pb2.Event],
        mover: SessionMover[session_pb2.Event],
        forget_home: Callable[[str], None],
        draining_changed: Callable[[], None] = lambda: None,
    ) -> None:
        """``forget_home`` drops a user's cached home (this server routes it anew);
        ``draining_changed`` sends a heartbeat at once."""
        self._manager = manager
        self._mover = mover
        self._forget = forget_home
        self._draining_changed = draining_changed

    async def move_users(self, request: peer_pb.MoveUsersRequest) -> peer_pb.MoveUsersResponse:
        """Hand the sessions of users homed here over to the target and redirect them."""
        if not request.target_server_id or not request.target_address:
            raise InvalidArgument.field("target_server_id", "and target_address are required")
        if len(request.user_ids) > MAX_USERS_PER_CALL:
            raise InvalidArgument.field("user_ids", f"at most {MAX_USERS_PER_CALL} at once")
        users = list(request.user_ids)
        count = await self._mover.move_out(users, request.target_server_id, request.target_address)
        for user_id in users:
            self._forget(user_id)
        return peer_pb.MoveUsersResponse(redirected_sessions=count)

    async def accept_sessions(
        self, request: peer_pb.AcceptSessionsRequest
    ) -> peer_pb.AcceptSessionsResponse:
        """Take over sessions handed over by their old home."""
        handovers = [handover_from_proto(s) for s in request.sessions]
        accepted = await self._mover.move_in(handovers)
        return peer_pb.AcceptSessionsResponse(accepted=accepted)

    async def set_draining(
        self, request: peer_pb.SetDrainingRequest
    ) -> peer_pb.SetDrainingResponse:
        """Start or end draining: logins here are refused while it lasts."""
        self._manager.draining = request.draining
        self._draining_changed()
        return peer_pb.SetDrainingResponse(local_users=len(self._manager.hub.users()))
