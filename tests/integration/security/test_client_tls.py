"""The Python client SDK over TLS: log in through any UCServer, follow the redirect to the
home server's client port, and receive presence from another UCServer."""

from __future__ import annotations

import asyncio

import pytest

from procall.client import (
    Availability,
    PresenceChanged,
    ProcallClient,
    ProcallClientError,
    tls_channels,
)
from tests.helpers.topology import PASSWORD, System


async def test_the_sdk_logs_in_and_follows_events_over_tls(tls_system: System) -> None:
    system = tls_system
    assert system.ca_file is not None
    factory = tls_channels(system.ca_file)
    uc1, uc2 = system.ucservers["uc-1"], system.ucservers["uc-2"]
    alice = await ProcallClient.login(uc2.address, "alice", PASSWORD, channel_factory=factory)
    bob = await ProcallClient.login(uc2.address, "bob", PASSWORD, channel_factory=factory)
    try:
        assert alice.home_address == uc1.address  # the client port, not the mesh port
        await alice.add_contacts([system.users["bob"]])
        await bob.set_presence(Availability.BUSY, note="TLS all the way")

        async def bobs_note() -> PresenceChanged:
            async for event in alice.events():
                if isinstance(event, PresenceChanged) and event.note == "TLS all the way":
                    return event
            raise AssertionError("the event stream ended")

        changed = await asyncio.wait_for(bobs_note(), 10)
        assert changed.user_id == system.users["bob"]
    finally:
        await alice.logout()
        await bob.logout()


async def test_the_sdk_refuses_a_server_its_ca_did_not_sign(
    tls_system: System, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from procall.security import ensure_ca

    other = ensure_ca(tmp_path_factory.mktemp("other-ca"))
    factory = tls_channels(other.cert_file)
    with pytest.raises(ProcallClientError):
        await ProcallClient.login(
            tls_system.ucservers["uc-1"].address, "alice", PASSWORD, channel_factory=factory
        )
