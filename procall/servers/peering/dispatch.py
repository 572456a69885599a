"""Hands each event a peer UCServer delivered to the part of this server that owns it.

Presence changes go to presence (which updates its view and tells its watchers); call
changes to the calls (which deliver them and keep up the parties' telephony and ring
timers); every other event (chat, journal, ...) goes to the sessions of its recipients here.
The composition root wires one dispatcher as the ``PeerServicer``'s sink, so no part
has to see (or forward) the others' events.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from procall.api.session.v1 import session_pb2
from procall.session.hub import SessionHub

__all__ = ["CallReceiver", "PeerEventDispatcher", "PresenceReceiver"]

#: Takes a ``presence_changed`` event that arrived from a peer.
PresenceReceiver = Callable[[session_pb2.Event], Awaitable[None]]
#: Takes a ``call_changed`` event that arrived from a peer, with its recipients here.
CallReceiver = Callable[[Sequence[str], session_pb2.Event], Awaitable[None]]


class PeerEventDispatcher:
    """The ``DeliverySink`` of the PeerService: presence to presence, calls to the calls,
    the rest to the hub."""

    def __init__(
        self,
        hub: SessionHub[session_pb2.Event],
        presence: PresenceReceiver,
        calls: CallReceiver | None = None,
    ) -> None:
        self._hub = hub
        self._presence = presence
        self._calls = calls

    async def __call__(
        self, recipients: Sequence[str], event: session_pb2.Event, except_session: str = ""
    ) -> None:
        """Deliver one event from a peer (``recipients`` are users homed here; all their
        sessions but ``except_session``)."""
        if event.HasField("presence_changed"):
            await self._presence(event)
        elif self._calls is not None and event.HasField("call_changed"):
            await self._calls(recipients, event)
        else:
            await self._hub.deliver(recipients, event, except_session)
