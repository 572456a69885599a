"""A client's raw ``SessionService.Connect`` stream in tests (the SDK's events are read with
``tests.integration.client.helpers.EventReader``)."""

from __future__ import annotations

import asyncio
import contextlib

import grpc

from procall.api.presence.v1 import presence_pb2
from procall.api.session.v1 import session_pb2
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from tests.helpers.topology import ChannelFor, auth

__all__ = ["EventStream"]


class EventStream:
    """A client's Connect stream, reading events in the background."""

    def __init__(
        self,
        address: str,
        token: str,
        channel_for: ChannelFor = grpc.aio.insecure_channel,
        resume_token: str = "",
        *,
        reopen_if_resume_lost: bool = False,
    ) -> None:
        """``channel_for`` makes the channel (``system.channel`` for a TLS system);
        ``reopen_if_resume_lost`` asks for a fresh stream when the resume cannot be had."""
        self.channel = channel_for(address)
        self.call = session_grpc.SessionServiceStub(self.channel).Connect(metadata=auth(token))
        self.events: asyncio.Queue[session_pb2.Event | grpc.aio.AioRpcError] = asyncio.Queue()
        self._resume = resume_token
        self._reopen = reopen_if_resume_lost
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> session_pb2.Event:
        """Open the stream (resuming after ``resume_token`` when given); the first event."""
        await self.call.write(
            session_pb.ConnectRequest(
                open=session_pb.OpenStream(
                    resume_token=self._resume, reopen_if_resume_lost=self._reopen
                )
            )
        )
        self._task = asyncio.create_task(self._read())
        return await self.next()

    async def _read(self) -> None:
        try:
            async for reply in self.call:
                await self.events.put(reply.event)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                await self.events.put(error)

    async def next(self, timeout: float = 5) -> session_pb2.Event:
        """The next event."""
        item = await asyncio.wait_for(self.events.get(), timeout)
        if isinstance(item, grpc.aio.AioRpcError):
            raise item
        return item

    async def next_of(self, kind: str, timeout: float = 5) -> session_pb2.Event:
        """The next event whose payload is ``kind`` (others are skipped)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            event = await self.next(max(0.01, left))
            if event.WhichOneof("payload") == kind:
                return event

    async def presence_of(self, user_id: str, timeout: float = 5) -> presence_pb2.Presence:
        """The next presence change of ``user_id`` (other events are skipped)."""
        while True:
            event = await self.next(timeout)
            if event.HasField("presence_changed") and event.presence_changed.presence.user_id == (
                user_id
            ):
                return event.presence_changed.presence

    async def ack(self, sequence: int) -> None:
        """Acknowledge the events up to ``sequence``."""
        await self.call.write(session_pb.ConnectRequest(ack=session_pb.Ack(sequence=sequence)))

    def drained(self) -> list[session_pb2.Event | grpc.aio.AioRpcError]:
        """What the stream received and nobody read yet (events and a final error)."""
        items = []
        while not self.events.empty():
            items.append(self.events.get_nowait())
        return items

    def drain(self, kind: str) -> list[session_pb2.Event]:
        """The events of ``kind`` already received (others are dropped)."""
        found = []
        while not self.events.empty():
            item = self.events.get_nowait()
            if isinstance(item, session_pb2.Event) and item.WhichOneof("payload") == kind:
                found.append(item)
        return found

    async def close(self) -> None:
        """Cancel the stream."""
        self.call.cancel()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.channel.close()
