"""The MediaServer's bridges and legs by id: what its MediaService serves.

A bridge is made by the first leg created for its id and joins two legs at most (a two-party
call). A user who creates a leg again in the same bridge (it negotiates again, e.g. its client
restarted its peer connection) gets a new leg that replaces its old one: the old leg is closed
and the call goes on. A bridge ends as a whole (see :class:`procall.media.Bridge`): hang-up of
either leg (:meth:`Bridges.delete_leg`), of the bridge, or either peer going away closes both
legs, and the bridge and its legs then leave the registry.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from procall.clock import UnixTime, now
from procall.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from procall.media.bridge import Bridge
from procall.media.config import MediaConfig
from procall.validation import check_id

__all__ = ["BridgeInfo", "Bridges", "LegInfo", "LegState", "MediaLoad"]

#: A leg's state as the MediaService reports it.
LegState = str
CONNECTING: LegState = "connecting"
CONNECTED: LegState = "connected"
CLOSED: LegState = "closed"

#: Longest SDP offer accepted (a few kilobytes in practice).
MAX_OFFER_CHARS = 64 * 1024


@dataclass(frozen=True)
class LegInfo:
    """One leg as the registry reports it."""

    leg_id: str
    bridge_id: str
    user_id: str
    state: LegState
    create_time: UnixTime


@dataclass(frozen=True)
class BridgeInfo:
    """One bridge with its legs (in the order they joined)."""

    bridge_id: str
    legs: tuple[LegInfo, ...]


@dataclass(frozen=True)
class MediaLoad:
    """Open bridges and legs, and the capacity in bridges (concurrent calls)."""

    bridges: int
    legs: int
    capacity: int


@dataclass
class _LegEntry:
    bridge_id: str
    user_id: str
    create_time: UnixTime


def _state(connection_state: str) -> LegState:
    if connection_state == "connected":
        return CONNECTED
    if connection_state in ("failed", "closed"):
        return CLOSED
    return CONNECTING


class Bridges:
    """The registry of bridges (use-case layer of the MediaService).

    ``capacity`` bounds the open bridges; ``on_count`` is called with the number of open
    bridges whenever it changes (the server's reported load).
    """

    def __init__(
        self,
        config: MediaConfig,
        capacity: int,
        on_count: Callable[[int], None] | None = None,
    ) -> None:
        self._config = config
        self._capacity = capacity
        self._on_count = on_count
        self._bridges: dict[str, Bridge] = {}
        self._legs: dict[str, _LegEntry] = {}
        self._closing = False

    def _bridge(self, bridge_id: str) -> Bridge:
        bridge = self._bridges.get(bridge_id)
        if bridge is None:
            raise NotFound(f"no bridge {bridge_id}")
        return bridge

    def _count_changed(self) -> None:
        if self._on_count is not None:
            self._on_count(len(self._bridges))

    def _open_bridge(self, bridge_id: str) -> Bridge:
        bridge = self._bridges.get(bridge_id)
        if bridge is not None:
            return bridge
        if self._closing:
            raise FailedPrecondition("the media server is stopping")
        if len(self._bridges) >= self._capacity:
            raise ResourceExhausted(
                f"this media server carries {self._capacity} bridges already",
                reason="LIMIT_EXCEEDED",
            )
        bridge = Bridge((), self._config)
        self._bridges[bridge_id] = bridge
        bridge.add_close_listener(lambda closed: self._forget(bridge_id, closed))
        self._count_changed()
        return bridge

    def _forget(self, bridge_id: str, bridge: Bridge) -> None:
        if self._bridges.get(bridge_id) is bridge:
            del self._bridges[bridge_id]
            self._count_changed()
        for leg in bridge.legs:
            self._legs.pop(leg.name, None)

    def _info(self, leg_id: str) -> LegInfo:
        entry = self._legs[leg_id]
        bridge = self._bridges.get(entry.bridge_id)
        state = CLOSED
        if bridge is not None and leg_id in {leg.name for leg in bridge.legs}:
            state = _state(bridge.leg(leg_id).connection_state)
        return LegInfo(leg_id, entry.bridge_id, entry.user_id, state, entry.create_time)

    async def create_leg(self, bridge_id: str, user_id: str, sdp_offer: str) -> tuple[LegInfo, str]:
        """Create a leg of ``user_id`` in bridge ``bridge_id`` (made if new) from its offer.

        When ``user_id`` already has a leg in the bridge, the new leg replaces it once the offer
        is answered (the old leg is closed, the call goes on; see :class:`Bridge`). Returns the
        leg and the SDP answer. Raises :class:`InvalidArgument` for bad ids or an unusable offer
        (nothing is changed then), :class:`FailedPrecondition` when the bridge already joins
        two other users' legs or the user's leg is already being replaced, and
        :class:`ResourceExhausted` when a new bridge would exceed the capacity.
        """
        check_id(bridge_id, "bridge_id")
        check_id(user_id, "user_id")
        if not sdp_offer.strip():
            raise InvalidArgument.field("sdp_offer", "is required")
        if len(sdp_offer) > MAX_OFFER_CHARS:
            raise InvalidArgument.field("sdp_offer", f"is longer than {MAX_OFFER_CHARS} characters")
        if "\x00" in sdp_offer:
            raise InvalidArgument.field("sdp_offer", "must not contain NUL characters")
        existing = self._bridges.get(bridge_id)
        replaces = None if existing is None else self._user_leg(existing, bridge_id, user_id)
        if existing is not None and existing.full and replaces is None:
            raise FailedPrecondition(
                f"bridge {bridge_id} is full: it joins two legs at most",
                metadata={"bridge_id": bridge_id},
            )
        bridge = self._open_bridge(bridge_id)
        leg_id = uuid.uuid4().hex
        bridge.add_leg(leg_id, replaces=replaces)
        self._legs[leg_id] = _LegEntry(bridge_id, user_id, now())
        try:
            answer = await bridge.answer(leg_id, sdp_offer)
        except BaseException:
            self._legs.pop(leg_id, None)
            if not bridge.legs and not bridge.closed:
                await bridge.close()  # a bridge nobody joined is not kept
            raise
        if leg_id not in self._legs:  # the bridge ended while the offer was answered
            raise FailedPrecondition(f"bridge {bridge_id} ended while the leg was created")
        if replaces is not None:
            self._legs.pop(replaces, None)  # closed by the bridge: its id is gone
        return self._info(leg_id), answer

    def _user_leg(self, bridge: Bridge, bridge_id: str, user_id: str) -> str | None:
        """The leg ``user_id`` has in ``bridge``, if any."""
        for leg in bridge.legs:
            entry = self._legs.get(leg.name)
            if entry is not None and (entry.bridge_id, entry.user_id) == (bridge_id, user_id):
                return leg.name
        return None

    async def delete_leg(self, leg_id: str) -> None:
        """Hang up leg ``leg_id``: its bridge (the call) ends with it."""
        check_id(leg_id, "leg_id")
        entry = self._legs.get(leg_id)
        if entry is None:
            raise NotFound(f"no leg {leg_id}")
        bridge = self._bridges.get(entry.bridge_id)
        if bridge is not None:
            await bridge.close()

    def get_bridge(self, bridge_id: str) -> BridgeInfo:
        """Bridge ``bridge_id`` with its legs."""
        check_id(bridge_id, "bridge_id")
        bridge = self._bridge(bridge_id)
        legs = tuple(self._info(leg.name) for leg in bridge.legs if leg.name in self._legs)
        return BridgeInfo(bridge_id, legs)

    async def delete_bridge(self, bridge_id: str) -> None:
        """Close bridge ``bridge_id`` and all its legs."""
        check_id(bridge_id, "bridge_id")
        bridge = self._bridge(bridge_id)
        await bridge.close()
        self._forget(bridge_id, bridge)

    def bridge_ids(self) -> list[str]:
        """The ids of the open bridges."""
        return list(self._bridges)

    def load(self) -> MediaLoad:
        """Open bridges and legs, and the capacity."""
        return MediaLoad(len(self._bridges), len(self._legs), self._capacity)

    async def close(self) -> None:
        """Close every bridge (server stop); no bridge is opened afterwards."""
        self._closing = True
        bridges = list(self._bridges.items())
        await asyncio.gather(*(bridge.close() for _, bridge in bridges), return_exceptions=True)
        for bridge_id, bridge in bridges:
            self._forget(bridge_id, bridge)
