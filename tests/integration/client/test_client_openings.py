"""A client whose session lapsed while it was cut off comes back to a UCServer busy opening
sessions (a restarted server's returning clients): refused with RESOURCE_EXHAUSTED and a
RetryInfo, it waits as told, gets in, and resynchronises in the same round trip as its
failed resume (the Welcome says the resume was lost)."""

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
from procall.session.openings import OpeningGate
from tests.integration.client.conftest import FAST, PASSWORD, Center
from tests.integration.client.helpers import EventReader, via
from tests.integration.client.tcp_proxy import TcpProxy

pytestmark = pytest.mark.asyncio(loop_scope="module")

CENTER_SERVERS = ("uc-1",)
#: A session without a stream lapses after 0.3 s (checked every heartbeat, 0.2 s).
CENTER_AUTH = {"resume_window_seconds": 0.3}


async def test_a_refused_opening_is_retried_after_retry_info_and_gets_the_current_state(
    center: Center,
) -> None:
    alice = await center.new_user("uc-1")
    bob = await center.new_user("uc-1")
    address = center.address("uc-1")
    manager = center.ucservers["uc-1"].components["sessions"]._manager  # type: ignore[attr-defined]
    proxy = await TcpProxy(address).start()
    a = await ProcallClient.login(
        address, alice.username, PASSWORD, options=FAST, channel_factory=via(proxy, address)
    )
    b = await ProcallClient.login(address, bob.username, PASSWORD)
    default_gate = manager.openings
    try:
        reader = EventReader(a)
        first = await reader.next(Connected)
        await a.add_contacts([bob.user_id])

        proxy.refuse(True)
        proxy.cut()
        await reader.next(Disconnected)
        await asyncio.sleep(0.8)  # alice's session lapses on the server
        changed = await b.set_presence(Availability.BUSY, note="missed")

        # the server is busy opening another session and has no room to queue more
        manager.openings = gate = OpeningGate(1, 0, retry_after=0.4)
        busy = gate.admit()
        await busy.__aenter__()
        proxy.refuse(False)
        refused = await reader.next(Disconnected)
        assert "sessions at once" in refused.reason
        assert refused.retry_in >= 0.2  # the RetryInfo's delay (0.4 s spread by half)
        await busy.__aexit__(None, None, None)

        fresh = await reader.next(Connected)
        assert not fresh.resumed and fresh.session_id == first.session_id
        resynced = await reader.next(Resynced)
        assert "resume" in resynced.reason
        (contact,) = resynced.contacts
        assert (contact.user_id, contact.note, contact.version) == (
            bob.user_id, "missed", changed.version,
        )  # fmt: skip
        assert not [e for e in reader.of(PresenceChanged) if e.note == "missed"]

        await b.set_presence(Availability.AVAILABLE, note="after")
        await reader.presence_of(bob.user_id, "after")
        assert reader.error is None
        await reader.stop()
    finally:
        manager.openings = default_gate
        await a.logout()
        await b.logout()
        await proxy.close()


async def test_a_new_login_refused_for_now_waits_as_told_instead_of_failing(
    center: Center,
) -> None:
    carol = await center.new_user("uc-1")
    address = center.address("uc-1")
    manager = center.ucservers["uc-1"].components["sessions"]._manager  # type: ignore[attr-defined]
    default_gate = manager.openings
    # the server is busy opening another session and has no room to queue more
    manager.openings = gate = OpeningGate(1, 0, retry_after=0.3)
    busy = gate.admit()
    await busy.__aenter__()
    try:
        login = asyncio.create_task(ProcallClient.login(address, carol.username, PASSWORD))
        await asyncio.sleep(0.5)  # refused at least once meanwhile
        assert not login.done()
        await busy.__aexit__(None, None, None)
        client = await asyncio.wait_for(login, 10)
        try:
            reader = EventReader(client)
            connected = await reader.next(Connected)
            assert connected.session_id and not connected.resumed
            await reader.stop()
        finally:
            await client.logout()
    finally:
        manager.openings = default_gate
