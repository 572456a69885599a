"""The calls API of ``ProcallClient``: place, answer, end and pick up calls, negotiate media,
manage forwarding.

Every change of a call also reaches the parties' event streams as a ``CallChanged``; these
methods return the call as the server left it. Media is negotiated by the application's
WebRTC peer (``procall.client.Softphone`` does it all for an aiortc peer): it sends its SDP
offer with ``negotiate_media`` and applies the answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import grpc

from procall.api.call.v1 import call_service_pb2 as call_pb
from procall.api.call.v1 import call_service_pb2_grpc as call_grpc
from procall.client._models import Call, ForwardingRule

__all__ = ["CallMethods"]

R = TypeVar("R")
Metadata = tuple[tuple[str, str], ...]
_Invoke = Callable[[grpc.aio.Channel, Metadata, float], Awaitable[R]]

#: Deadline of ``negotiate_media`` at least: the MediaServer gathers ICE candidates first.
NEGOTIATE_TIMEOUT = 15.0


class CallMethods:
    """The calls methods of ``ProcallClient`` (a mixin: ``_invoke`` runs a call on the home
    server, following moves and logging in again)."""

    async def _invoke(self, invoke: _Invoke[R], *, relogin: bool = True) -> R:
        raise NotImplementedError  # pragma: no cover - ProcallClient provides it

    async def place_call(
        self,
        user_id: str = "",
        *,
        username: str = "",
        video: bool = False,
        request_id: str | None = None,
    ) -> Call:
        """Call ``user_id`` (or the user whose login name is ``username``); returns the new
        call (``initiating`` or ``ringing``).

        The callee's forwarding rules apply (``target_user_id`` says who it rings for).
        ``request_id`` makes the place idempotent: a retry with the same id returns the same
        call (one is made up when not given, and reused by this method's own retries).
        """
        request = call_pb.PlaceCallRequest(
            callee_user_id=user_id,
            callee_username=username,
            video=video,
            request_id=request_id or str(uuid.uuid4()),
        )
        reply = await self._invoke(
            lambda ch, md, t: call_grpc.CallServiceStub(ch).PlaceCall(
                request, metadata=md, timeout=t
            )
        )
        return Call.from_proto(reply.call)

    async def answer_call(self, call_id: str) -> Call:
        """Answer a call ringing for the user; this session becomes the answering one
        (the one that negotiates the callee's media)."""
        request = call_pb.AnswerCallRequest(call_id=call_id)
        reply = await self._invoke(
            lambda ch, md, t: call_grpc.CallServiceStub(ch).AnswerCall(
                request, metadata=md, timeout=t
            )
        )
        return Call.from_proto(reply.call)

    async def decline_call(self, call_id: str) -> Call:
        """Decline a call ringing for the user (it ends ``declined``)."""
        request = call_pb.DeclineCallRequest(call_id=call_id)
        reply = await self._invoke(
            lambda ch, md, t: call_grpc.CallServiceStub(ch).DeclineCall(
                request, metadata=md, timeout=t
            )
        )
        return Call.from_proto(reply.call)

    async def hang_up(self, call_id: str) -> Call:
        """End a call the user is a party of (``hangup``), or cancel it while it rings."""
        request = call_pb.HangUpRequest(call_id=call_id)
        reply = await self._invoke(
            lambda ch, md, t: call_grpc.CallServiceStub(ch).HangUp(request, metadata=md, timeout=t)
        )
        return Call.from_proto(reply.call)

    async def pick_up_call(self, call_id: str) -> Call:
        """Answer a call ringing for someone else (pick-up group or ``calls.pickup``
        delegation); of concurrent pick-ups one wins, the others get FAILED_PRECONDITION."""
        request = call_pb.PickUpCallRequest(call_id=call_id)
        reply = await self._invoke(
            lambda ch, md, t: call_grpc.CallServiceStub(ch).PickUpCall(
                request, metadata=md, timeout=t
            )
        )
        return Call.from_proto(reply.call)

    async def get_call(self, call_id: str) -> Call:
        """One call the user is a party of."""
        request = call_pb.GetCallRequest(call_id=call_id)
        reply = await self._invoke(
            lambda ch, md, t: call_grpc.CallServiceStub(ch).GetCall(request, metadata=md, timeout=t)
        )
        return Call.from_proto(reply.call)

    async def list_active_calls(self) -> list[Call]:
        """The user's calls that have not ended."""
        request = call_pb.ListActiveCallsRequest()
        reply = await self._invoke(
            lambda ch, md, t: call_grpc.CallServiceStub(ch).ListActiveCalls(
                request, metadata=md, timeout=t
            )
        )
        return [Call.from_proto(call) for call in reply.calls]

    async def negotiate_media(self, call_id: str, sdp_offer: str) -> tuple[str, str]:
        """Send a WebRTC SDP offer to the call's MediaServer; returns ``(sdp_answer,
        media_server_id)``.

        The caller may negotiate while the call rings, the callee once it has answered,
        from the answering session. After a ``CallChanged`` naming another
        ``media_server_id`` (the server failed) negotiate again with a new peer connection.
        """
        request = call_pb.NegotiateMediaRequest(call_id=call_id, sdp_offer=sdp_offer)
        reply = await self._invoke(
            lambda ch, md, t: call_grpc.CallServiceStub(ch).NegotiateMedia(
                request, metadata=md, timeout=max(t, NEGOTIATE_TIMEOUT)
            )
        )
        return reply.sdp_answer, reply.media_server_id

    async def get_forwarding(self, user_id: str = "") -> list[ForwardingRule]:
        """A user's forwarding rules (the user's own when ``user_id`` is empty), in the
        order they are checked."""
        request = call_pb.GetForwardingRequest(user_id=user_id)
        reply = await self._invoke(
            lambda ch, md, t: call_grpc.CallServiceStub(ch).GetForwarding(
                request, metadata=md, timeout=t
            )
        )
        return [ForwardingRule.from_proto(rule) for rule in reply.rules]

    async def set_forwarding(
        self, rules: Sequence[ForwardingRule], user_id: str = ""
    ) -> list[ForwardingRule]:
        """Replace a user's forwarding rules (another user's needs the ``calls.forward``
        delegation); returns the rules as stored. An empty list removes them all."""
        request = call_pb.SetForwardingRequest(
            user_id=user_id, rules=[rule.to_proto() for rule in rules]
        )
        reply = await self._invoke(
            lambda ch, md, t: call_grpc.CallServiceStub(ch).SetForwarding(
                request, metadata=md, timeout=t
            )
        )
        return [ForwardingRule.from_proto(rule) for rule in reply.rules]
