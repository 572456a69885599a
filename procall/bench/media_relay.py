"""The baselines of ``procall bench media``: bare two-party aiortc relays in their own process.

``python -m procall.bench.media_relay forwarding|transcoding`` serves a one-line JSON
signalling protocol on 127.0.0.1 (a connection sends ``{"bridge": id, "offer": sdp}`` and
reads ``{"answer": sdp}`` or ``{"error": text}``), prints its port on stdout and relays audio
between the two legs of each bridge until it is terminated:

- ``forwarding``: each receiver's encoded Opus frames go to the other leg's sender through the
  same decoder-queue tap the MediaServer uses (:func:`procall.media.tap_receiver`), without
  procall's gRPC, registry, bridge or leg machinery;
- ``transcoding``: the simplest honest relay aiortc offers, ``MediaRelay``: each receiver
  decodes (its decoder thread), the other leg's sender encodes again.

Both only offer 127.0.0.1 candidates and force Opus, as the MediaServer does in the bench.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import Any

import uvloop
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from procall.media import LOOPBACK, ForwardedTrack, host_addresses, tap_receiver

__all__ = ["KINDS", "relay_answer", "serve_relay"]

#: The relays this module can serve.
KINDS = ("forwarding", "transcoding")

#: Longest signalling line accepted (an SDP offer is a few kilobytes).
_MAX_LINE = 256 * 1024


class _LateTrack(MediaStreamTrack):
    """What a transcoding leg sends: the other leg's decoded audio, once that leg exists."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._source: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()

    def attach(self, source: MediaStreamTrack) -> None:
        """Start sending ``source`` (the first call wins)."""
        if not self._source.done():
            self._source.set_result(source)

    async def recv(self) -> Any:
        """The next decoded frame of the source (the sender encodes it again)."""
        source = await self._source
        if self.readyState != "live":
            raise MediaStreamError
        return await source.recv()


class _Bridge:
    """Two legs relaying to each other: one outgoing track per slot, made up front."""

    def __init__(self, kind: str, relay: MediaRelay) -> None:
        self.kind = kind
        self.relay = relay
        self.legs: list[RTCPeerConnection] = []
        self.forwarded = (ForwardedTrack(), ForwardedTrack())
        self.late = (_LateTrack(), _LateTrack()) if kind == "transcoding" else None

    async def answer(self, offer: str) -> str:
        slot = len(self.legs)
        if slot >= 2:
            raise ValueError("the bridge joins two legs at most")
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.legs.append(pc)
        other = 1 - slot
        outbound: MediaStreamTrack
        if self.late is not None:
            outbound = self.late[other]
        else:
            outbound = self.forwarded[other]
        transceiver = pc.addTransceiver(outbound, direction="sendrecv")
        transceiver.setCodecPreferences(
            [
                codec
                for codec in RTCRtpSender.getCapabilities("audio").codecs
                if codec.mimeType.lower() == "audio/opus"
            ]
        )
        if self.late is not None:
            late = self.late[slot]

            @pc.on("track")
            def on_track(track: MediaStreamTrack) -> None:
                late.attach(self.relay.subscribe(track, buffered=False))

        else:
            tap_receiver(transceiver.receiver, self.forwarded[slot], "audio/opus")
        with host_addresses(LOOPBACK):
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        assert pc.localDescription is not None
        return pc.localDescription.sdp


async def serve_relay(kind: str) -> None:
    """Serve the signalling of a ``kind`` relay on 127.0.0.1 (port on stdout) until killed."""
    if kind not in KINDS:
        raise ValueError(f"unknown relay {kind!r}")
    relay = MediaRelay()
    bridges: dict[str, _Bridge] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = json.loads(await reader.readline())
            bridge = bridges.get(request["bridge"])
            if bridge is None:
                bridge = bridges[request["bridge"]] = _Bridge(kind, relay)
            reply = {"answer": await bridge.answer(request["offer"])}
        except Exception as exc:  # the load generator reports it
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        writer.write(json.dumps(reply).encode("utf-8") + b"\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, limit=_MAX_LINE)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


async def relay_answer(port: int, bridge: str, offer: str) -> str:
    """Ask the relay on ``port`` to answer ``offer`` for ``bridge`` (the load generator's side).

    Raises ``RuntimeError`` with the relay's reason when it refused the offer.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=_MAX_LINE)
    try:
        writer.write(json.dumps({"bridge": bridge, "offer": offer}).encode("utf-8") + b"\n")
        await writer.drain()
        reply = json.loads(await reader.readline())
    finally:
        writer.close()
    if "answer" not in reply:
        raise RuntimeError(f"the relay refused the offer: {reply.get('error')}")
    return str(reply["answer"])


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve_relay(sys.argv[1]))
