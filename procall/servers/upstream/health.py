"""Whether a server this one needs answers its gRPC health check (probed in the background)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["HealthProbe"]

_log = logging.getLogger(__name__)


class HealthProbe:
    """Asks a server's health service every ``interval`` seconds; ``available`` is the answer
    (True until the first probe says otherwise)."""

    def __init__(self, name: str, channel: grpc.aio.Channel, interval: float) -> None:
        self.name = name
        self._stub = health_pb2_grpc.HealthStub(channel)
        self._interval = interval
        self.available = True
        self._task: asyncio.Task[None] | None = None

    async def check(self) -> bool:
        """Probe once; updates ``available``."""
        try:
            reply = await self._stub.Check(
                health_pb2.HealthCheckRequest(), timeout=max(0.5, self._interval)
            )
            available = bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
        except grpc.aio.AioRpcError:
            available = False
        if available != self.available:
            _log.warning("%s is %s", self.name, "reachable again" if available else "unreachable")
        self.available = available
        return available

    async def _run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        """Probe in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"probe-{self.name}")

    async def stop(self) -> None:
        """Stop probing."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
