"""A softphone client in tests: call stubs, the event stream, media negotiation."""

from __future__ import annotations

import asyncio

import grpc

from procall.api.call.v1 import call_pb2
from procall.api.call.v1 import call_service_pb2 as call_pb
from procall.api.call.v1 import call_service_pb2_grpc as call_grpc
from procall.api.journal.v1 import journal_service_pb2_grpc as journal_grpc
from procall.api.presence.v1 import presence_service_pb2_grpc as presence_grpc
from tests.helpers.media import LoopbackPeer, tone_power
from tests.helpers.streams import EventStream
from tests.helpers.topology import auth
from tests.helpers.video import VideoPeer

__all__ = ["ALICE_HZ", "BOB_HZ", "Phone", "hear_each_other"]

ALICE_HZ = 440.0
BOB_HZ = 880.0


class Phone:
    """One logged-on client of a user: stubs on its home server and its event stream."""

    def __init__(self, name: str, user_id: str, address: str, token: str, session: str) -> None:
        self.name = name
        self.user_id = user_id
        self.address = address
        self.session_id = session
        self.metadata = auth(token)
        self.token = token
        self.channel = grpc.aio.insecure_channel(address)
        self.calls = call_grpc.CallServiceStub(self.channel)
        self.journal = journal_grpc.JournalServiceStub(self.channel)
        self.presence = presence_grpc.PresenceServiceStub(self.channel)
        self.events = EventStream(address, token)

    async def call_event(
        self, call_id: str, state: call_pb2.CallState.ValueType, timeout: float = 5
    ) -> call_pb2.Call:
        """The next CallChanged of ``call_id`` in ``state`` (earlier ones are skipped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = await self.events.next_of("call_changed", max(0.01, deadline - loop.time()))
            call = event.call_changed.call
            if call.call_id == call_id and call.state == state:
                return call

    async def place(self, callee: Phone, request_id: str = "") -> call_pb2.Call:
        """Place a call to ``callee``."""
        reply = await self.calls.PlaceCall(
            call_pb.PlaceCallRequest(callee_user_id=callee.user_id, request_id=request_id),
            metadata=self.metadata,
        )
        return reply.call

    async def close(self) -> None:
        """Close the stream and the channel."""
        await self.events.close()
        await self.channel.close()

    async def negotiate(self, call_id: str, peer: LoopbackPeer | VideoPeer) -> str:
        """Negotiate ``peer``'s media for the call; the MediaServer that carries it."""
        reply = await self.calls.NegotiateMedia(
            call_pb.NegotiateMediaRequest(call_id=call_id, sdp_offer=await peer.offer()),
            metadata=self.metadata,
            timeout=15,
        )
        await peer.accept(reply.sdp_answer)
        return reply.media_server_id

    async def moved(self, call_id: str, away_from: str, timeout: float = 10) -> call_pb2.Call:
        """The next CallChanged that puts the call on another MediaServer, or ends it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = await self.events.next_of("call_changed", max(0.01, deadline - loop.time()))
            call = event.call_changed.call
            if call.call_id != call_id:
                continue
            if call.state == call_pb2.CALL_STATE_ENDED or call.media_server_id != away_from:
                return call


async def hear_each_other(caller: LoopbackPeer, callee: LoopbackPeer) -> None:
    """Both ends hear the other's tone (440 Hz from the caller, 880 Hz from the callee)."""
    heard_by_caller, heard_by_callee = await asyncio.gather(caller.heard(1.0), callee.heard(1.0))
    for recorder, wanted, own in (
        (heard_by_caller, BOB_HZ, ALICE_HZ),
        (heard_by_callee, ALICE_HZ, BOB_HZ),
    ):
        samples = recorder.since(0.2)
        assert tone_power(samples, wanted) > 100 * tone_power(samples, own)
