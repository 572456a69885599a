"""Session tokens that expire: the client refreshes them in time, or logs in again with
the password it kept; without one, the end of the session is reported."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from procall.client import (
    Availability,
    ClientOptions,
    Connected,
    PresenceChanged,
    ProcallClient,
    ProcallClientError,
    Resynced,
    SessionClosed,
)
from tests.integration.client.conftest import PASSWORD, Center
from tests.integration.client.helpers import EventReader

pytestmark = pytest.mark.asyncio(loop_scope="module")

CENTER_SERVERS = ("uc-1",)
#: Tokens live two seconds (the server ends a session whose token ran out).
CENTER_AUTH = {"token_ttl_seconds": 2}
NO_REFRESH = ClientOptions(refresh_at=100.0, backoff_initial=0.05, backoff_max=0.5)


async def test_tokens_are_refreshed_or_replaced(center: Center) -> None:
    address = center.address("uc-1")
    users = [await center.new_user("uc-1") for _ in range(4)]
    refreshing = await ProcallClient.login(address, users[0].username, PASSWORD)
    relogging = await ProcallClient.login(address, users[1].username, PASSWORD, options=NO_REFRESH)
    forgetful = await ProcallClient.login(
        address, users[2].username, PASSWORD, options=NO_REFRESH, remember_password=False
    )
    lazy = await ProcallClient.login(  # no stream: only its calls notice the expiry
        address, users[3].username, PASSWORD, options=NO_REFRESH, connect=False
    )
    readers = [EventReader(c) for c in (refreshing, relogging, forgetful)]
    sessions = [c.session_id for c in (refreshing, relogging, forgetful)]
    try:
        await asyncio.sleep(3.0)  # one and a half token lifetimes

        # refreshed in time: same session, same stream, calls work
        assert refreshing.session_id == sessions[0]
        assert [type(e) for e in readers[0].seen if not isinstance(e, PresenceChanged)] == [
            Connected
        ]
        await refreshing.set_presence(Availability.BUSY)

        # expired, ended by the server, logged in again: a new session and a resync
        resynced = await readers[1].next(Resynced)
        assert "expired" in resynced.reason
        assert relogging.session_id != sessions[1]
        assert not readers[1].of(SessionClosed)
        reconnected = readers[1].of(Connected)[-1]
        assert reconnected.session_id == relogging.session_id and not reconnected.resumed
        assert readers[1].seen.index(reconnected) < readers[1].seen.index(resynced)
        await relogging.set_presence(Availability.AWAY)

        # a call with the expired token: logged in again, call repeated
        expired = lazy.token
        assert await lazy.contacts() == []
        assert lazy.token != expired

        # no password kept: the session's end is the end of events()
        await asyncio.wait_for(readers[2].ended.wait(), 1)
        assert isinstance(readers[2].seen[-1], SessionClosed)
        with pytest.raises(ProcallClientError) as failure:
            await forgetful.contacts()
        assert failure.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert failure.value.reason == "TOKEN_EXPIRED"
    finally:
        for reader in readers:
            await reader.stop()
        for client in (refreshing, relogging, forgetful, lazy):
            await client.close()
