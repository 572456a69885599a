"""Reading a client's events in tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

import grpc

from procall.client import ChannelFactory, ClientEvent, PresenceChanged, ProcallClient
from tests.integration.client.tcp_proxy import TcpProxy

E = TypeVar("E", bound=ClientEvent)


class EventReader:
    """Reads a client's ``events()`` in the background and keeps everything it saw."""

    def __init__(self, client: ProcallClient) -> None:
        self.seen: list[ClientEvent] = []
        self.error: BaseException | None = None
        self.ended = asyncio.Event()
        self._queue: asyncio.Queue[ClientEvent] = asyncio.Queue()
        self._iterator: AsyncIterator[ClientEvent] = client.events()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for event in self._iterator:
                self.seen.append(event)
                await self._queue.put(event)
        except Exception as error:  # kept for the test to inspect
            self.error = error
        finally:
            self.ended.set()

    async def next(self, kind: type[E], where: Callable[[E], bool] = lambda e: True,
                   timeout: float = 5.0) -> E:  # fmt: skip
        """The next event of ``kind`` matching ``where`` (others are skipped)."""

        async def find() -> E:
            while True:
                event = await self._queue.get()
                if isinstance(event, kind) and where(event):
                    return event

        return await asyncio.wait_for(find(), timeout)

    async def presence_of(self, user_id: str, note: str | None = None,
                          timeout: float = 5.0) -> PresenceChanged:  # fmt: skip
        """The next presence change of ``user_id`` (with ``note`` when given)."""
        return await self.next(
            PresenceChanged,
            lambda e: e.user_id == user_id and (note is None or e.note == note),
            timeout,
        )

    async def quiet(self, seconds: float) -> list[ClientEvent]:
        """The events that arrive within ``seconds``."""
        await asyncio.sleep(seconds)
        found = []
        while not self._queue.empty():
            found.append(self._queue.get_nowait())
        return found

    def of(self, kind: type[E]) -> list[E]:
        """Every event of ``kind`` seen so far."""
        return [e for e in self.seen if isinstance(e, kind)]

    async def stop(self) -> None:
        """Stop reading."""
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


def via(proxy: TcpProxy, address: str) -> ChannelFactory:
    """A channel factory sending the traffic for ``address`` through ``proxy``."""

    def factory(target: str, options: Sequence[tuple[str, Any]]) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(
            proxy.address if target == address else target, options=list(options)
        )

    return factory
