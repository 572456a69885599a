"""``EventRouter``: each event reaches every session of each user once, here or on the
user's home server (real ``SessionHub``, real ``PeerLinks`` to real peer servers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from procall.api.session.v1 import session_pb2
from procall.errors import Unavailable
from procall.servers.peering.links import PeerLinks
from procall.servers.peering.router import EventRouter
from procall.session.hub import SessionHub
from procall.session.tokens import SessionClaims
from tests.helpers.topology import wait_for
from tests.integration.peering.conftest import Peer, StartPeer, mesh_channels, note_event


@dataclass
class Homes:
    """The Lookup's answer for each user's home (``None``: it cannot be reached)."""

    homes: dict[str, str] | None = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    async def __call__(self, user_id: str) -> str | None:
        self.asked.append(user_id)
        if self.homes is None:
            raise Unavailable.backend("Lookup")
        return self.homes.get(user_id)


@dataclass
class Here:
    """UCServer uc-1: its hub, its links to uc-2 and uc-3, its router."""

    hub: SessionHub[session_pb2.Event]
    links: PeerLinks
    homes: Homes
    router: EventRouter
    peers: dict[str, Peer]
    clock: list[float]

    def notes_of(self, session_id: str) -> list[str]:
        session = self.hub.get(session_id)
        assert session is not None
        return [e.payload.presence_changed.presence.note for e in session.log.after(0)]


@pytest.fixture
async def here(start_peer: StartPeer) -> AsyncIterator[Here]:
    clock = [0.0]
    hub: SessionHub[session_pb2.Event] = SessionHub(lambda: 0.0)
    for session_id, user in (("s1", "alice"), ("s2", "alice"), ("s3", "carol")):
        hub.add(SessionClaims(session_id, user, user, "uc-1", False, 0.0, 1e12), "desk")
    links = PeerLinks("uc-1", 1, mesh_channels("uc-1"), None, 1.0)
    peers = {server_id: await start_peer(server_id) for server_id in ("uc-2", "uc-3")}
    for server_id, peer in peers.items():
        links.hello_from(server_id, peer.address)
    homes = Homes({"alice": "uc-1", "carol": "uc-1", "erin": "uc-1", "bob": "uc-2", "dave": "uc-3"})
    router = EventRouter("uc-1", hub, links, homes, cache_seconds=30.0, clock=lambda: clock[0])
    yield Here(hub, links, homes, router, peers, clock)
    await links.stop()


async def _delivered(*peers: Peer) -> None:
    async def all_got_one() -> bool:
        return all(peer.received for peer in peers)

    await wait_for(all_got_one, timeout=5)
    await asyncio.sleep(0.1)  # and nothing more arrives


async def test_local_sessions_get_it_here_and_the_others_on_their_home(here: Here) -> None:
    await here.router.route(["alice", "bob", "carol", "dave", "bob", "alice"], note_event("hi"))
    assert here.notes_of("s1") == here.notes_of("s2") == here.notes_of("s3") == ["hi"]
    await _delivered(here.peers["uc-2"], here.peers["uc-3"])
    assert here.peers["uc-2"].received == [(("bob",), "hi")]
    assert here.peers["uc-3"].received == [(("dave",), "hi")]
    assert sorted(here.homes.asked) == ["bob", "dave"], "no lookup for users with sessions here"


async def test_users_homed_here_but_not_logged_on_and_users_without_a_home_get_nothing(
    here: Here,
) -> None:
    await here.router.route(["erin", "nobody", "bob"], note_event("x"))
    await _delivered(here.peers["uc-2"])
    assert here.peers["uc-2"].received == [(("bob",), "x")]
    assert here.peers["uc-3"].received == []


async def test_when_the_home_is_unknown_every_peer_gets_the_event(here: Here) -> None:
    here.homes.homes = None  # the Lookup cannot be reached
    await here.router.route(["bob"], note_event("anyone?"))
    await _delivered(here.peers["uc-2"], here.peers["uc-3"])
    for peer in here.peers.values():
        assert peer.received == [(("bob",), "anyone?")]


async def test_a_home_that_is_not_a_live_peer_sends_to_every_peer(here: Here) -> None:
    assert here.homes.homes is not None
    here.homes.homes["frank"] = "uc-9"
    await here.router.route(["frank"], note_event("where?"))
    await _delivered(here.peers["uc-2"], here.peers["uc-3"])
    for peer in here.peers.values():
        assert peer.received == [(("frank",), "where?")]


async def test_homes_are_cached_until_they_expire_or_are_forgotten(here: Here) -> None:
    for note in ("1", "2"):
        await here.router.route(["bob"], note_event(note))
    assert here.homes.asked == ["bob"]
    here.clock[0] = 31.0
    await here.router.route(["bob"], note_event("3"))
    assert here.homes.asked == ["bob", "bob"], "expired"
    assert here.homes.homes is not None
    here.homes.homes["bob"] = "uc-3"  # bob was moved
    here.router.forget("bob")
    await here.router.route(["bob"], note_event("4"))
    assert here.homes.asked == ["bob", "bob", "bob"]
    uc2 = here.peers["uc-2"]

    async def three_on_uc2() -> bool:
        return len(uc2.received) >= 3

    await wait_for(three_on_uc2, timeout=5)
    await _delivered(here.peers["uc-3"])
    assert uc2.notes() == ["1", "2", "3"]
    assert here.peers["uc-3"].notes() == ["4"]
