"""A bridge: a two-party call through the MediaServer, audio forwarded encoded both ways."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

from procall.errors import FailedPrecondition, InvalidArgument, NotFound
from procall.media.config import MediaConfig
from procall.media.forwarding import ForwardedTrack
from procall.media.leg import Leg

__all__ = ["Bridge", "BridgeListener"]

#: Called once when a bridge has closed (on the event loop, must not block).
BridgeListener = Callable[["Bridge"], None]

#: Legs of a two-party bridge.
_SLOTS = 2


class Bridge:
    """Two legs, each hearing the other: each leg's ``inbound`` is the other's outgoing track.

    Legs join one at a time (:meth:`add_leg`, or all of ``names`` at once). The bridge owns
    one forwarded track per slot, so the first leg can be answered before the second exists:
    it hears the second slot's track, which carries audio once the second leg is connected.

    The call ends as a whole: :meth:`close` (hang-up) or the end of either answered leg (its
    peer failed or went away) closes both legs. A leg whose offer is refused leaves the bridge
    and frees its slot; the other leg is not disturbed.
    """

    def __init__(self, names: Sequence[str] = (), config: MediaConfig | None = None) -> None:
        if len(set(names)) != len(names):
            raise InvalidArgument("a bridge joins two different participants")
        self._config = config or MediaConfig()
        self._tracks = tuple(
            ForwardedTrack(max_packets=self._config.queue_packets) for _ in range(_SLOTS)
        )
        self._legs: dict[str, Leg] = {}
        self._slot: dict[str, int] = {}
        self._close_task: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._listeners: list[BridgeListener] = []
        for name in names:
            self.add_leg(name)

    def add_leg(self, name: str) -> Leg:
        """Add participant ``name``'s leg (not answered yet).

        Raises :class:`FailedPrecondition` when the bridge is full or closed and
        :class:`InvalidArgument` when ``name`` already has a leg here.
        """
        if self._close_task is not None:
            raise FailedPrecondition("the bridge is closed")
        if name in self._legs:
            raise InvalidArgument("a bridge joins two different participants")
        free = [slot for slot in range(_SLOTS) if slot not in self._slot.values()]
        if not free:
            raise FailedPrecondition("the bridge is full: it joins two legs at most")
        slot = free[0]
        leg = Leg(name, self._config, inbound=self._tracks[slot])
        self._legs[name] = leg
        self._slot[name] = slot
        return leg

    def leg(self, name: str) -> Leg:
        """The leg of participant ``name``."""
        try:
            return self._legs[name]
        except KeyError:
            raise NotFound(f"no leg {name} in this bridge") from None

    @property
    def legs(self) -> tuple[Leg, ...]:
        """The legs, in the order they joined."""
        return tuple(self._legs.values())

    @property
    def full(self) -> bool:
        """Whether both slots are taken."""
        return len(self._legs) >= _SLOTS

    @property
    def closed(self) -> bool:
        """Whether the call has ended (every leg closed)."""
        return self._closed.is_set()

    def add_close_listener(self, listener: BridgeListener) -> None:
        """Call ``listener(bridge)`` once when the bridge has closed."""
        self._listeners.append(listener)

    async def answer(self, name: str, offer_sdp: str) -> str:
        """Connect participant ``name`` from its SDP offer; returns the SDP answer.

        When the offer is refused the leg leaves the bridge (its slot is free again) and the
        error is raised.
        """
        leg = self.leg(name)
        other_slot = (self._slot[name] + 1) % _SLOTS
        try:
            answer = await leg.answer(offer_sdp, outbound=self._tracks[other_slot])
        except BaseException:
            self._remove(leg)
            raise
        if leg.ended:
            self._on_leg_ended(leg)
        else:
            leg.add_end_listener(self._on_leg_ended)
        return answer

    def _remove(self, leg: Leg) -> None:
        if self._legs.get(leg.name) is leg:
            del self._legs[leg.name]
            del self._slot[leg.name]

    async def close(self) -> None:
        """Hang up: close both legs. Idempotent."""
        await self._start_closing()

    async def wait_closed(self) -> None:
        """Return once the call has ended."""
        await self._closed.wait()

    def _on_leg_ended(self, leg: Leg) -> None:
        self._start_closing()

    def _start_closing(self) -> asyncio.Task[None]:
        if self._close_task is None:
            self._close_task = asyncio.create_task(self._close_legs(), name="media-bridge-close")
        return self._close_task

    async def _close_legs(self) -> None:
        try:
            for track in self._tracks:
                track.stop()
            await asyncio.gather(*(leg.close() for leg in self._legs.values()))
        finally:
            self._closed.set()
            listeners, self._listeners = self._listeners, []
            for listener in listeners:
                with contextlib.suppress(Exception):
                    listener(self)
