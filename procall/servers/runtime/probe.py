"""How long a request waits in this server before a handler takes it.

A busy ``grpc.aio`` server takes new requests from its transport only as fast as its
event loop gets round to them; the rest wait in grpc's core, out of the loop's sight,
so the loop's lag can stay low while every client waits seconds (``procall bench
overload`` showed 30-40 ms of loop lag beside SetPresence calls of 2-4 s).
``RequestWaitProbe`` sends the server a health check through its own mesh port every
``interval`` seconds and reports the round trip to the ``LoadShedder``: it waits in
the same queue as the clients' requests. A dozen tiny calls a second cost next to
nothing.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from procall.limits import LoadShedder
from procall.servers.runtime.app import ServerApp
from procall.servers.runtime.channels import MeshChannels
from procall.tasks import stop_task

__all__ = ["RequestWaitProbe"]

_log = logging.getLogger(__name__)


class RequestWaitProbe:
    """Measures the request queue of a server for its shedder (start/stop are hooks)."""

    def __init__(
        self, shedder: LoadShedder, *, interval: float = 0.1, timeout: float = 5.0
    ) -> None:
        self._shedder = shedder
        self._interval = interval
        self._timeout = timeout
        self._channel: grpc.aio.Channel | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, app: ServerApp) -> None:
        """Start probing ``app``'s server (after it listens)."""
        if self._task is not None:
            return
        server_id = app.settings.server.server_id or app.role
        channels = MeshChannels(app.settings, app.role, server_id)
        # health checks need no credentials: no proof, whatever the mode
        self._channel = channels.channel(app.grpc.mesh_address, server_id, prove=False)
        stub = health_pb2_grpc.HealthStub(self._channel)
        self._task = asyncio.create_task(self._run(stub), name="request-wait-probe")

    async def stop(self, _app: object = None) -> None:
        """Stop probing."""
        task, self._task = self._task, None
        await stop_task(task)
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()

    async def _run(self, stub: health_pb2_grpc.HealthStub) -> None:
        loop = asyncio.get_running_loop()
        request = health_pb2.HealthCheckRequest()
        while True:
            await asyncio.sleep(self._interval)
            started = loop.time()
            try:
                await stub.Check(request, timeout=self._timeout)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    _log.debug("request-wait probe failed: %s", error.code().name)
                    continue  # not an answer about the queue (the server is stopping)
            self._shedder.record_request_wait(loop.time() - started)
