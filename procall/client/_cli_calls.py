"""``procall client ... call | answer | hangup``: calls with a softphone from the command line.

``call USER`` places the call, sends the chosen audio as soon as the call rings, waits for
the answer, keeps the call for ``--seconds`` (or until the other side hangs up, or Ctrl-C),
then hangs up. ``answer`` waits for a call ringing for the user (or takes ``--call-id``),
answers it and does the same. Every change of the call is printed as it comes (one line,
like ``watch``), then a summary: the end reason and what was heard. Exit 0 when the call
was connected, 1 when it never was (declined, no answer, busy, ...) or a request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TextIO

from procall.client._client import ProcallClient
from procall.client._errors import ProcallClientError
from procall.client._events import CallChanged, ClientEvent, SessionClosed
from procall.client._format import format_event
from procall.client._media.audio import SAMPLE_RATE, AudioSource, ToneSource, WavSource
from procall.client._media.softphone import Softphone

__all__ = ["CALL_ACTIONS", "add_call_parsers", "audio_source", "run_call_action"]

#: The ``procall client login USER ...`` actions of this module.
CALL_ACTIONS = ("call", "answer", "hangup")
EXIT_FAILED = 1
#: Seconds ``answer`` waits for a ringing call by default.
DEFAULT_ANSWER_WAIT = 60.0


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text}")
    return value


def _frequency(text: str) -> float:
    value = _positive(text)
    if value >= SAMPLE_RATE / 2:
        raise argparse.ArgumentTypeError(f"a tone must be below {SAMPLE_RATE // 2} Hz: {text}")
    return value


def _add_media(parser: argparse.ArgumentParser) -> None:
    sound = parser.add_mutually_exclusive_group()
    sound.add_argument("--tone", type=_frequency, metavar="HZ", help="send a sine tone")
    sound.add_argument("--wav", type=Path, metavar="FILE", help="send a 16-bit WAV file (looped)")
    parser.add_argument("--record", type=Path, metavar="FILE", help="write what you hear (WAV)")
    parser.add_argument(
        "--seconds",
        type=_positive,
        metavar="N",
        help="hang up after N seconds connected (default: when the other side does, or Ctrl-C)",
    )
    parser.add_argument(
        "--host-address",
        action="append",
        metavar="ADDR",
        dest="host_addresses",
        help="offer only this local address for media (repeatable; default: every interface)",
    )


def add_call_parsers(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> list[
    argparse.ArgumentParser
]:  # fmt: skip
    """Add ``call``, ``answer`` and ``hangup`` to the ``login USER`` actions; returns them."""
    call = actions.add_parser("call", help="call a user, talk, hang up")
    call.add_argument(
        "callee",
        metavar="USER",
        help="user id or username to call",
    )
    _add_media(call)
    answer = actions.add_parser("answer", help="answer a ringing call, talk, hang up")
    answer.add_argument("--call-id", help="the call to answer (default: the next one ringing)")
    answer.add_argument(
        "--wait",
        type=_positive,
        default=DEFAULT_ANSWER_WAIT,
        metavar="N",
        help=f"seconds to wait for a ringing call (default {DEFAULT_ANSWER_WAIT:g})",
    )
    _add_media(answer)
    hangup = actions.add_parser("hangup", help="end (or cancel) a call")
    hangup.add_argument("call_id", metavar="CALL_ID")
    return [call, answer, hangup]


def audio_source(args: argparse.Namespace) -> AudioSource | None:
    """The source the options name, checked before logging in (``ValueError``: one line)."""
    record = getattr(args, "record", None)
    if record is not None and not Path(record).parent.is_dir():
        raise ValueError(f"cannot record to {record}: no such directory")
    if getattr(args, "wav", None) is not None:
        return WavSource(args.wav)
    if getattr(args, "tone", None) is not None:
        return ToneSource(args.tone)
    return None


async def run_call_action(
    client: ProcallClient, args: argparse.Namespace, out: TextIO, source: AudioSource | None
) -> int:
    """Run ``call``, ``answer`` or ``hangup``; returns the exit code (errors raise
    ``ProcallClientError``)."""
    if args.client_action == "hangup":
        call = await client.hang_up(args.call_id)
        reason = f" ({call.end_reason})" if call.end_reason else ""
        print(f"call {call.call_id} {call.state}{reason}", file=out, flush=True)
        return 0
    events = _Events(client)
    try:
        return await _Talk(client, args, out, source, events).run()
    finally:
        await events.close()


class _Events:
    """The client's events on a queue (the stream has one reader: this task)."""

    def __init__(self, client: ProcallClient) -> None:
        self.queue: asyncio.Queue[ClientEvent | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._read(client.events()), name="cli-call-events")

    async def _read(self, events: AsyncIterator[ClientEvent]) -> None:
        try:
            async for event in events:
                self.queue.put_nowait(event)
        finally:
            self.queue.put_nowait(None)

    async def next(self, timeout: float | None) -> ClientEvent | None:
        """The next event; None when the stream ended or ``timeout`` passed."""
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


class _Talk:
    """One call from the command line: ring or answer, talk, hang up, report."""

    def __init__(
        self,
        client: ProcallClient,
        args: argparse.Namespace,
        out: TextIO,
        source: AudioSource | None,
        events: _Events,
    ) -> None:
        self.client = client
        self.args = args
        self.out = out
        self.events = events
        self.phone = Softphone(client, source, args.record, args.host_addresses)
        self.call_id = ""
        self.connected_at: float | None = None
        self.end_reason = ""
        self._ended_at: float | None = None
        self._media_started = False
        self._last: tuple[str, str] = ("", "")

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        try:
            calling = self.args.client_action == "call"
            if await (self._place() if calling else self._answer()):
                await self._talk()
        except asyncio.CancelledError:  # Ctrl-C: hang up and report below
            if (current := asyncio.current_task()) is not None:
                current.uncancel()
        finally:
            await self._finish()
        if self.connected_at is None:
            if self.call_id:
                self.say(f"ended: {self.end_reason or 'unknown'}; never connected")
                print(
                    f"procall: error: call {self.call_id} was not connected "
                    f"({self.end_reason or 'unknown'})",
                    file=sys.stderr,
                )
            return EXIT_FAILED
        heard = self.phone.first_audio_at
        seconds = len(self.phone.samples) / SAMPLE_RATE
        self.say(
            f"ended: {self.end_reason or 'unknown'}; connected "
            f"{(self._ended_at or loop.time()) - self.connected_at:.1f} s"
        )
        if heard is None:
            self.say("heard: nothing")
        else:
            self.say(f"heard: {seconds:.1f} s of audio" + self._recorded())
        return 0

    def _recorded(self) -> str:
        return f", recorded to {self.args.record}" if self.args.record else ""

    def _show(self, event: CallChanged) -> None:
        """Print a change of the call (a state, or the media moving to another server)."""
        key = (event.state, event.media_server_id)
        if key == self._last:
            return
        moved = self._last[0] == event.state == "connected"
        self._last = key
        line = format_event(event)
        self.say(f"{line}  (media moved to {event.media_server_id})" if moved else line)

    async def _place(self) -> bool:
        callee: str = self.args.callee
        try:
            uuid.UUID(callee)
        except ValueError:  # a username
            call = await self.client.place_call(username=callee)
        else:
            call = await self.client.place_call(callee)
        self.call_id = call.call_id
        self.say(f"calling {self.args.callee}: call {call.call_id}")
        if call.state in ("ringing", "connected"):
            await self._start_media()
        return await self._until_connected()

    async def _answer(self) -> bool:
        call_id = self.args.call_id or await self._ringing_call()
        if not call_id:
            self.say(f"no call rang within {self.args.wait:g} s")
            return False
        call = await self.client.answer_call(call_id)
        self.call_id = call.call_id
        self.say(f"answered call {call.call_id} from {call.caller_user_id}")
        if call.state == "connected":
            self.connected_at = asyncio.get_running_loop().time()
        await self._start_media()
        return await self._until_connected()

    async def _ringing_call(self) -> str:
        me = self.client.user_id
        for call in await self.client.list_active_calls():
            if call.state == "ringing" and call.target_user_id == me:
                return call.call_id
        self.say("waiting for a call ...")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.args.wait
        while (left := deadline - loop.time()) > 0:
            event = await self.events.next(left)
            if event is None:
                return ""
            if (
                isinstance(event, CallChanged)
                and event.state == "ringing"
                and event.target_user_id == me
            ):
                return event.call_id
        return ""

    async def _start_media(self) -> None:
        if self._media_started:
            return
        self._media_started = True
        try:
            media = await self.phone.start(self.call_id)
        except ProcallClientError as error:
            if error.code.name != "FAILED_PRECONDITION":
                raise
            return  # the call ended meanwhile (declined, canceled): its event follows
        what = self.phone.source.describe()
        self.say(f"media on {media}: sending {what}" + self._recorded())

    async def _until_connected(self) -> bool:
        """Follow the call until it is connected (True) or ended (False)."""
        while self.connected_at is None:
            event = await self._next_call_event(None)
            if event is None:
                return False
            if event.state in ("ringing", "connected"):
                await self._start_media()
            if event.state == "connected":
                self.connected_at = asyncio.get_running_loop().time()
            elif event.state == "ended":
                return False
        return True

    async def _next_call_event(self, timeout: float | None) -> CallChanged | None:
        """The next event of the call (printed, fed to the softphone); None when it ended
        or the stream did."""
        while True:
            event = await self.events.next(timeout)
            if event is None or isinstance(event, SessionClosed):
                return None
            if isinstance(event, CallChanged) and event.call_id == self.call_id:
                self._show(event)
                self.phone.on_event(event)
                if event.state == "ended":
                    self.end_reason = event.end_reason
                    self._ended_at = asyncio.get_running_loop().time()
                return event

    async def _talk(self) -> None:
        """Keep the call for ``--seconds`` or until it ends."""
        assert self.connected_at is not None
        loop = asyncio.get_running_loop()
        seconds = self.args.seconds
        deadline = None if seconds is None else self.connected_at + seconds
        while not self.end_reason:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return
            event = await self._next_call_event(left)
            if event is None and (deadline is None or loop.time() < deadline):
                return  # the stream ended

    async def _finish(self) -> None:
        """Hang up unless the call has ended, wait for the ENDED event, stop the media."""
        if self.call_id and not self.end_reason:
            with contextlib.suppress(ProcallClientError):  # the other side may be first
                await self.client.hang_up(self.call_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._await_ended(), 3)
            if not self.end_reason:  # no event (the stream is down): ask for the call
                with contextlib.suppress(ProcallClientError):
                    self.end_reason = (await self.client.get_call(self.call_id)).end_reason
            if self._ended_at is None:
                self._ended_at = asyncio.get_running_loop().time()
        await self.phone.stop()

    async def _await_ended(self) -> None:
        while True:
            event = await self._next_call_event(None)
            if event is None or event.state == "ended":
                return
