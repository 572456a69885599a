"""What every benchmark's DataCenter shares: servers that let one host play every client
(no rate limits, cheap password hashing) and the users the load generators log in as."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc

from procall.api.directory.v1 import directory_pb2
from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.launch.datacenter import DataCenter, DataCenterError

__all__ = [
    "HOMES",
    "LOADGEN_CPUS",
    "SERVER_CPUS",
    "PASSWORD",
    "SETUP_TIMEOUT",
    "Progress",
    "bench_config",
    "create_pairs",
    "make_pairs",
    "pinned",
    "run_loadgen",
]

#: The password of every benchmark user.
PASSWORD = "bench-password"
#: Seconds one setup call (creating a user) may take.
SETUP_TIMEOUT = 60.0
#: Where the two users of a pair are homed: one on each UCServer.
HOMES = ("ucserver-1", "ucserver-2")

Section = dict[str, str | int | float | bool | list[str]]

#: The [limits] of a benchmark's servers: one host plays every client, as fast as it can.
_BENCH_LIMITS: Section = {
    "source_rate": 1e9,
    "source_burst": 1e9,
    "user_rate": 1e9,
    "user_burst": 1e9,
}
#: The [directory] of a benchmark: cheap hashing, no login throttling.
_FAST_DIRECTORY: Section = {
    "argon2_time_cost": 1,
    "argon2_memory_kib": 1024,
    "argon2_parallelism": 1,
    "max_failed_logins": 1_000_000,
}
#: The [lookup] of a benchmark: the upkeep that runs on every heartbeat (session and
#: license renewal, presence interest) comes every 5 s instead of every second, and the
#: presence full check (every 60 heartbeats) after 5 minutes, out of a default run's
#: windows; the load generator reports what upkeep is left (its idle window).
_QUIET_UPKEEP: Section = {"heartbeat_interval": 5.0, "heartbeat_ttl": 20.0}


#: The [limits] that turn load shedding off (``bench_config(shedding=False)``).
_NO_SHEDDING: Section = {"overload_lag_ms": 0.0, "max_in_flight": 0}
#: Where ``procall bench overload`` runs the servers and the load generator.
SERVER_CPUS = frozenset({0})
LOADGEN_CPUS = frozenset({1})


def bench_config(
    licenses: int, *, quiet_upkeep: bool = False, shedding: bool = True, **sections: Section
) -> dict[str, Section]:
    """A benchmark DataCenter's ``extra_config``: ``licenses`` in the pool, the servers
    opened up for one host, with ``quiet_upkeep`` the upkeep every 5 s, without
    ``shedding`` no load shedding, and ``sections`` on top."""
    limits = _BENCH_LIMITS if shedding else _BENCH_LIMITS | _NO_SHEDDING
    config: dict[str, Section] = {
        "auth": {"license_pool_size": licenses},
        "directory": dict(_FAST_DIRECTORY),
        "limits": dict(limits),
    }
    if quiet_upkeep:
        config["lookup"] = dict(_QUIET_UPKEEP)
    return {**config, **sections}


async def create_pairs(
    open_channel: Callable[[], grpc.aio.Channel],
    pairs: int,
    name: Callable[[int, int], tuple[str, str]],
) -> list[tuple[dict[str, str], ...]]:
    """Both users of each pair, the first homed on ucserver-1, the second on ucserver-2;
    ``name(pair, side)`` gives the username and display name."""
    made: dict[tuple[int, int], dict[str, str]] = {}
    gate = asyncio.Semaphore(4)  # SQLite takes one writer at a time
    async with open_channel() as channel:
        stub = directory_grpc.DirectoryServiceStub(channel)

        async def create(pair: int, side: int) -> None:
            username, display_name = name(pair, side)
            async with gate:
                reply = await stub.CreateUser(
                    directory_pb.CreateUserRequest(
                        user=directory_pb2.User(
                            username=username,
                            display_name=display_name,
                            home_server_id=HOMES[side],
                        ),
                        password=PASSWORD,
                    ),
                    timeout=SETUP_TIMEOUT,
                )
            made[pair, side] = {
                "username": username,
                "user_id": reply.user.user_id,
                "home": HOMES[side],
            }

        await asyncio.gather(*(create(p, s) for p in range(pairs) for s in (0, 1)))
    return [(made[p, 0], made[p, 1]) for p in range(pairs)]


def make_pairs(
    center: DataCenter, pairs: int, name: Callable[[int, int], tuple[str, str]]
) -> list[tuple[dict[str, str], ...]]:
    """``create_pairs`` in ``center``'s Directory, from synchronous code.

    Raises:
        DataCenterError: The Directory refused a user.
    """
    try:
        return asyncio.run(create_pairs(center.operator_channel, pairs, name))
    except grpc.aio.AioRpcError as error:
        raise DataCenterError(f"creating the users failed: {error.details()}") from None


@contextlib.contextmanager
def pinned(cpus: frozenset[int] | None) -> Iterator[None]:
    """Within the block, this process and the processes it starts run on ``cpus`` only
    (``None``: wherever they like); afterwards this process runs where it did before.

    Raises:
        DataCenterError: The machine has fewer cores than ``cpus`` names.
    """
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    if not cpus <= before:
        raise DataCenterError(
            f"pinning needs cores {sorted(cpus)}; this process may use {sorted(before)}"
        )
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def run_loadgen(
    module: str,
    spec: dict[str, Any],
    tmp: Path,
    *,
    progress: bool,
    cpus: frozenset[int] | None = None,
) -> dict[str, Any]:
    """Run the load generator ``module`` (``python -m module SPEC``) on ``spec``, on
    ``cpus`` when given; returns the JSON object it prints. Its progress lines go to
    stderr as they come when ``progress``; when it fails they are kept in
    ``procall-loadgen.err`` beside ``tmp``.

    Raises:
        DataCenterError: The load generator failed (with the line that says why).
    """
    spec_path = tmp / "spec.json"
    spec_path.write_text(json.dumps(spec), "utf-8")
    with pinned(cpus):
        loadgen = subprocess.Popen(
            [sys.executable, "-m", module, str(spec_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert loadgen.stderr is not None and loadgen.stdout is not None
    lines = []
    for line in loadgen.stderr:
        lines.append(line.rstrip())
        if progress:
            print(line, end="", file=sys.stderr, flush=True)
    output = loadgen.stdout.read()
    if loadgen.wait() != 0:
        (tmp.parent / "procall-loadgen.err").write_text("\n".join(lines), "utf-8")
        lines = lines or ["no output"]
        reason = next((ln for ln in lines if "details =" in ln), lines[-1]).strip()
        raise DataCenterError(f"the load generator failed: {reason}")
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


class Progress:
    """What a bench calls to say where it is: a timed line on stderr when ``on``."""

    def __init__(self, bench: str, on: bool) -> None:
        self.bench = bench
        self.on = on

    def __call__(self, message: str) -> None:
        """Say ``message`` (nothing when off)."""
        if self.on:
            stamp = time.strftime("%H:%M:%S")
            print(f"{stamp} bench {self.bench}: {message}", file=sys.stderr, flush=True)
