"""Keyframe requests across a bridge: forwarded video needs them passed on by hand.

A far end that cannot decode (it joined late, or lost a frame) sends a PLI or FIR to the leg
that sends it video. aiortc's sender answers that by asking its *encoder* for a keyframe, and
a forwarding sender has no encoder: the request would be lost. :func:`watch_keyframe_requests`
lets a leg see those requests, and a :class:`KeyframeRequester` passes them on to the
publishing participant as a PLI from the leg that receives its video (aiortc's receiver sends
it, see :mod:`procall.media.internals`). A :class:`KeyframeLimiter` keeps that to one request
per interval, since every keyframe costs the publisher a burst of bitrate; a request inside
the interval is deferred to its end, never dropped, so the last one is always answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, RtcpPsfbPacket

from procall.media.internals import SEND_PLI_METHOD, SENDER_RTCP_HANDLER

__all__ = [
    "DEFAULT_KEYFRAME_INTERVAL",
    "KeyframeLimiter",
    "KeyframeRequester",
    "watch_keyframe_requests",
]

#: Shortest time between two keyframe requests to one publisher, in seconds.
DEFAULT_KEYFRAME_INTERVAL = 0.3


class KeyframeLimiter:
    """When a keyframe request may go out: at most one per ``interval`` seconds.

    Pure bookkeeping on a clock given by the caller. :meth:`request` says to send now (``0``),
    to send after a delay (the rest of the interval; the caller then calls :meth:`deferred_sent`
    when it sends), or nothing (``None``: a deferred request is already due and covers this one).
    """

    def __init__(self, interval: float = DEFAULT_KEYFRAME_INTERVAL) -> None:
        if interval < 0:
            raise ValueError("the interval must not be negative")
        self.interval = interval
        self._next_allowed: float | None = None
        self._deferred = False

    def request(self, now: float) -> float | None:
        """A keyframe is wanted at ``now``: the delay before sending, or ``None`` (covered)."""
        if self._deferred:
            return None
        if self._next_allowed is None or now >= self._next_allowed:
            self._next_allowed = now + self.interval
            return 0.0
        self._deferred = True
        return self._next_allowed - now

    def deferred_sent(self, now: float) -> None:
        """The deferred request went out at ``now``."""
        self._deferred = False
        self._next_allowed = now + self.interval


class KeyframeRequester:
    """Asks one participant for keyframes through the receiver of its video, rate-limited.

    The request is a PLI for the participant's current SSRC (the receiver's synchronization
    sources); before any packet arrived there is nobody to ask, and none is needed: a
    publisher's first frame is a keyframe. Must be used on the event loop.
    """

    def __init__(
        self, receiver: RTCRtpReceiver, interval: float = DEFAULT_KEYFRAME_INTERVAL
    ) -> None:
        self._receiver = receiver
        self._limiter = KeyframeLimiter(interval)
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        #: Requests made, and PLIs sent to the participant.
        self.requested = 0
        self.sent = 0

    def request(self) -> None:
        """Ask for a keyframe now, or at the end of the current interval."""
        if self._closed:
            return
        self.requested += 1
        loop = asyncio.get_running_loop()
        delay = self._limiter.request(loop.time())
        if delay is None:
            return
        if delay == 0:
            self._send()
        else:
            self._timer = loop.call_later(delay, self._send_deferred)

    def _send_deferred(self) -> None:
        self._timer = None
        self._limiter.deferred_sent(asyncio.get_running_loop().time())
        self._send()

    def _send(self) -> None:
        sources = self._receiver.getSynchronizationSources()
        if not sources:
            return
        newest = max(sources, key=lambda source: source.timestamp)
        send_pli: Callable[[int], Coroutine[Any, Any, None]] = getattr(
            self._receiver, SEND_PLI_METHOD
        )
        task = asyncio.create_task(send_pli(newest.source), name="media-keyframe-request")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.sent += 1

    def close(self) -> None:
        """Send nothing more (the leg ends); a PLI already on its way is cancelled."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in self._tasks:
            task.cancel()


def watch_keyframe_requests(sender: RTCRtpSender, listener: Callable[[], None]) -> None:
    """Call ``listener()`` for every PLI or FIR the far end sends about ``sender``'s media.

    The sender still handles the request itself afterwards (it flags its encoder, which a
    forwarding sender does not use). Call before the sender starts.
    """
    original: Callable[[Any], Coroutine[Any, Any, None]] = getattr(sender, SENDER_RTCP_HANDLER)

    async def handle_rtcp_packet(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            listener()
        await original(packet)

    setattr(sender, SENDER_RTCP_HANDLER, handle_rtcp_packet)
