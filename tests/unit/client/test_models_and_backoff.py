"""Availability parsing, enum mapping, backoff and error decoding."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from procall.api.presence.v1 import presence_pb2
from procall.client import Availability, Backoff, ClientOptions, TelephonyState
from procall.client._errors import error_from_rpc


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("busy", Availability.BUSY),
        ("BUSY", Availability.BUSY),
        ("do-not-disturb", Availability.DO_NOT_DISTURB),
        ("dnd", Availability.DO_NOT_DISTURB),
        ("be_right_back", Availability.BE_RIGHT_BACK),
        ("brb", Availability.BE_RIGHT_BACK),
        (" away ", Availability.AWAY),
        ("online", Availability.AVAILABLE),
    ],
)
def test_availability_parse(text: str, expected: Availability) -> None:
    assert Availability.parse(text) is expected


@pytest.mark.parametrize("text", ["hungry", "", "unspecified", "unknown"])
def test_availability_parse_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="choose from available, away"):
        Availability.parse(text)


def test_enums_round_trip_and_tolerate_new_values() -> None:
    for member in Availability:
        assert Availability.from_proto(member.to_proto()) is member
    assert Availability.from_proto(presence_pb2.AVAILABILITY_AWAY) is Availability.AWAY
    assert Availability.from_proto(99) is Availability.UNKNOWN
    assert TelephonyState.from_proto(99) is TelephonyState.UNSPECIFIED


def test_backoff_grows_caps_and_jitters() -> None:
    top = Backoff(0.1, 1.0, jitter=0.5, rng=lambda: 0.0)
    assert [round(top.next_delay(), 3) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    top.reset()
    assert top.next_delay() == 0.1
    low = Backoff(0.1, 1.0, jitter=0.5, rng=lambda: 1.0)
    assert [round(low.next_delay(), 3) for _ in range(3)] == [0.05, 0.1, 0.2]
    assert Backoff(0.1, 1.0).next_delay(at_least=0.7) >= 0.7
    assert Backoff(0.1, 1.0).next_delay(at_least=30) == 1.0  # a RetryInfo never exceeds the cap
    with pytest.raises(ValueError):
        Backoff(0, 1)


def test_channel_options_keep_idle_streams_checked() -> None:
    options = dict(ClientOptions(keepalive_time_ms=1234).channel_options())
    assert options["grpc.keepalive_time_ms"] == 1234
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.http2.max_pings_without_data"] == 0


def _packed(*details: object) -> bytes:
    packed = []
    for detail in details:
        wrapper = any_pb2.Any()
        wrapper.Pack(detail)  # type: ignore[arg-type]
        packed.append(wrapper)
    status: bytes = status_pb2.Status(code=9, message="m", details=packed).SerializeToString()
    return status


def test_error_from_rpc_reads_rich_details() -> None:
    trailing = grpc.aio.Metadata(
        (
            "grpc-status-details-bin",
            _packed(
                error_details_pb2.ErrorInfo(
                    reason="WRONG_HOME_SERVER",
                    domain="procall.dev",
                    metadata={"home_server_address": "h:1"},
                ),
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field="f", description="d")
                    ]
                ),
                error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=2)),
            ),
        )
    )
    rpc_error = grpc.aio.AioRpcError(
        grpc.StatusCode.FAILED_PRECONDITION, grpc.aio.Metadata(), trailing, "go home"
    )
    error = error_from_rpc(rpc_error)
    assert (error.code, error.reason, error.message) == (
        grpc.StatusCode.FAILED_PRECONDITION, "WRONG_HOME_SERVER", "go home",
    )  # fmt: skip
    assert error.metadata == {"home_server_address": "h:1"}
    assert error.field_violations == (("f", "d"),)
    assert error.retry_after == 2.0
    assert str(error) == "FAILED_PRECONDITION: go home"
    assert not error.transient


def test_error_from_rpc_without_details() -> None:
    bare = grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), None
    )
    error = error_from_rpc(bare)
    assert (error.reason, error.message, str(error)) == ("", "", "UNAVAILABLE")
    assert error.transient
