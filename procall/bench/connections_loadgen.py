"""The load generator of ``procall bench connections``: a separate process holding the clients.

``python -m procall.bench.connections_loadgen SPEC.json`` plays every client with the
SDK (``ProcallClient``: login, the ``Connect`` stream, acks, reconnect and resume), each
on its own connection as real clients are:

1. a warm-up of a few clients per UCServer, then the UCServers' RSS (the "before");
2. a ramp in steps of ``step`` clients up to ``clients`` (and on to ``max`` when that is
   higher), stopping at the first step in which a login or a stream fails: ``held`` is
   the most held at once; then the UCServers' RSS again (the "after");
3. the restart: it asks its parent (one JSON line on stdout) to kill the UCServer named
   ``restart`` and start it again on its port, reads the kill and ready times back (one
   JSON line on stdin; both ``time.monotonic()``, one clock for every process of the
   machine) and waits until every client of that server is back: its stream open again
   (``Connected``) on the same session (resumed: token and resume point accepted, or the
   session continued after a resync) or on a new one (logged in again);
4. the baseline: a bare grpc.aio server holding as many streams as one UCServer held
   (``connections_baseline.py``).

It prints one JSON object with the figures as its last stdout line.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import uvloop

from procall.bench.connections_baseline import measure_streams, rss_bytes
from procall.bench.stats import percentile
from procall.client import ClientOptions, Connected, Disconnected, ProcallClient, Resynced

__all__ = ["main", "raise_nofile"]

#: Logins (each with its stream's Welcome) in flight at once.
_SETUP_CONCURRENCY = 64
#: Seconds for the RSS of a server to settle after a step.
_SETTLE = 2.0


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} loadgen: {message}", file=sys.stderr, flush=True)


def raise_nofile() -> int:
    """Raise this process's open-file limit to its hard limit (every client holds a
    connection); returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _own_connection(address: str, options: Sequence[tuple[str, Any]]) -> grpc.aio.Channel:
    """A channel with a connection of its own: grpc shares one connection between the
    channels of a process by default, where real clients each have theirs."""
    return grpc.aio.insecure_channel(
        address, options=[*options, ("grpc.use_local_subchannel_pool", 1)]
    )


class _Client:
    """One simulated client and what its event stream told."""

    def __init__(self, user: dict[str, str]) -> None:
        self.user = user
        self.sdk: ProcallClient | None = None
        self.session_id = ""
        self.watching: asyncio.Task[None] | None = None
        #: Set when the restart begins: what follows is the reconnect.
        self.restarting = False
        self.dropped_at = 0.0
        self.back_at = 0.0
        self.back_session = ""
        self.stream_resumed = False
        self.resynced_at = 0.0
        self.disconnects = 0
        self.welcome_bytes = 0

    async def start(self, password: str, options: ClientOptions) -> None:
        self.sdk = await ProcallClient.login(
            self.user["address"],
            self.user["username"],
            password,
            options=options,
            channel_factory=_own_connection,
        )
        self.session_id = self.sdk.session_id
        self.watching = asyncio.create_task(self._watch(self.sdk))

    async def _watch(self, sdk: ProcallClient) -> None:
        with contextlib.suppress(Exception):
            async for event in sdk.events():
                now = time.monotonic()
                if isinstance(event, Connected):
                    if event.raw is not None and not self.welcome_bytes:
                        self.welcome_bytes = event.raw.ByteSize()
                    if self.restarting and not self.back_at:
                        self.back_at = now
                        self.back_session = event.session_id
                        self.stream_resumed = event.resumed
                elif isinstance(event, Disconnected) and self.restarting:
                    self.disconnects += 1
                    self.dropped_at = self.dropped_at or now
                elif isinstance(event, Resynced) and self.restarting:
                    self.resynced_at = self.resynced_at or now

    async def close(self) -> None:
        if self.sdk is not None:
            await self.sdk.close()
        if self.watching is not None:
            self.watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.watching


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0.0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_file_limit(pid: int) -> int:
    """The soft open-file limit of a process (0 when it cannot be read)."""
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return int(line.split()[3])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _rss(pids: dict[str, int]) -> dict[str, int]:
    return {name: rss_bytes(pid) for name, pid in pids.items()}


async def _start_all(
    clients: list[_Client], password: str, options: ClientOptions
) -> tuple[int, str]:
    """Log in and connect ``clients``; returns how many failed and the first reason."""
    gate = asyncio.Semaphore(_SETUP_CONCURRENCY)
    failures: list[str] = []

    async def one(client: _Client) -> None:
        async with gate:
            try:
                await client.start(password, options)
            except Exception as exc:  # a login or stream the box cannot take
                failures.append(f"{type(exc).__name__}: {exc}")

    await asyncio.gather(*(one(c) for c in clients))
    return len(failures), (failures[0] if failures else "")


async def _ask_restart(name: str) -> dict[str, float]:
    print(json.dumps({"restart": name}), flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not line:
        raise RuntimeError("the bench ended before the restart")
    answer: dict[str, float] = json.loads(line)
    return answer


def _interleaved(users: list[dict[str, str]]) -> list[dict[str, str]]:
    """The users alternating between their home servers (each step loads both evenly)."""
    by_home: dict[str, list[dict[str, str]]] = {}
    for user in users:
        by_home.setdefault(user["home"], []).append(user)
    columns = list(by_home.values())
    return [c[i] for i in range(max(map(len, columns), default=0)) for c in columns if i < len(c)]


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the measurement described by ``spec``; returns the figures."""
    nofile = raise_nofile()
    password: str = spec["password"]
    pids: dict[str, int] = spec["pids"]
    options = ClientOptions()
    users = _interleaved(spec["users"])
    target, most, step = int(spec["clients"]), int(spec["max"]), int(spec["step"])
    warm = int(spec["warm"])
    clients: list[_Client] = []
    try:
        _log(f"warm-up: {warm} clients")
        clients = [_Client(u) for u in users[:warm]]
        failed, reason = await _start_all(clients, password, options)
        if failed:
            raise RuntimeError(f"the warm-up failed: {reason}")
        gc.collect()
        gc.freeze()  # the clients live to the end: keep them out of the collections
        await asyncio.sleep(_SETTLE)
        before = _rss(pids)
        limit_reason = ""
        began = time.monotonic()
        while len(clients) < min(most, len(users)):
            goal = min(len(clients) + step, most, len(users))
            if len(clients) < target:
                goal = min(goal, target)
            batch = [_Client(u) for u in users[len(clients) : goal]]
            _log(f"ramp: {len(clients)} -> {goal} clients")
            failed, reason = await _start_all(batch, password, options)
            clients.extend(c for c in batch if c.sdk is not None)
            if failed:
                limit_reason = f"{failed} of {len(batch)} failed: {reason}"
                _log(f"ramp stopped: {limit_reason}")
                break
        ramp_s = time.monotonic() - began
        gc.collect()
        gc.freeze()
        await asyncio.sleep(_SETTLE)
        after = _rss(pids)
        servers_nofile = {name: open_file_limit(pid) for name, pid in pids.items()}
        held = len(clients)
        per_server = {name: sum(1 for c in clients if c.user["home"] == name) for name in pids}
        warm_per_server = {
            name: sum(1 for c in clients[:warm] if c.user["home"] == name) for name in pids
        }
        rss_per_client = {
            name: round((after[name] - before[name]) / (per_server[name] - warm_per_server[name]))
            for name in pids
            if per_server[name] > warm_per_server[name]
        }

        restart = spec["restart"]
        victims = [c for c in clients if c.user["home"] == restart]
        _log(f"restarting {restart} with {len(victims)} clients")
        for client in victims:
            client.restarting = True
        times = await _ask_restart(restart)
        watched = {"loadgen": os.getpid(), restart: int(times["pid"])}
        others: dict[str, int] = spec.get("other_pids", {})
        watched.update((n, p) for n, p in {**pids, **others}.items() if n != restart)
        cpu_before = {name: cpu_seconds(pid) for name, pid in watched.items()}
        deadline = times["ready_at"] + float(spec["reconnect_timeout"])
        while time.monotonic() < deadline and not all(c.back_at for c in victims):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the last resyncs
        window = time.monotonic() - times["ready_at"]
        reconnect_cpu = {
            name: round(100 * (cpu_seconds(pid) - cpu_before[name]) / window, 1)
            for name, pid in watched.items()
        }
        print(json.dumps({"reconnected": len([c for c in victims if c.back_at])}), flush=True)
        back = [c for c in victims if c.back_at]
        ready_at, killed_at = times["ready_at"], times["killed_at"]
        after_ready = [max(0.0, c.back_at - ready_at) for c in back]
        resumed = sum(1 for c in back if c.back_session == c.session_id)
        welcome = next((c.welcome_bytes for c in clients if c.welcome_bytes), 64)
    finally:
        _log("closing the clients")
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)

    count = max(per_server.values(), default=0)
    _log(f"baseline: a bare grpc.aio server holding {count} streams")
    baseline = await measure_streams(
        count,
        reply_bytes=welcome,
        channel_options=options.channel_options(),
        warm=max(warm_per_server.values(), default=0),
        settle=_SETTLE,
    )
    mean_rss = sum(rss_per_client.values()) / len(rss_per_client) if rss_per_client else 0.0
    base = baseline.bytes_per_stream
    return {
        "clients": target,
        "held": held,
        "limit": limit_reason or ("--max reached" if held >= most else "all users held"),
        "clients_per_server": per_server,
        "ramp_s": round(ramp_s, 2),
        "rss_bytes_per_client": round(mean_rss),
        "rss_bytes_per_client_by_server": rss_per_client,
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "baseline_streams": baseline.streams,
        "baseline_rss_bytes_per_client": round(base),
        "rss_ratio": round(mean_rss / base, 3) if base > 0 else 0.0,
        "restart_clients": len(victims),
        "restart_s": round(ready_at - killed_at, 3),
        "reconnect_s": round(max(after_ready), 3) if len(back) == len(victims) else -1.0,
        "reconnect_p50_s": round(percentile(after_ready, 0.5), 3),
        "reconnect_p90_s": round(percentile(after_ready, 0.9), 3),
        # clients back in each second after the restarted server served again
        "reconnect_per_second": [
            sum(1 for t in after_ready if int(t) == second)
            for second in range(int(max(after_ready, default=0.0)) + 1)
        ],
        # percent of one core from the restarted server's start until all were back
        "reconnect_cpu_percent": reconnect_cpu,
        "outage_s": round(max((c.back_at for c in back), default=killed_at) - killed_at, 3),
        "back": len(back),
        "resumed": resumed,
        "relogged": len(back) - resumed,
        "stream_resumed": sum(1 for c in back if c.stream_resumed),
        "resynced": sum(1 for c in back if c.resynced_at),
        "reconnect_attempts_mean": round(sum(c.disconnects for c in back) / len(back), 2)
        if back
        else 0.0,
        "welcome_bytes": welcome,
        "nofile": nofile,
        # each client is a connection at the UCServers too: what they may open
        "servers_nofile": servers_nofile,
    }


def main() -> int:
    """Entry point: ``python -m procall.bench.connections_loadgen SPEC.json``."""
    spec = json.loads(Path(sys.argv[1]).read_text("utf-8"))
    # the clients' garbage is small and short-lived: collect the young generation rarely
    gc.set_threshold(50_000, 20, 100)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(run(spec))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
