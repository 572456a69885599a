"""A server's registration in the routing view: heartbeats from start to shutdown.

Each UCServer and MediaServer runs one ``Registrar`` as a background task. Its
first heartbeat carries epoch 0 and receives the epoch of this run; every later
one carries that epoch and the server's current load. When the Lookup cannot
be reached the registrar retries with a growing, jittered delay (capped at the
heartbeat interval, so a recovered Lookup sees the server again within one
interval, and the retry rate never exceeds the normal heartbeat rate); it never
raises into the server. If the Lookup answers that the epoch is stale, another
process registered under the same server id after this one: the registrar stops
(two processes fighting over one id would only flap) and logs an error. If the
Lookup refuses who the server is (its certificate or proof does not name the
server it registers), the registrar keeps retrying. In both cases it tells
``on_routable(False)`` (the server then reports NOT_SERVING in its health: a
server that is not in the routing view must not look like a healthy one), and
``on_routable(True)`` once a heartbeat is taken again. If the
Lookup refuses the epoch as never issued, the registrar starts a new run (epoch
0). On a clean shutdown it deregisters, so the server leaves the view at once
instead of after the TTL.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from procall import clock
from procall.errors import Aborted, InvalidArgument, PermissionDenied, Unauthenticated
from procall.routing.models import DependencyHealth, ServerInfo, ServerRole
from procall.routing.ports import LookupPort
from procall.tasks import stop_task

__all__ = ["CpuGauge", "LoadGauge", "Registrar", "ServerIdentity"]

_log = logging.getLogger(__name__)

_FIRST_RETRY = 0.1


@dataclass(frozen=True)
class ServerIdentity:
    """What a server registers as: fixed for the whole run."""

    server_id: str
    role: ServerRole
    address: str
    capacity: int
    version: str = ""
    #: Address other servers dial (the mutual-TLS port); empty when it is ``address``.
    mesh_address: str = ""


class CpuGauge:
    """The process's CPU use since the previous reading, in percent of one core, rounded to
    a multiple of ``step`` (a reading per heartbeat: the routing view changes only when the
    figure moves by a step). Pass it to the ``Registrar`` as ``cpu_percent``."""

    def __init__(
        self,
        step: int = 5,
        clock: Callable[[], float] = time.monotonic,
        cpu: Callable[[], float] = time.process_time,
    ) -> None:
        self._step = max(1, step)
        self._clock = clock
        self._cpu = cpu
        self._at = clock()
        self._used = cpu()
        self._last = 0

    def __call__(self) -> int:
        """CPU percent of one core since the previous call (every thread of the process)."""
        at, used = self._clock(), self._cpu()
        elapsed, spent = at - self._at, used - self._used
        self._at, self._used = at, used
        if elapsed > 0:
            self._last = int(round(100 * spent / elapsed / self._step)) * self._step
        return self._last


class LoadGauge:
    """A server's current load, kept by whatever carries it (sessions, calls).

    Pass the gauge (a callable) to the ``Registrar`` as ``load``.
    """

    def __init__(self, value: int = 0) -> None:
        self._value = max(0, value)

    @property
    def value(self) -> int:
        """The current load."""
        return self._value

    def set(self, value: int) -> None:
        """Set the load (negative values count as 0)."""
        self._value = max(0, value)

    def add(self, delta: int) -> None:
        """Change the load by ``delta`` (never below 0)."""
        self._value = max(0, self._value + delta)

    def __call__(self) -> int:
        return self._value


def _never() -> bool:
    return False


class Registrar:
    """Keeps one server registered with the Lookup (see the module doc).

    Args:
        port: the Lookup.
        identity: what the server registers as.
        load: its current load, read at every heartbeat.
        interval: seconds between heartbeats.
        draining / degraded: read at every heartbeat; call ``beat_now`` after a
            change so that it reaches the view without waiting for the interval.
        rng: jitter of the retry delays.
        on_routable: awaited with False when the server leaves the routing view for a
            reason other than an unreachable Lookup (fenced, or refused), with True when
            a heartbeat is taken again.
    """

    def __init__(
        self,
        port: LookupPort,
        identity: ServerIdentity,
        *,
        load: Callable[[], int],
        interval: float,
        draining: Callable[[], bool] | None = None,
        degraded: Callable[[], bool] | None = None,
        outbox_depth: Callable[[], int] | None = None,
        legs: Callable[[], int] | None = None,
        cpu_percent: Callable[[], int] | None = None,
        dependencies: Callable[[], Sequence[DependencyHealth]] | None = None,
        rng: random.Random | None = None,
        on_routable: Callable[[bool], Awaitable[None]] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self._port = port
        self._identity = identity
        self._load = load
        self._draining = draining or _never
        self._degraded = degraded or _never
        self._outbox_depth = outbox_depth or (lambda: 0)
        self._legs = legs or (lambda: 0)
        self._cpu_percent = cpu_percent or (lambda: 0)
        self._dependencies = dependencies or tuple
        self._interval = interval
        self._rng = rng or random.Random()
        self._on_routable = on_routable
        self._routable = True
        self._start_time = clock.now()
        self._epoch = 0
        self._fenced = False
        self._deregistered = False
        self._wake = asyncio.Event()
        self._registered = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Whether the last heartbeat reached the Lookup (True until one failed).
        self.reachable = True

    @property
    def epoch(self) -> int:
        """The epoch of this run (0 until the first heartbeat was answered)."""
        return self._epoch

    @property
    def fenced(self) -> bool:
        """Whether the Lookup said a newer run owns this server id (heartbeats stopped)."""
        return self._fenced

    @property
    def running(self) -> bool:
        """Whether the heartbeat task is running."""
        return self._task is not None and not self._task.done()

    def current_info(self) -> ServerInfo:
        """The info the next heartbeat sends."""
        identity = self._identity
        return ServerInfo(
            server_id=identity.server_id,
            role=identity.role,
            address=identity.address,
            epoch=self._epoch,
            capacity=identity.capacity,
            load=max(0, int(self._load())),
            draining=bool(self._draining()),
            degraded=bool(self._degraded()),
            outbox_depth=max(0, int(self._outbox_depth())),
            legs=max(0, int(self._legs())),
            cpu_percent=max(0, int(self._cpu_percent())),
            dependencies=tuple(self._dependencies()),
            start_time=self._start_time,
            version=identity.version,
            mesh_address=identity.mesh_address if identity.mesh_address != identity.address else "",
        )

    def start(self) -> None:
        """Start heartbeating in the background (returns at once)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"registrar {self._identity.server_id}"
            )

    def beat_now(self) -> None:
        """Send the next heartbeat now instead of at the end of the interval."""
        self._wake.set()

    async def wait_registered(self, timeout: float | None = None) -> bool:
        """Wait until a heartbeat was answered; whether it was within ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                await self._registered.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self, timeout: float = 2.0) -> None:
        """Stop heartbeating and deregister this run (within ``timeout`` seconds)."""
        task, self._task = self._task, None
        await stop_task(task)
        if self._epoch and not self._fenced and not self._deregistered:
            self._deregistered = True
            try:
                async with asyncio.timeout(timeout):
                    await self._port.deregister(self._identity.server_id, self._epoch)
            except Exception as exc:  # the TTL removes the entry anyway
                _log.warning(
                    "%s could not deregister (%s); its registration lapses after the TTL",
                    self._identity.server_id,
                    type(exc).__name__,
                )

    async def _report_routable(self, routable: bool) -> None:
        if routable == self._routable:
            return
        self._routable = routable
        if self._on_routable is None:
            return
        try:
            await self._on_routable(routable)
        except Exception:  # the server must keep running whatever happens here
            _log.exception("%s: reporting the routing state failed", self._identity.server_id)

    def _retry_delay(self, failures: int) -> float:
        ceiling = min(self._interval, _FIRST_RETRY * 2.0 ** min(failures - 1, 16))
        return ceiling * self._rng.uniform(0.5, 1.0)

    async def _pause(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        server_id = self._identity.server_id
        while True:
            began = loop.time()
            try:
                ack = await self._port.heartbeat(self.current_info())
            except Aborted:
                self._fenced = True
                _log.error(
                    "%s stopped heartbeating: a newer run registered under the same server id "
                    "(is the id configured twice?)",
                    server_id,
                )
                await self._report_routable(False)
                return
            except (PermissionDenied, Unauthenticated) as exc:
                failures += 1
                log = _log.error if failures == 1 else _log.debug
                log("%s: the Lookup refused this server: %s", server_id, exc.message)
                await self._report_routable(False)
                await self._pause(max(self._interval, self._retry_delay(failures)))
                continue
            except InvalidArgument as exc:
                if self._epoch:
                    # e.g. an epoch from before a Redis failover to a host whose clock is far
                    # behind: start a new run rather than insisting on one the Lookup refuses
                    _log.warning("%s: the Lookup refused epoch %d; registering anew",
                                 server_id, self._epoch)  # fmt: skip
                    self._epoch = 0
                    continue
                failures += 1
                log = _log.error if failures == 1 else _log.debug
                log("%s: the Lookup refused the registration: %s", server_id, exc.message)
                await self._pause(self._retry_delay(failures))
                continue
            except Exception as exc:  # the server must keep running whatever happens here
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from exc  # cancelled, seen as an error
                failures += 1
                self.reachable = False
                log = _log.warning if failures == 1 else _log.debug
                log("%s heartbeat failed (%s); retrying", server_id, type(exc).__name__)
                await self._pause(self._retry_delay(failures))
                continue
            if ack.epoch != self._epoch:
                _log.info("%s registered with epoch %d", server_id, ack.epoch)
            if failures:
                _log.info("%s heartbeats resumed after %d failures", server_id, failures)
            self._epoch = ack.epoch
            failures = 0
            self.reachable = True
            self._registered.set()
            await self._report_routable(True)
            await self._pause(max(0.0, self._interval - (loop.time() - began)))
