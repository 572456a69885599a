"""A client whose session lapsed while it was cut off: RESUME_EXPIRED, then ``Resynced``
with the contacts' current presence, then fresh events on a new stream."""

from __future__ import annotations

import asyncio

import pytest

from procall.client import (
    Availability,
    Connected,
    Disconnected,
    PresenceChanged,
    ProcallClient,
    Resynced,
)
from tests.integration.client.conftest import FAST, PASSWORD, Center
from tests.integration.client.helpers import EventReader, via
from tests.integration.client.tcp_proxy import TcpProxy

pytestmark = pytest.mark.asyncio(loop_scope="module")

CENTER_SERVERS = ("uc-1",)
#: A session without a stream lapses after 0.3 s (checked every heartbeat, 0.2 s).
CENTER_AUTH = {"resume_window_seconds": 0.3}


async def test_resume_expired_resyncs_then_fresh_events_flow(center: Center) -> None:
    alice = await center.new_user("uc-1")
    bob = await center.new_user("uc-1")
    address = center.address("uc-1")
    proxy = await TcpProxy(address).start()
    a = await ProcallClient.login(
        address, alice.username, PASSWORD, options=FAST, channel_factory=via(proxy, address)
    )
    b = await ProcallClient.login(address, bob.username, PASSWORD)
    try:
        reader = EventReader(a)
        first = await reader.next(Connected)
        await a.add_contacts([bob.user_id])
        await b.set_presence(Availability.AWAY, note="before")
        await reader.presence_of(bob.user_id, "before")

        proxy.refuse(True)
        proxy.cut()
        await reader.next(Disconnected)
        await asyncio.sleep(0.8)  # alice's session lapses on the server
        changed = await b.set_presence(Availability.BUSY, note="missed")
        proxy.refuse(False)

        fresh = await reader.next(Connected)
        assert not fresh.resumed and fresh.session_id == first.session_id
        resynced = await reader.next(Resynced)
        assert "resume" in resynced.reason
        (contact,) = resynced.contacts
        assert (contact.user_id, contact.note, contact.version) == (
            bob.user_id, "missed", changed.version,
        )  # fmt: skip
        assert reader.seen.index(fresh) < reader.seen.index(resynced)
        assert not [e for e in reader.of(PresenceChanged) if e.note == "missed"]

        await b.set_presence(Availability.AVAILABLE, note="after")
        after = await reader.presence_of(bob.user_id, "after")
        assert after.version > contact.version
        assert reader.error is None
        await reader.stop()
    finally:
        await a.logout()
        await b.logout()
        await proxy.close()
