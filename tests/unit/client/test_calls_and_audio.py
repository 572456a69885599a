"""The calls models and the softphone's audio pieces, without servers."""

from __future__ import annotations

import asyncio
import wave
from fractions import Fraction
from pathlib import Path

import av
import pytest
from aiortc.mediastreams import MediaStreamTrack
from google.protobuf import duration_pb2

from procall.api.call.v1 import call_pb2
from procall.api.session.v1 import session_pb2
from procall.client import (
    Call,
    CallChanged,
    ForwardingRule,
    Recording,
    ToneSource,
    WavSource,
    event_from_proto,
)
from tests.helpers.media import tone_power


def test_call_from_proto() -> None:
    message = call_pb2.Call(
        call_id="c1", caller_user_id="u1", callee_user_id="u2", target_user_id="u3",
        answered_by_user_id="u3", state=call_pb2.CALL_STATE_ENDED,
        end_reason=call_pb2.END_REASON_MEDIA_FAILURE, media_server_id="media-2",
        forwarded_from_user_ids=["u2"],
    )  # fmt: skip
    message.create_time.FromSeconds(1_700_000_000)
    call = Call.from_proto(message)
    assert (call.state, call.end_reason, call.media_server_id) == (
        "ended", "media_failure", "media-2",
    )  # fmt: skip
    assert call.ended and call.forwarded_from_user_ids == ("u2",)
    assert call.create_time is not None and call.answer_time is None
    assert Call.from_proto(call_pb2.Call(state=call_pb2.CALL_STATE_RINGING)).end_reason == ""


def test_call_changed_carries_the_media_server_and_the_whole_call() -> None:
    event = event_from_proto(
        session_pb2.Event(
            sequence=3,
            call_changed=call_pb2.CallChanged(
                call=call_pb2.Call(
                    call_id="c1", state=call_pb2.CALL_STATE_CONNECTED, media_server_id="m2"
                )
            ),
        )
    )
    assert isinstance(event, CallChanged)
    assert (event.state, event.media_server_id) == ("connected", "m2")
    assert event.call is not None and event.call.media_server_id == "m2"


def test_forwarding_rule_round_trip() -> None:
    rule = ForwardingRule("no_answer", "u9", no_answer_timeout=7.5)
    message = rule.to_proto()
    assert message.condition == call_pb2.FORWARDING_CONDITION_NO_ANSWER
    assert message.no_answer_timeout == duration_pb2.Duration(seconds=7, nanos=500_000_000)
    assert ForwardingRule.from_proto(message) == rule
    assert (
        ForwardingRule.from_proto(ForwardingRule("busy", "u9").to_proto()).no_answer_timeout is None
    )
    with pytest.raises(ValueError, match="unknown forwarding condition 'sometimes'"):
        ForwardingRule("sometimes", "u9")


async def _audio(track: MediaStreamTrack) -> av.AudioFrame:
    frame = await track.recv()
    assert isinstance(frame, av.AudioFrame)
    return frame


async def test_tone_source_is_paced_and_in_tune() -> None:
    track = ToneSource(440).track()
    loop = asyncio.get_running_loop()
    start = loop.time()
    frames = [await _audio(track) for _ in range(10)]
    assert loop.time() - start >= 0.17  # ten 20 ms frames, the first at once
    recording = Recording(keep_seconds=1)
    for frame in frames:
        recording.add(frame)
    assert tone_power(recording.samples, 440) > 100 * tone_power(recording.samples, 880)
    assert ToneSource(0).describe() == "silence"
    with pytest.raises(ValueError):
        ToneSource(30_000)


def _frame(value: int, channels: int = 2) -> av.AudioFrame:
    frame = av.AudioFrame(format="s16", layout="stereo" if channels == 2 else "mono", samples=960)
    frame.planes[0].update(value.to_bytes(2, "little", signed=True) * 960 * channels)
    frame.sample_rate = 48_000
    frame.time_base = Fraction(1, 48_000)
    return frame


def test_recording_keeps_a_bounded_tail_and_writes_every_sample(tmp_path: Path) -> None:
    recording = Recording(tmp_path / "r.wav", keep_seconds=1)
    for index in range(150):  # 3 s of stereo frames
        recording.add(_frame(index))
    assert recording.frames == 150 and recording.first_audio_at is not None
    assert 48_000 <= len(recording.samples) <= 2 * 48_000
    assert recording.samples[-1] == 149 and list(recording.recent(0.02)) == [149] * 960
    recording.close()
    recording.close()
    with wave.open(str(tmp_path / "r.wav"), "rb") as reader:
        assert (reader.getnchannels(), reader.getframerate(), reader.getnframes()) == (
            1, 48_000, 150 * 960,
        )  # fmt: skip


async def test_wav_source_checks_the_file_and_loops(tmp_path: Path) -> None:
    path = tmp_path / "in.wav"
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(8_000)
        writer.writeframes((1000).to_bytes(2, "little") * 200)  # 25 ms
    track = WavSource(path).track()
    frames = [await _audio(track) for _ in range(3)]
    assert all(f.sample_rate == 8_000 and f.samples == 160 for f in frames)
    assert bytes(frames[2].planes[0])[:2] == (1000).to_bytes(2, "little")  # looped
    track.stop()
    with pytest.raises(ValueError, match="as a WAV file"):
        WavSource(tmp_path / "missing.wav")
    (tmp_path / "bad.wav").write_bytes(b"not a wav")
    with pytest.raises(ValueError, match="as a WAV file"):
        WavSource(tmp_path / "bad.wav")


def test_the_connected_event_names_the_features_the_user_may_use() -> None:
    from procall.api.common.v1 import client_feature_pb2 as features
    from procall.api.session.v1 import session_pb2
    from procall.client import Connected, event_from_proto

    wire = session_pb2.Event(
        welcome=session_pb2.Welcome(
            session=session_pb2.Session(session_id="s-1"),
            allowed_features=[features.CLIENT_FEATURE_CALLS, features.CLIENT_FEATURE_CHAT],
        )
    )
    event = event_from_proto(wire)
    assert isinstance(event, Connected)
    assert event.allowed_features == ("calls", "chat")
