"""A callee moved to another UCServer while its phone rings: its client follows the
Redirect, resumes at the new home and answers there; the call goes on."""

from __future__ import annotations

from typing import Any

import pytest

from procall.api.admin.v1 import admin_service_pb2 as admin_pb
from procall.api.call.v1 import call_pb2
from procall.api.call.v1 import call_service_pb2 as call_pb
from procall.api.call.v1 import call_service_pb2_grpc as call_grpc
from tests.helpers.streams import EventStream
from tests.helpers.topology import System, auth
from tests.integration.moves.helpers import admin_stub

pytestmark = pytest.mark.usefixtures("media_servers")


async def test_a_ringing_callee_moved_answers_at_its_new_home(system: System, phones: Any) -> None:
    alice, bob = await phones("alice"), await phones("bob")  # uc-1, uc-2
    call = await alice.place(bob)
    await bob.call_event(call.call_id, call_pb2.CALL_STATE_RINGING)
    stub, channel, token = admin_stub(system.ucservers["uc-1"])
    await stub.MoveUser(
        admin_pb.MoveUserRequest(user_id=bob.user_id, target_server_id="uc-1"),
        metadata=auth(token),
    )
    await channel.close()
    redirect = await bob.events.next_of("redirect")
    assert redirect.redirect.server.server_id == "uc-1"
    new_home = system.ucservers["uc-1"].address
    bob_token = redirect.redirect.session_token
    stream = EventStream(new_home, bob_token)  # resuming is tested in tests/integration/moves
    welcome = await stream.open()
    assert welcome.welcome.session.home_server.server_id == "uc-1"
    # the new home keeps the call up: bob answers there
    async with system.channel(new_home) as bob_channel:
        answered = await call_grpc.CallServiceStub(bob_channel).AnswerCall(
            call_pb.AnswerCallRequest(call_id=call.call_id), metadata=auth(bob_token)
        )
    assert answered.call.state == call_pb2.CALL_STATE_CONNECTED
    await alice.call_event(call.call_id, call_pb2.CALL_STATE_CONNECTED)
    states = []
    while call_pb2.CALL_STATE_CONNECTED not in states:
        event = await stream.next_of("call_changed")
        states.append(event.call_changed.call.state)
    # the unacked RINGING is replayed by the new home, then the answer
    assert states == [call_pb2.CALL_STATE_RINGING, call_pb2.CALL_STATE_CONNECTED]
    calls = system.ucservers["uc-1"].components["calls"]
    assert call.call_id in calls._live  # type: ignore[attr-defined]
    assert call.call_id not in system.ucservers["uc-2"].components["calls"]._live  # type: ignore[attr-defined]
    await stream.close()
