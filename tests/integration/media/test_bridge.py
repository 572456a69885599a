"""A two-party call through a real Bridge: aiortc peers on 127.0.0.1, no mocks.

Alice sends 440 Hz, Bob 880 Hz; each must hear the other's tone (and not its own), forwarded
by the bridge without a decode; hang-up and a vanished peer end the call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from procall.media import LOOPBACK, Bridge, ForwardedTrack, MediaConfig, tap_receiver
from tests.helpers.media import LoopbackPeer, TaggedPacketTrack, tone_power

pytestmark = pytest.mark.timeout(30)

ALICE_HZ = 440.0
BOB_HZ = 880.0
RECORD_SECONDS = 1.5


async def _connect(bridge: Bridge, name: str, peer: LoopbackPeer) -> None:
    await peer.accept(await bridge.answer(name, await peer.offer()))


async def _nothing_left_running(tasks_before: set[asyncio.Task[object]]) -> None:
    """Nothing of the call is left running (aiortc's own tasks end with their connections)."""
    deadline = time.monotonic() + 3
    while leftover := asyncio.all_tasks() - tasks_before - {asyncio.current_task()}:
        if time.monotonic() > deadline:
            raise AssertionError(f"tasks left running: {leftover}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def call() -> AsyncIterator[tuple[Bridge, LoopbackPeer, LoopbackPeer]]:
    tasks_before = asyncio.all_tasks()
    bridge = Bridge(("alice", "bob"), MediaConfig(host_addresses=LOOPBACK))
    alice, bob = LoopbackPeer(ALICE_HZ), LoopbackPeer(BOB_HZ)
    await asyncio.gather(_connect(bridge, "alice", alice), _connect(bridge, "bob", bob))
    yield bridge, alice, bob
    await bridge.close()
    await alice.close()
    await bob.close()
    await _nothing_left_running(tasks_before)


async def test_each_side_hears_the_other_tone(
    call: tuple[Bridge, LoopbackPeer, LoopbackPeer],
) -> None:
    bridge, alice, bob = call
    heard_by_alice, heard_by_bob = await asyncio.gather(
        alice.heard(RECORD_SECONDS), bob.heard(RECORD_SECONDS)
    )
    for recorder, wanted, own in (
        (heard_by_alice, BOB_HZ, ALICE_HZ),
        (heard_by_bob, ALICE_HZ, BOB_HZ),
    ):
        samples = recorder.since(0.2)
        assert len(samples) > RECORD_SECONDS * 0.8 * 48_000 - 0.2 * 48_000
        other, itself = tone_power(samples, wanted), tone_power(samples, own)
        assert other > 100 * itself, (wanted, other, itself)
    for peer, recorder in ((alice, heard_by_alice), (bob, heard_by_bob)):
        assert peer.answered_at is not None and recorder.first_frame_at is not None
        print(f"first audio {recorder.first_frame_at - peer.answered_at:.3f} s after the answer")
    assert bridge.leg("alice").connection_state == "connected"


async def test_the_bridge_forwards_without_decoding(
    call: tuple[Bridge, LoopbackPeer, LoopbackPeer],
) -> None:
    bridge, alice, bob = call
    await asyncio.gather(alice.heard(1.0), bob.heard(1.0))
    for leg in bridge.legs:
        tap = leg.tap
        assert tap is not None
        assert tap.forwarded >= 40  # about 50 frames a second
        assert tap.refused == 0
        assert tap.frames_for_decoder == 0
        pc = leg.peer_connection
        assert pc is not None
        (receiver,) = [t.receiver for t in pc.getTransceivers()]
        # The receiver's own track got no decoded frame: its decoder thread never decoded.
        assert receiver.track._queue.qsize() == 0  # type: ignore[attr-defined]
        assert leg.inbound.dropped <= 2


async def test_closing_the_bridge_ends_both_far_end_tracks(
    call: tuple[Bridge, LoopbackPeer, LoopbackPeer],
) -> None:
    bridge, alice, bob = call
    heard = await asyncio.gather(alice.heard(0.2), bob.heard(0.2))
    await asyncio.wait_for(bridge.close(), 5)
    assert bridge.closed
    assert all(leg.ended and leg.connection_state == "closed" for leg in bridge.legs)
    for recorder in heard:
        await asyncio.wait_for(recorder.ended.wait(), 5)
        assert recorder.track.readyState == "ended"


async def test_a_leg_whose_peer_goes_away_is_ended(
    call: tuple[Bridge, LoopbackPeer, LoopbackPeer],
) -> None:
    bridge, alice, bob = call
    heard_by_alice, _ = await asyncio.gather(alice.heard(0.2), bob.heard(0.2))
    await bob.close()
    await asyncio.wait_for(bridge.leg("bob").wait_ended(), 5)
    # The call is over for the other party too.
    await asyncio.wait_for(bridge.wait_closed(), 5)
    assert bridge.leg("alice").ended
    await asyncio.wait_for(heard_by_alice.ended.wait(), 5)


async def test_the_bridge_forwards_the_bytes_unchanged() -> None:
    """Alice sends numbered bytes no decoder could read; Bob receives exactly them, in order."""
    tasks_before = asyncio.all_tasks()
    bridge = Bridge(("alice", "bob"), MediaConfig(host_addresses=LOOPBACK))
    tagged = TaggedPacketTrack()
    alice, bob = LoopbackPeer(tagged), LoopbackPeer(BOB_HZ)
    # Bob's peer keeps what arrives encoded, with the same tap the bridge uses.
    arrived = ForwardedTrack(max_packets=1000)
    tap_receiver(bob.transceiver.receiver, arrived, "audio/opus")
    try:
        await asyncio.gather(_connect(bridge, "alice", alice), _connect(bridge, "bob", bob))
        received: list[bytes] = []
        latencies: list[float] = []
        deadline = time.monotonic() + 5
        while len(received) < 50 and time.monotonic() < deadline:
            packet = await asyncio.wait_for(arrived.recv(), 5)
            received.append(bytes(packet))
            latencies.append(time.monotonic() - tagged.sent_at[bytes(packet)])
        assert len(received) == 50
        assert received == sorted(received)
        assert set(received) <= set(tagged.sent_at)
        latencies.sort()
        print(
            f"alice -> bridge -> bob, per packet: median {latencies[25] * 1000:.1f} ms,"
            f" max {latencies[-1] * 1000:.1f} ms"
        )
        assert latencies[25] < 0.1
    finally:
        await bridge.close()
        await alice.close()
        await bob.close()
    await _nothing_left_running(tasks_before)


async def test_a_leg_whose_connection_fails_is_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    """The peer is gone before ICE completes: the leg's connection fails and the call ends.

    aioice retransmits each connectivity check 6 times (31.5 s in all); one retransmission
    makes the failure come in about 1.5 s, through the same path.
    """
    import aioice.stun

    monkeypatch.setattr(aioice.stun, "RETRY_MAX", 1)
    tasks_before = asyncio.all_tasks()
    bridge = Bridge(("alice", "bob"), MediaConfig(host_addresses=LOOPBACK))
    alice = LoopbackPeer(ALICE_HZ)
    offer = await alice.offer()
    await alice.close()
    states: list[str] = []
    leg = bridge.leg("alice")
    await bridge.answer("alice", offer)
    pc = leg.peer_connection
    assert pc is not None
    pc.on("connectionstatechange", lambda: states.append(pc.connectionState))
    await asyncio.wait_for(bridge.wait_closed(), 8)
    assert "failed" in states
    assert leg.ended and bridge.leg("bob").ended
    await _nothing_left_running(tasks_before)
