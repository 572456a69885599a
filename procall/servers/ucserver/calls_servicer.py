"""CallService (thin: decode, call the call use cases, encode)."""

from __future__ import annotations

import grpc

from procall.api.call.v1 import call_service_pb2 as call_pb
from procall.api.call.v1 import call_service_pb2_grpc as call_grpc
from procall.calls.forwarding import ForwardingService
from procall.calls.service import Calls
from procall.servers.codecs.calls import call_to_proto
from procall.servers.codecs.forwarding import rules_from_proto, rules_to_proto
from procall.servers.runtime.auth import current_claims
from procall.telemetry.tracing import stamp

__all__ = ["CallServicer"]

Context = grpc.aio.ServicerContext[object, object]


class CallServicer(call_grpc.CallServiceServicer):
    """Decodes requests, calls :class:`Calls`, encodes replies."""

    def __init__(self, calls: Calls, forwarding: ForwardingService) -> None:
        self._calls = calls
        self._forwarding = forwarding

    async def PlaceCall(
        self, request: call_pb.PlaceCallRequest, context: Context
    ) -> call_pb.PlaceCallResponse:
        claims = current_claims()
        trace_context: dict[str, str] = {}
        stamp(trace_context)  # the call's media negotiations join this trace
        call = await self._calls.place(
            claims.user_id,
            claims.session_id,
            request.callee_user_id,
            request.video,
            request.request_id,
            request.callee_username,
            trace_context,
        )
        return call_pb.PlaceCallResponse(call=call_to_proto(call))

    async def AnswerCall(
        self, request: call_pb.AnswerCallRequest, context: Context
    ) -> call_pb.AnswerCallResponse:
        claims = current_claims()
        call = await self._calls.answer(claims.user_id, claims.session_id, request.call_id)
        return call_pb.AnswerCallResponse(call=call_to_proto(call))

    async def DeclineCall(
        self, request: call_pb.DeclineCallRequest, context: Context
    ) -> call_pb.DeclineCallResponse:
        call = await self._calls.decline(current_claims().user_id, request.call_id)
        return call_pb.DeclineCallResponse(call=call_to_proto(call))

    async def HangUp(
        self, request: call_pb.HangUpRequest, context: Context
    ) -> call_pb.HangUpResponse:
        call = await self._calls.hang_up(current_claims().user_id, request.call_id)
        return call_pb.HangUpResponse(call=call_to_proto(call))

    async def PickUpCall(
        self, request: call_pb.PickUpCallRequest, context: Context
    ) -> call_pb.PickUpCallResponse:
        claims = current_claims()
        call = await self._calls.pick_up(claims.user_id, claims.session_id, request.call_id)
        return call_pb.PickUpCallResponse(call=call_to_proto(call))

    async def NegotiateMedia(
        self, request: call_pb.NegotiateMediaRequest, context: Context
    ) -> call_pb.NegotiateMediaResponse:
        claims = current_claims()
        answer, call = await self._calls.negotiate(
            claims.user_id, claims.session_id, request.call_id, request.sdp_offer
        )
        return call_pb.NegotiateMediaResponse(
            sdp_answer=answer, media_server_id=call.media_server_id
        )

    async def GetCall(
        self, request: call_pb.GetCallRequest, context: Context
    ) -> call_pb.GetCallResponse:
        call = await self._calls.get(current_claims().user_id, request.call_id)
        return call_pb.GetCallResponse(call=call_to_proto(call))

    async def ListActiveCalls(
        self, request: call_pb.ListActiveCallsRequest, context: Context
    ) -> call_pb.ListActiveCallsResponse:
        calls = await self._calls.active(current_claims().user_id)
        return call_pb.ListActiveCallsResponse(calls=[call_to_proto(c) for c in calls])

    async def GetForwarding(
        self, request: call_pb.GetForwardingRequest, context: Context
    ) -> call_pb.GetForwardingResponse:
        rules = await self._forwarding.get(current_claims().user_id, request.user_id)
        return call_pb.GetForwardingResponse(rules=rules_to_proto(rules))

    async def SetForwarding(
        self, request: call_pb.SetForwardingRequest, context: Context
    ) -> call_pb.SetForwardingResponse:
        rules = await self._forwarding.set(
            current_claims().user_id, request.user_id, rules_from_proto(request.rules)
        )
        return call_pb.SetForwardingResponse(rules=rules_to_proto(rules))
