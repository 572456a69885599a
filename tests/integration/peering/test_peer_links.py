"""``PeerLinks``: one link to every other UCServer, opened from hellos (the Lookup's part is
covered by the two-server tests), over real gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from procall.servers.peering.links import PeerLinks
from tests.helpers.topology import wait_for
from tests.integration.peering.conftest import Peer, StartPeer, mesh_channels, note_event


@pytest.fixture
async def links() -> AsyncIterator[PeerLinks]:
    mesh = PeerLinks("uc-1", 1, mesh_channels("uc-1"), None, 1.0, own_address=lambda: "10.0.0.1:5")
    await mesh.start()
    yield mesh
    await mesh.stop()


async def _arrived(peer: Peer, count: int) -> None:
    async def enough() -> bool:
        return len(peer.received) >= count

    await wait_for(enough, timeout=5)


async def test_a_hello_opens_a_link_back_that_delivers(
    links: PeerLinks, start_peer: StartPeer
) -> None:
    uc2 = await start_peer("uc-2")
    assert not links.send("uc-2", ["bob"], note_event("early")), "no link yet"
    links.hello_from("uc-2", uc2.address)
    assert links.send("uc-2", ["bob", "dave"], note_event("n1"))
    assert links.send("uc-2", ["bob"], note_event("n2"))
    await _arrived(uc2, 2)
    assert uc2.received == [(("bob", "dave"), "n1"), (("bob",), "n2")]
    assert uc2.hellos == [("uc-1", "10.0.0.1:5")], "the link says who it is and where"


async def test_hellos_from_itself_without_an_address_or_repeated_change_nothing(
    links: PeerLinks, start_peer: StartPeer
) -> None:
    uc2 = await start_peer("uc-2")
    links.hello_from("uc-1", uc2.address)
    links.hello_from("uc-3", "")
    assert links.links == {}
    links.hello_from("uc-2", uc2.address)
    first = links.links["uc-2"]
    links.hello_from("uc-2", uc2.address)
    assert links.links == {"uc-2": first}


async def test_a_peer_back_on_another_address_gets_a_new_link(
    links: PeerLinks, start_peer: StartPeer
) -> None:
    old = await start_peer("uc-2")
    links.hello_from("uc-2", old.address)
    links.send("uc-2", ["bob"], note_event("to-old"))
    await _arrived(old, 1)
    new = await start_peer("uc-2")
    links.hello_from("uc-2", new.address)
    assert links.links["uc-2"].address == new.address
    links.send("uc-2", ["bob"], note_event("to-new"))
    await _arrived(new, 1)
    await asyncio.sleep(0.1)
    assert (old.notes(), new.notes()) == (["to-old"], ["to-new"])


async def test_stop_closes_every_link(links: PeerLinks, start_peer: StartPeer) -> None:
    for server_id in ("uc-2", "uc-3"):
        links.hello_from(server_id, (await start_peer(server_id)).address)
    assert set(links.links) == {"uc-2", "uc-3"}
    await links.stop()
    assert links.links == {}
    assert not links.send("uc-2", ["bob"], note_event("after"))
