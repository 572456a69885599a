"""Calls between the domain and the wire."""

from __future__ import annotations

from procall.api.call.v1 import call_pb2
from procall.calls.model import Call
from procall.servers.codecs.time import timestamp, timestamp_of

__all__ = ["call_to_proto"]


def call_to_proto(call: Call) -> call_pb2.Call:
    """The wire form of a call."""
    return call_pb2.Call(
        call_id=call.call_id,
        caller_user_id=call.caller,
        callee_user_id=call.callee,
        target_user_id=call.target,
        answered_by_user_id=call.answered_by,
        answered_session_id=call.answered_session,
        state=call_pb2.CallState.ValueType(int(call.state)),
        end_reason=call_pb2.EndReason.ValueType(int(call.end_reason)),
        media_server_id=call.media_server_id,
        video=call.video,
        create_time=timestamp(call.create_time),
        answer_time=timestamp_of(call.answer_time),
        end_time=timestamp_of(call.end_time),
        forwarded_from_user_ids=list(call.forwarded_from),
    )
