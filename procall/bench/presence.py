"""``procall bench presence``: cross-server presence latency and throughput.

Starts a DataCenter (Redis, Directory, Lookup, two UCServers, one MediaServer)
as real processes, creates N users homed half on each UCServer, and runs the
load generator (``loadgen.py``) in a separate process: every client watches 10
clients of the other server, presence changes at a steady rate, and the time
from each change to each watcher's delivery is measured, beside a bare
grpc.aio broadcast to as many streams.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from procall.api.directory.v1 import directory_pb2
from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.bench.setup import PASSWORD, SETUP_TIMEOUT, bench_config
from procall.launch.datacenter import DataCenter, DataCenterError

__all__ = ["run_presence_bench"]


async def _create_users(
    open_channel: Callable[[], grpc.aio.Channel], count: int
) -> list[tuple[str, str, str]]:
    users: list[tuple[str, str, str]] = []
    gate = asyncio.Semaphore(4)  # SQLite takes one writer at a time
    async with open_channel() as channel:
        stub = directory_grpc.DirectoryServiceStub(channel)

        async def create(i: int) -> None:
            home = f"ucserver-{1 + i % 2}"
            async with gate:
                reply = await stub.CreateUser(
                    directory_pb.CreateUserRequest(
                        user=directory_pb2.User(
                            username=f"u{i:05d}", display_name=f"User {i}", home_server_id=home
                        ),
                        password=PASSWORD,
                    ),
                    timeout=SETUP_TIMEOUT,
                )
            users.append((reply.user.username, reply.user.user_id, home))

        await asyncio.gather(*(create(i) for i in range(count)))
    return users


def run_presence_bench(
    clients: int, *, seconds: float = 10.0, watch: int = 10, deliveries_per_s: float = 10_000
) -> dict[str, Any]:
    """Run the benchmark for ``clients`` clients; returns the figures."""
    with tempfile.TemporaryDirectory(prefix="procall-bench-") as tmp:
        center = DataCenter(
            Path(tmp),
            tls=False,  # plaintext clients, as before TLS became the default
            ucservers=2,
            media_servers=1,
            on_line=lambda _: None,
            seed_demo=False,
            extra_config=bench_config(clients + 10),
        )
        center.start()
        try:
            address = {e.name: e.address for e in center.endpoints}
            try:
                users = asyncio.run(_create_users(center.operator_channel, clients))
            except grpc.aio.AioRpcError as error:
                raise DataCenterError(f"creating the users failed: {error.details()}") from None
            # the offered load: each change reaches about `watch` watchers
            spec = {
                "password": PASSWORD,
                "users": [
                    {"username": u, "user_id": i, "address": address[h]} for u, i, h in users
                ],
                "watch": watch,
                "changes_per_s": deliveries_per_s / watch,
                "seconds": seconds,
                "baseline_messages": max(20, 200_000 // clients),
                # the loadgen reports the CPU each of these used during the measurement
                "pids": {e.name: e.pid for e in center.endpoints},
            }
            spec_path = Path(tmp) / "spec.json"
            spec_path.write_text(json.dumps(spec), "utf-8")
            done = subprocess.run(
                [sys.executable, "-m", "procall.bench.loadgen", str(spec_path)],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                Path(tmp, "..", "procall-loadgen.err").resolve().write_text(done.stderr, "utf-8")
                lines = done.stderr.strip().splitlines() or ["no output"]
                reason = next((ln for ln in lines if "details =" in ln), lines[-1]).strip()
                raise DataCenterError(f"the load generator failed: {reason}")
            result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
            return result
        finally:
            center.stop()
