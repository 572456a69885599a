"""A bridge: a two-party call through the MediaServer, media forwarded encoded both ways."""

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
    """Two legs, each hearing and seeing the other: each leg's inbound tracks (audio, and
    video when both offers have it) are the other's outgoing tracks.

    Legs join one at a time (:meth:`add_leg`, or all of ``names`` at once). The bridge owns
    one audio and one video forwarded track per slot, so the first leg can be answered before
    the second exists: it gets the second slot's tracks, which carry media once the second
    leg is connected. Each sender reads its own :meth:`ForwardedTrack.reader`, so a slot's
    tracks outlive the leg that used them.

    Keyframes: whenever a leg's participant needs one (its connection came up, or its far end
    sent a PLI or FIR), the bridge asks the participant in the other slot (rate-limited by
    that leg).

    A participant that negotiates again (a new peer connection) gets a new leg in the same
    slot (:meth:`add_leg` with ``replaces``): once the new offer is answered, the old leg
    leaves the bridge and is closed, without ending the call. A refused offer changes nothing.

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
        self._video_tracks = tuple(
            ForwardedTrack(max_packets=self._config.queue_packets, kind="video")
            for _ in range(_SLOTS)
        )
        self._legs: dict[str, Leg] = {}
        self._slot: dict[str, int] = {}
        #: New leg -> the leg it replaces once its offer is answered.
        self._replacing: dict[str, str] = {}
        self._close_task: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._listeners: list[BridgeListener] = []
        for name in names:
            self.add_leg(name)

    def add_leg(self, name: str, replaces: str | None = None) -> Leg:
        """Add leg ``name`` (not answered yet), in a free slot or in the slot of ``replaces``.

        A replacing leg takes the place of leg ``replaces`` when its offer is answered
        (:meth:`answer`). Raises :class:`FailedPrecondition` when the bridge is full or closed
        or ``replaces`` is already being replaced, :class:`InvalidArgument` when ``name``
        already has a leg here and :class:`NotFound` when ``replaces`` has none.
        """
        if self._close_task is not None:
            raise FailedPrecondition("the bridge is closed")
        if name in self._legs:
            raise InvalidArgument("a bridge joins two different participants")
        if replaces is not None:
            self.leg(replaces)
            if replaces in self._replacing.values() or replaces in self._replacing:
                raise FailedPrecondition(f"leg {replaces} is already being replaced")
            slot = self._slot[replaces]
        else:
            free = [slot for slot in range(_SLOTS) if slot not in self._slot.values()]
            if not free:
                raise FailedPrecondition("the bridge is full: it joins two legs at most")
            slot = free[0]
        leg = Leg(
            name,
            self._config,
            inbound=self._tracks[slot],
            video_inbound=self._video_tracks[slot],
        )
        self._legs[name] = leg
        self._slot[name] = slot
        if replaces is not None:
            self._replacing[name] = replaces
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
        return len(set(self._slot.values())) >= _SLOTS

    @property
    def closed(self) -> bool:
        """Whether the call has ended (every leg closed)."""
        return self._closed.is_set()

    def add_close_listener(self, listener: BridgeListener) -> None:
        """Call ``listener(bridge)`` once when the bridge has closed."""
        self._listeners.append(listener)

    async def answer(self, name: str, offer_sdp: str) -> str:
        """Connect participant ``name`` from its SDP offer; returns the SDP answer.

        When the offer is refused the leg leaves the bridge (its slot is free again, or still
        held by the leg it was to replace) and the error is raised. When it is answered and
        the leg replaces another, that one leaves the bridge and is closed.
        """
        leg = self.leg(name)
        other_slot = (self._slot[name] + 1) % _SLOTS
        leg.add_keyframe_listener(self._on_keyframe_wanted)
        try:
            answer = await leg.answer(
                offer_sdp,
                outbound=self._tracks[other_slot].reader(),
                outbound_video=self._video_tracks[other_slot].reader(),
            )
        except BaseException:
            self._replacing.pop(name, None)
            self._remove(leg)
            raise
        replaced = self._legs.get(self._replacing.pop(name, ""))
        if replaced is not None:
            self._remove(replaced)  # first, so that its end does not end the call
            await replaced.close()
        if leg.ended:
            self._on_leg_ended(leg)
        else:
            leg.add_end_listener(self._on_leg_ended)
        return answer

    def _remove(self, leg: Leg) -> None:
        if self._legs.get(leg.name) is leg:
            del self._legs[leg.name]
            del self._slot[leg.name]

    def _publisher(self, slot: int) -> Leg | None:
        """The leg whose media fills ``slot``'s tracks (a replacement counts once answered)."""
        for name, leg in self._legs.items():
            if self._slot[name] == slot and name not in self._replacing:
                return leg
        return None

    def _on_keyframe_wanted(self, receiver: Leg) -> None:
        if self._legs.get(receiver.name) is not receiver:
            return  # a replaced or refused leg
        publisher = self._publisher((self._slot[receiver.name] + 1) % _SLOTS)
        if publisher is not None:
            publisher.request_keyframe()

    async def close(self) -> None:
        """Hang up: close both legs. Idempotent."""
        await self._start_closing()

    async def wait_closed(self) -> None:
        """Return once the call has ended."""
        await self._closed.wait()

    def _on_leg_ended(self, leg: Leg) -> None:
        if self._legs.get(leg.name) is leg:  # a replaced leg's end is not the call's
            self._start_closing()

    def _start_closing(self) -> asyncio.Task[None]:
        if self._close_task is None:
            self._close_task = asyncio.create_task(self._close_legs(), name="media-bridge-close")
        return self._close_task

    async def _close_legs(self) -> None:
        try:
            for track in (*self._tracks, *self._video_tracks):
                track.stop()
            await asyncio.gather(*(leg.close() for leg in self._legs.values()))
        finally:
            self._closed.set()
            listeners, self._listeners = self._listeners, []
            for listener in listeners:
                with contextlib.suppress(Exception):
                    listener(self)
