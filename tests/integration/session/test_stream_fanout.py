"""A delivery to many sessions of one UCServer: a stream whose client stopped reading does
not hold up the others, and once it reads again it gets every event, in order, once."""

from __future__ import annotations

import asyncio

import grpc

from procall.api.presence.v1 import presence_pb2
from procall.api.session.v1 import session_pb2
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.session.hub import SessionHub
from tests.helpers.center import Center
from tests.helpers.streams import EventStream
from tests.helpers.topology import auth
from tests.helpers.topology import login as log_in

#: Far more than HTTP/2 flow control lets through to a client that reads nothing.
_EVENTS = 200
_NOTE = "x" * 16_000


def _event(i: int) -> session_pb2.Event:
    return session_pb2.Event(
        presence_changed=presence_pb2.PresenceChanged(
            presence=presence_pb2.Presence(user_id=f"someone-{i}", note=_NOTE)
        )
    )


def _ours(event: session_pb2.Event) -> bool:
    """One of the test's deliveries (the users' own presence changes come too)."""
    return event.presence_changed.presence.user_id.startswith("someone-")


async def test_a_stalled_stream_holds_up_no_other_and_loses_nothing(center: Center) -> None:
    hub: SessionHub[session_pb2.Event] = center.uc1.components["hub"]  # type: ignore[assignment]
    assert hub.replay_capacity >= _EVENTS
    stalled_login = await log_in(center.uc1.address, "alice")
    reader_login = await log_in(center.uc1.address, "carol")
    reader = EventStream(center.uc1.address, reader_login.session_token)
    await reader.open()
    async with grpc.aio.insecure_channel(center.uc1.address) as channel:
        stalled = session_grpc.SessionServiceStub(channel).Connect(
            metadata=auth(stalled_login.session_token)
        )
        await stalled.write(session_pb.ConnectRequest(open=session_pb.OpenStream()))
        welcome = await stalled.read()
        assert isinstance(welcome, session_pb.ConnectResponse)
        assert welcome.event.HasField("welcome")
        # from here alice's client reads nothing until the others have everything

        for i in range(_EVENTS):
            hub.deliver_nowait([center.users["alice"], center.users["carol"]], _event(i))
            if i % 20 == 0:
                await asyncio.sleep(0)
        got: list[session_pb2.Event] = []
        while len(got) < _EVENTS:
            event = await reader.next_of("presence_changed", timeout=10)
            got += [event] if _ours(event) else []
        assert [e.presence_changed.presence.user_id for e in got] == [
            f"someone-{i}" for i in range(_EVENTS)
        ]

        everything: list[session_pb2.Event] = []
        while sum(map(_ours, everything)) < _EVENTS:
            reply = await asyncio.wait_for(stalled.read(), 10)
            assert isinstance(reply, session_pb.ConnectResponse)
            everything += [reply.event] if reply.HasField("event") else list(reply.events)
        assert [e.presence_changed.presence.user_id for e in everything if _ours(e)] == [
            f"someone-{i}" for i in range(_EVENTS)
        ]
        # every event of the session, once, in order: the sequence has no gap
        sequences = [e.sequence for e in everything]
        assert sequences == list(range(1, len(everything) + 1))
        stalled.cancel()
    await reader.close()
