"""The Connect stream's pre-encoded messages parse as the events they stand for."""

from __future__ import annotations

from procall.api.presence.v1 import presence_pb2
from procall.api.session.v1 import session_pb2
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.servers.ucserver.session_servicer import SessionServicer
from procall.session.events import SequencedEvent
from procall.session.resume import ResumeTokens, decode_resume_token, encode_resume_token

_TOKENS = ResumeTokens("s1", "run-1")


class _Manager:
    run_id = "run-1"


def _servicer() -> SessionServicer:
    return SessionServicer(_Manager(), lambda: 0.0)  # type: ignore[arg-type]


def _presence_event(note: str) -> session_pb2.Event:
    return session_pb2.Event(
        presence_changed=presence_pb2.PresenceChanged(
            presence=presence_pb2.Presence(
                user_id="u1", availability=presence_pb2.AVAILABILITY_BUSY, note=note
            )
        )
    )


def test_one_event_per_message_for_clients_without_batches() -> None:
    payload = _presence_event("in a meeting")
    encoded = _servicer()._encode(_TOKENS, [SequencedEvent(7, 1700000000.25, payload)], False)
    reply = session_pb.ConnectResponse.FromString(encoded)
    assert not reply.events
    event = reply.event
    assert event.sequence == 7
    assert abs(event.event_time.ToNanoseconds() - 1_700_000_000_250_000_000) < 1000
    assert event.presence_changed.presence.note == "in a meeting"
    point = decode_resume_token(event.resume_token)
    assert (point.session_id, point.run_id, point.sequence) == ("s1", "run-1", 7)


def test_a_batch_keeps_order_and_each_event_its_own_stamp() -> None:
    servicer = _servicer()
    shared = _presence_event("shared")
    events = [SequencedEvent(3 + i, 100.0 + i, shared) for i in range(3)]
    reply = session_pb.ConnectResponse.FromString(servicer._encode(_TOKENS, events, True))
    assert not reply.HasField("event")
    assert [e.sequence for e in reply.events] == [3, 4, 5]
    assert [e.event_time.seconds for e in reply.events] == [100, 101, 102]
    assert {e.presence_changed.presence.note for e in reply.events} == {"shared"}
    assert len({e.resume_token for e in reply.events}) == 3


def test_stream_fields_already_set_on_a_payload_are_replaced() -> None:
    payload = _presence_event("x")
    payload.sequence = 99
    payload.resume_token = "stale"
    payload.event_time.FromNanoseconds(5_000_000_123)
    encoded = _servicer()._encode(_TOKENS, [SequencedEvent(1, 42.0, payload)], False)
    event = session_pb.ConnectResponse.FromString(encoded).event
    assert event.sequence == 1
    assert event.event_time.ToNanoseconds() == 42_000_000_000
    assert event.resume_token != "stale"


def test_resume_tokens_are_those_of_encode_resume_token() -> None:
    # every length of the shared prefix modulo 3, and sequences of every digit count
    for session_id in ("s", "s1", "s12", "5f0c2a1e-7d3b-4c7a-9b8e-2f1d0c9a8b7e"):
        for run_id in ("r", "run-1", "0123456789abcdef"):
            tokens = ResumeTokens(session_id, run_id)
            for sequence in (0, 1, 9, 10, 99, 100, 12345, 2**40):
                expected = encode_resume_token(session_id, run_id, sequence)
                assert tokens.encode(sequence).decode("ascii") == expected
