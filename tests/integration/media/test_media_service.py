"""The MediaService of a real media server, called over gRPC as a UCServer, with aiortc peers.

Alice (440 Hz) and Bob (880 Hz) each send their offer through ``CreateLeg`` for the same bridge
id and must hear each other; the registry is inspected and emptied over gRPC; bad requests
leave nothing behind. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest

from procall.mesh.media.v1 import media_pb2
from procall.mesh.media.v1 import media_service_pb2 as media_pb
from procall.mesh.media.v1 import media_service_pb2_grpc as media_grpc
from procall.servers.runtime.app import ServerApp
from procall.settings import Settings
from tests.helpers.media import LoopbackPeer, tone_power
from tests.helpers.topology import operator_channel

pytestmark = pytest.mark.timeout(30)

StartApp = Callable[[str, Settings], Awaitable[ServerApp]]

ALICE_HZ = 440.0
BOB_HZ = 880.0
BRIDGE = "call-1"


@pytest.fixture
async def media(
    make_settings: Callable[..., Settings], start_app: StartApp
) -> AsyncIterator[tuple[ServerApp, media_grpc.MediaServiceStub]]:
    settings = make_settings()
    settings.media.host_addresses = ["127.0.0.1"]
    settings.media.capacity = 2
    app = await start_app("media", settings)
    async with operator_channel(app.address, role="ucserver", target=app.server_id) as channel:
        yield app, media_grpc.MediaServiceStub(channel)


async def _load(stub: media_grpc.MediaServiceStub) -> tuple[int, int]:
    load = await stub.GetLoad(media_pb.GetLoadRequest(), timeout=5)
    return load.bridges, load.legs


async def _join(
    stub: media_grpc.MediaServiceStub, peer: LoopbackPeer, user_id: str, bridge_id: str = BRIDGE
) -> media_pb.CreateLegResponse:
    reply: media_pb.CreateLegResponse = await stub.CreateLeg(
        media_pb.CreateLegRequest(
            bridge_id=bridge_id, user_id=user_id, sdp_offer=await peer.offer()
        ),
        timeout=10,
    )
    await peer.accept(reply.sdp_answer)
    return reply


async def _code(call: Awaitable[object]) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    return failure.value.code()


async def test_two_peers_hear_each_other_through_the_service(
    media: tuple[ServerApp, media_grpc.MediaServiceStub],
) -> None:
    _, stub = media
    alice, bob, carol = LoopbackPeer(ALICE_HZ), LoopbackPeer(BOB_HZ), LoopbackPeer(ALICE_HZ)
    try:
        first, second = await asyncio.gather(_join(stub, alice, "alice"), _join(stub, bob, "bob"))
        assert first.leg.bridge_id == second.leg.bridge_id == BRIDGE
        assert first.leg.leg_id != second.leg.leg_id
        heard_by_alice, heard_by_bob = await asyncio.gather(alice.heard(1.0), bob.heard(1.0))
        for recorder, wanted, own in (
            (heard_by_alice, BOB_HZ, ALICE_HZ),
            (heard_by_bob, ALICE_HZ, BOB_HZ),
        ):
            samples = recorder.since(0.2)
            assert tone_power(samples, wanted) > 100 * tone_power(samples, own)

        bridge = (await stub.GetBridge(media_pb.GetBridgeRequest(bridge_id=BRIDGE))).bridge
        assert sorted(leg.user_id for leg in bridge.legs) == ["alice", "bob"]
        assert {leg.state for leg in bridge.legs} == {media_pb2.LEG_STATE_CONNECTED}
        assert await _load(stub) == (1, 2)

        # A third leg is refused and changes nothing.
        code = await _code(
            stub.CreateLeg(
                media_pb.CreateLegRequest(
                    bridge_id=BRIDGE, user_id="carol", sdp_offer=await carol.offer()
                ),
                timeout=10,
            )
        )
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert await _load(stub) == (1, 2)

        await stub.DeleteBridge(media_pb.DeleteBridgeRequest(bridge_id=BRIDGE), timeout=10)
        for recorder in (heard_by_alice, heard_by_bob):
            await asyncio.wait_for(recorder.ended.wait(), 5)
            assert recorder.track.readyState == "ended"
        assert await _load(stub) == (0, 0)
        code = await _code(stub.GetBridge(media_pb.GetBridgeRequest(bridge_id=BRIDGE)))
        assert code == grpc.StatusCode.NOT_FOUND
    finally:
        await asyncio.gather(alice.close(), bob.close(), carol.close())


async def test_deleting_a_leg_or_losing_a_peer_ends_the_bridge(
    media: tuple[ServerApp, media_grpc.MediaServiceStub],
) -> None:
    _, stub = media
    peers = [LoopbackPeer(ALICE_HZ), LoopbackPeer(BOB_HZ), LoopbackPeer(ALICE_HZ)]
    try:
        # A lone leg hung up: its bridge goes with it.
        alone = await _join(stub, peers[0], "alice", "call-2")
        assert await _load(stub) == (1, 1)
        # A refused second offer leaves the first leg and its bridge as they were.
        refused = media_pb.CreateLegRequest(bridge_id="call-2", user_id="bob", sdp_offer="v=0\r\n")
        assert await _code(stub.CreateLeg(refused, timeout=10)) == grpc.StatusCode.INVALID_ARGUMENT
        assert await _load(stub) == (1, 1)
        await stub.DeleteLeg(media_pb.DeleteLegRequest(leg_id=alone.leg.leg_id), timeout=10)
        assert await _load(stub) == (0, 0)
        code = await _code(stub.DeleteLeg(media_pb.DeleteLegRequest(leg_id=alone.leg.leg_id)))
        assert code == grpc.StatusCode.NOT_FOUND
        # A peer that goes away ends its leg, and the call, by itself.
        await asyncio.gather(
            _join(stub, peers[1], "bob", "call-3"), _join(stub, peers[2], "carol", "call-3")
        )
        await asyncio.gather(peers[1].heard(0.1), peers[2].heard(0.1))
        await peers[1].close()
        for _ in range(100):
            if await _load(stub) == (0, 0):
                break
            await asyncio.sleep(0.05)
        assert await _load(stub) == (0, 0)
    finally:
        await asyncio.gather(*(peer.close() for peer in peers))


async def test_bad_requests_leave_nothing_behind(
    media: tuple[ServerApp, media_grpc.MediaServiceStub],
) -> None:
    _, stub = media
    peer = LoopbackPeer(ALICE_HZ)
    try:
        offer = await peer.offer()
        bad = [
            media_pb.CreateLegRequest(bridge_id=BRIDGE, user_id="alice", sdp_offer=""),
            media_pb.CreateLegRequest(bridge_id=BRIDGE, user_id="alice", sdp_offer="not sdp"),
            media_pb.CreateLegRequest(bridge_id=BRIDGE, user_id="alice", sdp_offer="v=0\r\n"),
            media_pb.CreateLegRequest(bridge_id="", user_id="alice", sdp_offer=offer),
            media_pb.CreateLegRequest(bridge_id=BRIDGE, user_id="", sdp_offer=offer),
            media_pb.CreateLegRequest(bridge_id="x" * 65, user_id="alice", sdp_offer=offer),
        ]
        for request in bad:
            assert await _code(stub.CreateLeg(request, timeout=10)) == (
                grpc.StatusCode.INVALID_ARGUMENT
            ), request
            assert await _load(stub) == (0, 0)
        for call in (
            stub.DeleteLeg(media_pb.DeleteLegRequest(leg_id="nope")),
            stub.GetBridge(media_pb.GetBridgeRequest(bridge_id="nope")),
            stub.DeleteBridge(media_pb.DeleteBridgeRequest(bridge_id="nope")),
        ):
            assert await _code(call) == grpc.StatusCode.NOT_FOUND
        assert await _code(stub.GetBridge(media_pb.GetBridgeRequest())) == (
            grpc.StatusCode.INVALID_ARGUMENT
        )
        load = await stub.GetLoad(media_pb.GetLoadRequest())
        assert (load.bridges, load.legs, load.capacity) == (0, 0, 2)
    finally:
        await peer.close()


async def test_capacity_bounds_the_bridges(
    media: tuple[ServerApp, media_grpc.MediaServiceStub],
) -> None:
    _, stub = media
    peers = [LoopbackPeer(ALICE_HZ) for _ in range(3)]
    try:
        for index, peer in enumerate(peers[:2]):
            await _join(stub, peer, "alice", f"call-{index}")
        request = media_pb.CreateLegRequest(
            bridge_id="call-9", user_id="alice", sdp_offer=await peers[2].offer()
        )
        assert await _code(stub.CreateLeg(request, timeout=10)) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        assert await _load(stub) == (2, 2)
    finally:
        await asyncio.gather(*(peer.close() for peer in peers))


async def test_a_caller_without_a_service_identity_is_refused(
    media: tuple[ServerApp, media_grpc.MediaServiceStub],
) -> None:
    app, _ = media
    async with grpc.aio.insecure_channel(app.address) as channel:
        stub = media_grpc.MediaServiceStub(channel)
        code = await _code(stub.GetLoad(media_pb.GetLoadRequest(), timeout=5))
    assert code == grpc.StatusCode.UNAUTHENTICATED


async def test_the_same_user_negotiating_again_replaces_its_leg(
    media: tuple[ServerApp, media_grpc.MediaServiceStub],
) -> None:
    """Bob's client restarts its peer connection: the new leg replaces the old, the call goes
    on and Alice hears Bob's new peer; another user is still refused."""
    _, stub = media
    alice, bob, new_bob = LoopbackPeer(ALICE_HZ), LoopbackPeer(BOB_HZ), LoopbackPeer(BOB_HZ)
    carol = LoopbackPeer(ALICE_HZ)
    try:
        first, old = await asyncio.gather(_join(stub, alice, "alice"), _join(stub, bob, "bob"))
        await asyncio.gather(alice.heard(0.2), bob.heard(0.2))
        replacing = await _join(stub, new_bob, "bob")
        assert replacing.leg.leg_id != old.leg.leg_id and replacing.leg.user_id == "bob"
        bridge = (await stub.GetBridge(media_pb.GetBridgeRequest(bridge_id=BRIDGE))).bridge
        assert [leg.leg_id for leg in bridge.legs] == [first.leg.leg_id, replacing.leg.leg_id]
        assert await _load(stub) == (1, 2)
        code = await _code(stub.DeleteLeg(media_pb.DeleteLegRequest(leg_id=old.leg.leg_id)))
        assert code == grpc.StatusCode.NOT_FOUND
        assert bob.recorder is not None
        await asyncio.wait_for(bob.recorder.ended.wait(), 5)  # the old leg was closed
        heard = await new_bob.heard(1.0)
        samples = heard.since(0.2)
        assert tone_power(samples, ALICE_HZ) > 100 * tone_power(samples, BOB_HZ)
        assert alice.recorder is not None
        heard_before = len(alice.recorder.samples)
        await asyncio.sleep(1.0)
        samples = alice.recorder.samples[heard_before:]
        assert len(samples) > 0.6 * 48_000
        assert tone_power(samples, BOB_HZ) > 100 * tone_power(samples, ALICE_HZ)
        request = media_pb.CreateLegRequest(
            bridge_id=BRIDGE, user_id="carol", sdp_offer=await carol.offer()
        )
        assert await _code(stub.CreateLeg(request, timeout=10)) == (
            grpc.StatusCode.FAILED_PRECONDITION
        )
    finally:
        await asyncio.gather(alice.close(), bob.close(), new_bob.close(), carol.close())
