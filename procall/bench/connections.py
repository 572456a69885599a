"""``procall bench connections``: how many clients the box holds, their memory, a restart.

Starts a DataCenter (Redis, Directory, Lookup, two UCServers, one MediaServer) as real
processes, creates the users (half homed on each UCServer) and runs the load generator
(:mod:`procall.bench.connections_loadgen`) in a separate process. It ramps SDK clients up
(each logs in and holds its ``Connect`` stream on its own connection), measures the
UCServers' resident memory per connected client beside a bare grpc.aio server holding
as many streams, then kills one UCServer (SIGKILL) and starts it again on its port through
the launcher, and measures how long its clients take to be back on their sessions.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from procall.bench.chat import summarize_profile
from procall.bench.connections_loadgen import raise_nofile
from procall.bench.profiling import start_profilers, stop_profilers
from procall.bench.setup import PASSWORD, Progress, bench_config, make_pairs
from procall.launch.datacenter import DataCenter, DataCenterError

__all__ = ["TARGETS", "format_result", "run_connections_bench"]

#: The issue's targets: RSS per client against the bare stream's, and the seconds until
#: every client of the restarted UCServer is back (5,000 of them).
TARGETS = {"rss_ratio": 1.5, "reconnect_s": 5.0}
#: The UCServer that is restarted.
RESTARTED = "ucserver-2"
#: Seconds the restarted UCServer's clients have to come back before the run gives up.
RECONNECT_TIMEOUT = 60.0


def _name(pair: int, side: int) -> tuple[str, str]:
    username = f"conn{pair:05d}{'ab'[side]}"
    return username, username


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


def _drive(
    center: DataCenter, loadgen: subprocess.Popen[str], say: Any, profile_dir: Path | None
) -> tuple[dict[str, Any], dict[str, float]]:
    """Serve the load generator's restart request; returns its result and the times."""
    assert loadgen.stdout is not None and loadgen.stdin is not None
    times: dict[str, float] = {}
    last = ""
    profilers: list[subprocess.Popen[bytes]] = []
    try:
        for line in loadgen.stdout:
            line = line.strip()
            if not line:
                continue
            last = line
            message = json.loads(line)
            if "reconnected" in message:
                stop_profilers(profilers)
                profilers = []
            if "restart" not in message:
                continue
            name = message["restart"]
            endpoint = next(e for e in center.endpoints if e.name == name)
            say(f"killing {name} (SIGKILL) and starting it again on its port")
            times["killed_at"] = time.monotonic()
            center.kill(name)
            center.restart(name, "ucserver", port=_port(endpoint.address))
            times["ready_at"] = time.monotonic()
            pid = next(e.pid for e in center.endpoints if e.name == name)
            say(f"{name} serving again after {times['ready_at'] - times['killed_at']:.2f} s")
            if profile_dir is not None:  # the reconnect, on the server and in the clients
                profilers = start_profilers({name: pid, "loadgen": loadgen.pid}, profile_dir)
            loadgen.stdin.write(json.dumps({**times, "pid": pid}) + "\n")
            loadgen.stdin.flush()
        loadgen.wait()
    finally:
        stop_profilers(profilers)
    if loadgen.returncode != 0 or not last:
        raise DataCenterError("the load generator failed")
    result: dict[str, Any] = json.loads(last)
    return result, times


def _failure(log: IO[str]) -> str:
    log.seek(0)
    lines = log.read().strip().splitlines() or ["no output"]
    return next((ln for ln in lines if "details =" in ln), lines[-1]).strip()


def run_connections_bench(
    clients: int = 2000,
    *,
    most: int | None = None,
    step: int = 1000,
    profile_dir: Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the benchmark for ``clients`` clients (ramping on to ``most`` when higher);
    returns the figures (see :mod:`procall.bench.connections_loadgen`).

    With ``profile_dir`` the restarted UCServer and the load generator are sampled with
    py-spy from the restart until every client is back; a summary is added.

    Raises:
        DataCenterError: The topology or the load generator failed.
    """
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    if clients < 4 or step < 1:
        raise DataCenterError("--clients must be at least 4 and --step at least 1")
    top = max(clients, most or 0)
    say = Progress("connections", progress)
    # the servers (children of this process) inherit it: each holds a connection per client
    raise_nofile()
    pairs = (top + 1) // 2
    with tempfile.TemporaryDirectory(prefix="procall-bench-conn-") as tmp:
        center = DataCenter(
            Path(tmp),
            tls=False,  # plaintext clients, as the other benchmarks
            ucservers=2,
            media_servers=1,
            on_line=lambda _: None,
            seed_demo=False,
            # a restarted server's clients take licenses again before the old ones lapse
            extra_config=bench_config(4 * pairs + 10),
        )
        say("starting the DataCenter")
        center.start()
        try:
            address = {e.name: e.address for e in center.endpoints}
            say(f"creating {2 * pairs} users")
            made = make_pairs(center, pairs, _name)
            spec = {
                "password": PASSWORD,
                "users": [{**u, "address": address[u["home"]]} for pair in made for u in pair],
                "clients": clients,
                "max": top,
                "step": step,
                # the first RSS reading comes after these (imports, caches, pools warmed)
                "warm": max(2, min(100, clients // 10)),
                "restart": RESTARTED,
                "reconnect_timeout": RECONNECT_TIMEOUT,
                "pids": {e.name: e.pid for e in center.endpoints if e.role == "ucserver"},
                # their CPU during the reconnect is reported too
                "other_pids": {
                    e.name: e.pid for e in center.endpoints if e.pid and e.role != "ucserver"
                },
            }
            spec_path = Path(tmp) / "spec.json"
            spec_path.write_text(json.dumps(spec), "utf-8")
            with open(Path(tmp) / "loadgen.log", "w+", encoding="utf-8") as log:
                loadgen = subprocess.Popen(
                    [sys.executable, "-m", "procall.bench.connections_loadgen", str(spec_path)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=None if progress else log,
                    text=True,
                )
                try:
                    result, _ = _drive(center, loadgen, say, profile_dir)
                except DataCenterError:
                    raise DataCenterError(f"the load generator failed: {_failure(log)}") from None
                finally:
                    if loadgen.poll() is None:
                        loadgen.kill()
                        loadgen.wait()
        finally:
            center.stop()
            if profile_dir is not None:  # the servers' logs beside their profiles
                shutil.copytree(Path(tmp) / "logs", profile_dir / "logs", dirs_exist_ok=True)
    if profile_dir is not None:
        result["profile"] = {
            path.stem: summarize_profile(path) for path in sorted(profile_dir.glob("*.txt"))
        }
    result["targets"] = {
        "rss_ratio": {
            "target": TARGETS["rss_ratio"],
            "met": 0 < result["rss_ratio"] <= TARGETS["rss_ratio"],
        },
        "reconnect_s": {
            "target": TARGETS["reconnect_s"],
            "met": 0 <= result["reconnect_s"] < TARGETS["reconnect_s"],
        },
    }
    return result


def format_result(result: dict[str, Any]) -> str:
    """A short report: memory beside the bare streams, and the restart."""
    mib = 1024 * 1024
    by_server = ", ".join(
        f"{name} {b / 1024:.1f} KiB" for name, b in result["rss_bytes_per_client_by_server"].items()
    )
    lines = [
        f"connections: {result['held']} of {result['clients']} clients held "
        f"({result['limit']}; ramp {result['ramp_s']} s)",
        f"  RSS per client       {result['rss_bytes_per_client'] / 1024:.1f} KiB ({by_server})",
        f"  bare grpc.aio stream {result['baseline_rss_bytes_per_client'] / 1024:.1f} KiB "
        f"({result['baseline_streams']} streams); ratio {result['rss_ratio']}",
        "  UCServer RSS         "
        + ", ".join(
            f"{name} {result['rss_before_bytes'][name] / mib:.0f} -> {after / mib:.0f} MiB"
            for name, after in result["rss_after_bytes"].items()
        ),
        f"  restart of {RESTARTED}: {result['restart_clients']} clients; serving again after "
        f"{result['restart_s']} s",
        f"  all back            {result['reconnect_s']} s after it served again "
        f"(p50 {result['reconnect_p50_s']}, p90 {result['reconnect_p90_s']} s; "
        f"{result['outage_s']} s after the kill)",
        f"  back {result['back']}: resumed their session {result['resumed']}, logged in "
        f"again {result['relogged']}; stream resumed {result['stream_resumed']}, "
        f"resynced {result['resynced']}",
    ]
    for key, target in result["targets"].items():
        verdict = "met" if target["met"] else "MISSED"
        bound = "<=" if key == "rss_ratio" else "<"
        lines.append(f"  target {key} {bound} {target['target']:g}: {verdict} ({result[key]})")
    cpu = ", ".join(f"{name} {pct}" for name, pct in result["reconnect_cpu_percent"].items())
    lines.append(f"  CPU % of a core during the reconnect: {cpu}")
    servers = ", ".join(f"{name} {n}" for name, n in result["servers_nofile"].items())
    lines.append(f"  open-file limits: load generator {result['nofile']}, {servers}")
    for name, summary in result.get("profile", {}).items():
        lines.append(f"  py-spy {name}: {summary['samples']} busy samples; top self time:")
        lines += [f"    {pct:5.1f}%  {frame}" for frame, pct in summary["self"][:8]]
        lines.append("   procall frames on the stack (inclusive):")
        lines += [f"    {pct:5.1f}%  {frame}" for frame, pct in summary["inclusive"][:12]]
    return "\n".join(lines)
