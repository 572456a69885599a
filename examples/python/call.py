"""Call a user with the procall Python SDK: a 440 Hz tone out, what you hear to a WAV file.

::

    python examples/python/call.py 127.0.0.1:50051 alice alice-demo BOB_USER_ID \
        --seconds 10 --record heard.wav

Answer on the other side with ``procall client login bob ... answer``. The call is hung up
after ``--seconds`` (or ends when the other side hangs up). The softphone is fed the
client's events, so it follows the call by itself when the MediaServer carrying it fails.
"""

from __future__ import annotations

import argparse
import asyncio

from procall.client import CallChanged, ProcallClient, Softphone, ToneSource


async def call(args: argparse.Namespace) -> None:
    """Log in, call, talk for ``args.seconds``, hang up, log out."""
    async with await ProcallClient.login(args.server, args.user, args.password) as client:
        placed = await client.place_call(args.callee)
        print(f"call {placed.call_id}: {placed.state}")
        phone = Softphone(client, ToneSource(440), record_to=args.record)
        await phone.start(placed.call_id)  # the caller may negotiate while it rings

        async def follow() -> None:
            async for event in client.events():
                phone.on_event(event)  # re-anchoring after a MediaServer failure, the end
                if isinstance(event, CallChanged) and event.call_id == placed.call_id:
                    print(f"call {event.call_id}: {event.state} {event.end_reason}".rstrip())
                    if event.state == "ended":
                        return

        follower = asyncio.create_task(follow())
        try:
            await asyncio.wait_for(asyncio.shield(follower), args.seconds)
        except TimeoutError:
            await client.hang_up(placed.call_id)
            await asyncio.wait_for(follower, 5)
        await phone.stop()
        saved = f", saved to {args.record}" if args.record else ""
        print(f"heard {len(phone.samples) / 48_000:.1f} s of audio{saved}")


def main() -> None:
    """Parse the command line and run the call."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("server", help="any UCServer, host:port")
    parser.add_argument("user")
    parser.add_argument("password")
    parser.add_argument("callee", help="the user id to call")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--record", help="WAV file for what you hear")
    asyncio.run(call(parser.parse_args()))


if __name__ == "__main__":
    main()
