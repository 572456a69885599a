"""``procall bench presence``: cross-server presence latency, CPU per delivery and the knee,
beside a bare grpc.aio baseline of the same pattern measured in the same run.

Starts a DataCenter (Redis, Directory, Lookup, two UCServers, one MediaServer) as real
processes, with ``PROCALL_VITALS_DIR`` set so that every server records its loop lag
and GC pauses, creates N users homed half on each UCServer, and runs the load
generator (``loadgen.py``) in a separate process: every client watches ``watch``
clients of the other server and presence changes at a steady rate. See ``loadgen.py``
for the windows and ``bare.py`` for the baseline.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from procall.api.directory.v1 import directory_pb2
from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.bench.setup import (
    LOADGEN_CPUS,
    PASSWORD,
    SERVER_CPUS,
    SETUP_TIMEOUT,
    Progress,
    bench_config,
    pinned,
    run_loadgen,
)
from procall.launch.datacenter import DataCenter, DataCenterError
from procall.servers.runtime.vitals import ENV_VAR

__all__ = ["PresencePlan", "format_result", "run_presence_bench"]


@dataclass(frozen=True)
class PresencePlan:
    """What one run of the presence benchmark does."""

    clients: int = 1000
    #: deliveries per second offered in the main window (each change reaches ``watch``)
    deliveries_per_s: float = 5000.0
    #: seconds of the main window
    seconds: float = 5.0
    #: watchers of each user (on the other UCServer)
    watch: int = 10
    #: seconds of each step of the knee ramp (0: no ramp)
    ramp_seconds: float = 3.0
    #: the ramp's first rate and its highest (deliveries per second)
    ramp_start: float = 2000.0
    ramp_ceiling: float = 32_000.0
    #: fan-out: every other client watches one user (half of them on its server, half on
    #: the other), the only one who changes; ``watch`` is then ``clients - 1``
    fanout: bool = False
    #: measure the bare baseline too (off: procall's windows only)
    baseline: bool = True
    #: servers on the first core, the load generator on the second (``setup.pinned``)
    pinned: bool = False
    #: the servers refuse new work when overloaded (off: ``[limits]`` shedding disabled)
    shedding: bool = True
    #: print the load generator's progress on stderr
    progress: bool = False


async def _create_users(
    open_channel: Callable[[], grpc.aio.Channel], count: int
) -> list[tuple[str, str, int]]:
    users: list[tuple[str, str, int]] = []
    gate = asyncio.Semaphore(4)  # SQLite takes one writer at a time
    async with open_channel() as channel:
        stub = directory_grpc.DirectoryServiceStub(channel)

        async def create(i: int) -> None:
            async with gate:
                reply = await stub.CreateUser(
                    directory_pb.CreateUserRequest(
                        user=directory_pb2.User(
                            username=f"u{i:05d}",
                            display_name=f"User {i}",
                            home_server_id=f"ucserver-{1 + i % 2}",
                        ),
                        password=PASSWORD,
                    ),
                    timeout=SETUP_TIMEOUT,
                )
            users.append((reply.user.username, reply.user.user_id, i % 2))

        await asyncio.gather(*(create(i) for i in range(count)))
    return users


def run_presence_bench(plan: PresencePlan) -> dict[str, Any]:
    """Run the benchmark once; returns the figures (see ``loadgen.py``).

    Raises:
        DataCenterError: The topology or the load generator failed.
    """
    with tempfile.TemporaryDirectory(prefix="procall-bench-") as tmp:
        vitals = Path(tmp) / "vitals"
        vitals.mkdir()
        previous = os.environ.get(ENV_VAR)
        os.environ[ENV_VAR] = str(vitals)  # the servers (and the bare ones) inherit it
        center = DataCenter(
            Path(tmp),
            tls=False,  # plaintext clients, as before TLS became the default
            ucservers=2,
            media_servers=1,
            on_line=lambda _: None,
            seed_demo=False,
            extra_config=bench_config(plan.clients + 10, quiet_upkeep=True, shedding=plan.shedding),
        )
        try:
            Progress("presence", plan.progress)("starting the DataCenter")
            with pinned(SERVER_CPUS if plan.pinned else None):
                center.start()
            return _run(center, Path(tmp), plan)
        finally:
            center.stop()
            if previous is None:
                os.environ.pop(ENV_VAR, None)
            else:
                os.environ[ENV_VAR] = previous


def _run(center: DataCenter, tmp: Path, plan: PresencePlan) -> dict[str, Any]:
    address = {e.name: e.address for e in center.endpoints}
    redis = address["redis"]
    Progress("presence", plan.progress)(f"creating {plan.clients} users")
    try:
        users = asyncio.run(_create_users(center.operator_channel, plan.clients))
    except grpc.aio.AioRpcError as error:
        raise DataCenterError(f"creating the users failed: {error.details()}") from None
    pids = {e.name: e.pid for e in center.endpoints if e.pid}
    spec = {
        "password": PASSWORD,
        "users": [{"username": u, "user_id": i, "side": side} for u, i, side in users],
        "addresses": [address["ucserver-1"], address["ucserver-2"]],
        "redis_url": redis if "://" in redis else f"redis://{redis}",
        "watch": plan.clients - 1 if plan.fanout else plan.watch,
        "fanout": plan.fanout,
        "deliveries_per_s": plan.deliveries_per_s,
        "seconds": plan.seconds,
        "ramp_seconds": plan.ramp_seconds,
        "ramp_start": plan.ramp_start,
        "ramp_ceiling": plan.ramp_ceiling,
        "baseline": plan.baseline,
        # the loadgen reports the CPU each of these used during the measurement
        "pids": pids,
    }
    cpus = LOADGEN_CPUS if plan.pinned else None
    result = run_loadgen("procall.bench.loadgen", spec, tmp, progress=plan.progress, cpus=cpus)
    result["shedding"] = plan.shedding
    result["server_cpus"] = {name: sorted(os.sched_getaffinity(pid)) for name, pid in pids.items()}
    return result


def _per_process(figures: dict[str, float], unit: str) -> str:
    return ", ".join(f"{name} {value:g}{unit}" for name, value in figures.items())


def _vitals(vitals: dict[str, dict[str, float]]) -> list[str]:
    return [
        f"    {name:<14} loop lag p99 {v['loop_lag_p99_ms']} ms (max {v['loop_lag_max_ms']}), "
        f"GC {v['gc_pauses']} pauses, {v['gc_total_ms']} ms total, max {v['gc_max_ms']} ms"
        for name, v in vitals.items()
    ]


def _codes(by_code: dict[str, int]) -> str:
    return ": " + ", ".join(f"{code} {n}" for code, n in by_code.items()) if by_code else ""


def format_result(result: dict[str, Any]) -> str:
    """The figures of one run, readably."""
    bare = result["baseline"]
    watching = "one user" if result.get("fanout") else f"{result['watch']} each"
    lines = [
        f"presence: {result['clients']} clients watching {watching}, offered "
        f"{result['offered_per_s']:g} deliveries/s for {result['seconds']:g} s "
        f"(events of {result['event_bytes']} bytes)",
        f"  procall       p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
        f"{result['deliveries_per_s']} deliveries/s (delivered {result['delivered_fraction']}, "
        f"skipped changes {result['changes_skipped']}, failed {result['failed_changes']}"
        f"{_codes(result.get('failed_by_code', {}))})",
        f"  bare baseline p50 {bare['p50_ms']} ms, p99 {bare['p99_ms']} ms, "
        f"{bare['deliveries_per_s']} deliveries/s (delivered {bare['delivered_fraction']})",
        f"  server CPU per delivery: procall {result['server_cpu_us_per_delivery']} us, "
        f"bare {result['baseline_server_cpu_us_per_delivery']} us, "
        f"cpu_ratio {result['cpu_ratio']}",
        f"  knee (p99 < 50 ms): procall {result['knee_per_s']:g}/s, "
        f"bare {result['baseline_knee_per_s']:g}/s, ratio {result['knee_ratio']}"
        if result["knee_steps"]
        else "  knee: not searched (--ramp 0)",
        f"  generator     issue lag p99 {result['issue_lag_p99_ms']} ms (its own lateness), "
        f"load average {' '.join(str(x) for x in result['load_average'])}",
        "  CPU us per delivery, procall: " + _per_process(result["cpu_us_per_delivery"], ""),
        "  CPU us per delivery, bare:    " + _per_process(bare["cpu_us_per_delivery"], ""),
        "  idle CPU % (upkeep):          " + _per_process(result["idle_cpu_percent"], ""),
        "  servers' loop lag and GC pauses in the main window:",
        *_vitals(result.get("vitals", {})),
        *_vitals(bare.get("vitals", {})),
    ]
    if result.get("fanout"):
        lines.append(f"  fan-out to {result['watch']} watchers of one user: p99 procall "
                     f"{result['p99_ms']} ms, bare {bare['p99_ms']} ms, "
                     f"ratio {result['p99_ratio']} (target <= 2)")  # fmt: skip
    if result["clients"] == 5000 and result["offered_per_s"] == 10_000:
        lines.append(f"  absolute figure: p99 at 5,000 clients and 10,000 deliveries/s: "
                     f"{result['p99_ms']} ms")  # fmt: skip
    return "\n".join(lines)
