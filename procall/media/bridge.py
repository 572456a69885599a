"""A bridge: a two-party call through the MediaServer, audio forwarded encoded both ways."""

from __future__ import annotations

import asyncio

from procall.errors import InvalidArgument, NotFound
from procall.media.config import MediaConfig
from procall.media.leg import Leg

__all__ = ["Bridge"]


class Bridge:
    """Two legs, each hearing the other: each leg's ``inbound`` is the other's outgoing track.

    The call ends as a whole: :meth:`close` (hang-up) or the end of either leg (its peer
    failed or went away) closes both legs.
    """

    def __init__(self, names: tuple[str, str], config: MediaConfig | None = None) -> None:
        first, second = names
        if first == second:
            raise InvalidArgument("a bridge joins two different participants")
        config = config or MediaConfig()
        self._legs = {first: Leg(first, config), second: Leg(second, config)}
        self._other = {first: second, second: first}
        self._close_task: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        for leg in self._legs.values():
            leg.add_end_listener(self._on_leg_ended)

    def leg(self, name: str) -> Leg:
        """The leg of participant ``name``."""
        try:
            return self._legs[name]
        except KeyError:
            raise NotFound(f"no leg {name} in this bridge") from None

    @property
    def legs(self) -> tuple[Leg, Leg]:
        """Both legs, in the order of the names given."""
        first, second = self._legs.values()
        return first, second

    @property
    def closed(self) -> bool:
        """Whether the call has ended (both legs closed)."""
        return self._closed.is_set()

    async def answer(self, name: str, offer_sdp: str) -> str:
        """Connect participant ``name`` from its SDP offer; returns the SDP answer."""
        leg = self.leg(name)
        other = self._legs[self._other[name]]
        return await leg.answer(offer_sdp, outbound=other.inbound)

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
            await asyncio.gather(*(leg.close() for leg in self._legs.values()))
        finally:
            self._closed.set()
