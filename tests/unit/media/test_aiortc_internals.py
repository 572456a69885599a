"""The version guard: forwarding relies on private aiortc names; an upgrade that moves them
must fail here, not as silence on a call."""

from __future__ import annotations

from pathlib import Path

from aiortc import RTCConfiguration, RTCPeerConnection

from procall.media import VERIFIED_AIORTC_VERSION, aiortc_internals_problems


async def test_the_private_aiortc_parts_forwarding_uses_are_there() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        receiver = pc.addTransceiver("audio").receiver
        assert aiortc_internals_problems(receiver) == []
    finally:
        await pc.close()


def test_the_guard_can_fail() -> None:
    """A receiver without the private attributes is reported (the check is not vacuous)."""
    problems = aiortc_internals_problems(object())  # type: ignore[arg-type]
    assert any("decoder_queue" in p for p in problems)
    assert any("jitter_buffer" in p for p in problems)


def test_the_pinned_aiortc_is_the_verified_one() -> None:
    pinned = {
        line.split("==")[1].strip()
        for line in (Path(__file__).parents[3] / "requirements-dev.txt")
        .read_text("utf-8")
        .splitlines()
        if line.startswith("aiortc==")
    }
    assert pinned == {VERIFIED_AIORTC_VERSION}
