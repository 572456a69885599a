"""``procall bench chat``: cross-server chat send-to-deliver latency and messages/s.

Starts a DataCenter (Redis, Directory, Lookup, two UCServers, one MediaServer)
as real processes, with the chat database on SQLite or on a throwaway PostgreSQL
server, creates the two members of every 1:1 conversation (one homed on each
UCServer) and runs the load generator (``chat_loadgen.py``) in a separate
process: it sends at a steady rate, open loop, alternating the direction, and
measures from each ``SendMessage`` call to the receiver's ``message_created``
event, the CPU of every process per message and the knee, beside a bare grpc.aio
baseline of the same pattern on the same database (``bare.py``), with
``PROCALL_VITALS_DIR`` set so that every server records its loop lag and GC pauses.
With ``profile_dir`` it also samples the UCServers with py-spy during the main
window, sums up where their CPU goes and keeps the servers' logs there.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from procall.bench.profiling import py_spy
from procall.bench.setup import PASSWORD, Progress, bench_config, make_pairs, run_loadgen
from procall.launch.datacenter import DataCenter, DataCenterError
from procall.launch.postgres import PostgresError, PostgresServer
from procall.servers.runtime.vitals import ENV_VAR

__all__ = ["Database", "format_result", "run_chat_bench", "summarize_profile"]

#: Where the chat database lives.
Database = Literal["sqlite", "postgres"]


def _name(pair: int, side: int) -> tuple[str, str]:
    return f"c{pair:05d}{'ab'[side]}", f"Chat {pair}{'ab'[side]}"


def run_chat_bench(
    *,
    rate: float = 500.0,
    seconds: float = 5.0,
    conversations: int = 100,
    database: Database = "sqlite",
    profile_dir: Path | None = None,
    progress: bool = False,
    ramp_seconds: float = 3.0,
    ramp_start: float = 250.0,
    ramp_ceiling: float = 8000.0,
) -> dict[str, Any]:
    """Run the benchmark once; returns the figures (see ``chat_loadgen.py``). The knee
    search steps ``ramp_seconds`` each (0: none) from ``ramp_start`` messages/s up to at
    most ``ramp_ceiling``.

    Raises:
        DataCenterError: The topology, the database or the load generator failed.
    """
    if conversations < 1:
        raise DataCenterError("--conversations must be at least 1")
    if rate <= 0 or seconds <= 0:
        raise DataCenterError("--rate and --duration must be positive")
    profiler = None
    if profile_dir is not None:
        profiler = py_spy()
        if profiler is None:
            raise DataCenterError("py-spy is not installed (pip install py-spy)")
        profile_dir.mkdir(parents=True, exist_ok=True)
    say = Progress("chat", progress)
    with tempfile.TemporaryDirectory(prefix="procall-bench-chat-") as tmp:
        postgres: PostgresServer | None = None
        vitals = Path(tmp) / "vitals"
        vitals.mkdir()
        previous = os.environ.get(ENV_VAR)
        os.environ[ENV_VAR] = str(vitals)  # the servers (and the bare ones) inherit it
        try:
            if database == "postgres":
                try:
                    say("starting PostgreSQL")
                    postgres = PostgresServer(options={"max_connections": "200"}).start()
                except PostgresError as exc:
                    raise DataCenterError(f"cannot start PostgreSQL: {exc}") from None
                chat_url = postgres.url()
            else:
                chat_url = f"sqlite+aiosqlite:///{Path(tmp).resolve() / 'chat.db'}"
            ramp = (ramp_seconds, ramp_start, ramp_ceiling)
            plan = _Plan(rate, seconds, conversations, chat_url, profiler, profile_dir, ramp)
            result = _run(Path(tmp), plan, postgres, say)
        finally:
            if postgres is not None:
                postgres.close()
            if previous is None:
                os.environ.pop(ENV_VAR, None)
            else:
                os.environ[ENV_VAR] = previous
    result["database"] = database
    if profile_dir is not None:
        result["profile"] = {
            path.stem: summarize_profile(path) for path in sorted(profile_dir.glob("*.txt"))
        }
    return result


@dataclass(frozen=True)
class _Plan:
    """What one run does."""

    rate: float
    seconds: float
    conversations: int
    chat_url: str
    #: the py-spy executable and where its profiles go (None: no profiling)
    profiler: str | None
    profile_dir: Path | None
    #: the knee search: seconds per step, first rate, highest rate
    ramp: tuple[float, float, float]


def _run(tmp: Path, plan: _Plan, postgres: PostgresServer | None, say: Progress) -> dict[str, Any]:
    conversations = plan.conversations
    center = DataCenter(
        tmp,
        tls=False,  # plaintext clients, as before TLS became the default
        ucservers=2,
        media_servers=1,
        on_line=lambda _: None,
        seed_demo=False,
        extra_config=bench_config(
            2 * conversations + 10, quiet_upkeep=True, database={"chat_url": plan.chat_url}
        ),
    )
    say("starting the DataCenter")
    center.start()
    try:
        address = {e.name: e.address for e in center.endpoints}
        say(f"creating {2 * conversations} users")
        pairs = make_pairs(center, conversations, _name)
        pids = {e.name: e.pid for e in center.endpoints if e.pid}
        if postgres is not None:
            pids["postgres"] = postgres.pid  # with its backends
        redis = address["redis"]
        spec: dict[str, Any] = {
            "password": PASSWORD,
            "pairs": [
                [{**user, "address": address[user["home"]]} for user in pair] for pair in pairs
            ],
            "rate": plan.rate,
            "seconds": plan.seconds,
            "ramp_seconds": plan.ramp[0],
            "ramp_start": plan.ramp[1],
            "ramp_ceiling": plan.ramp[2],
            # the bare baseline uses the same Redis and the same database
            "redis_url": redis if "://" in redis else f"redis://{redis}",
            "sql_url": plan.chat_url,
            # the loadgen reports the CPU each of these used during the measurement
            "pids": pids,
        }
        if plan.profiler is not None and plan.profile_dir is not None:
            spec["profile"] = {
                "py_spy": plan.profiler,
                "dir": str(plan.profile_dir.resolve()),
                "pids": {n: pid for n, pid in pids.items() if n.startswith("ucserver")},
            }
        return run_loadgen("procall.bench.chat_loadgen", spec, tmp, progress=say.on)
    finally:
        center.stop()
        if plan.profile_dir is not None:  # the servers' logs go beside the profiles
            shutil.copytree(tmp / "logs", plan.profile_dir / "logs", dirs_exist_ok=True)


def summarize_profile(path: Path, top: int = 12) -> dict[str, Any]:
    """The hottest frames of a py-spy ``raw`` (collapsed stacks) file.

    ``self`` counts the samples in which a function was running itself; ``inclusive``
    those in which procall code was anywhere on the stack (idle samples are not in
    the file, so percentages are of the busy samples).
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text("utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            if "procall/" in frame and "procall/api/" not in frame:
                inclusive[frame] += count

    def share(counter: Counter[str]) -> list[list[Any]]:
        return [[frame, round(100 * n / total, 1)] for frame, n in counter.most_common(top)]

    return {"samples": total, "self": share(own) if total else [], "inclusive": share(inclusive)}


def _per_process(figures: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:g}" for name, value in figures.items())


def _vitals(vitals: dict[str, dict[str, float]]) -> list[str]:
    return [
        f"    {name:<14} loop lag p99 {v['loop_lag_p99_ms']} ms (max {v['loop_lag_max_ms']}), "
        f"GC {v['gc_pauses']} pauses, {v['gc_total_ms']} ms total, max {v['gc_max_ms']} ms"
        for name, v in vitals.items()
    ]


def format_result(result: dict[str, Any]) -> str:
    """A short table of the figures, then the profile summary when there is one."""
    bare = result["baseline"]
    errors = ", ".join(
        f"{code} {n} ({result['error_examples'].get(code, '')})"
        for code, n in result["error_codes"].items()
    )
    rows = [
        ("send-to-deliver", f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
                            f"max {result['max_ms']} ms"),
        ("delivered", f"{result['messages_per_s']} msg/s within the run, "
                      f"{result['delivered_per_s_overall']} msg/s overall"),
        ("messages", f"sent {result['sent']}, answered {result['answered']}, delivered "
                     f"{result['delivered']}, lost {result['lost']}"),
        ("errors", f"{result['errors']}" + (f": {errors}" if errors else "")),
        ("SendMessage", f"p50 {result['send_p50_ms']} ms, p99 {result['send_p99_ms']} ms"),
        ("issue lag p99", f"{result['issue_lag_p99_ms']} ms (the generator's own delay)"),
        ("bare baseline", f"send-to-deliver p50 {bare['p50_ms']} ms, p99 {bare['p99_ms']} ms, "
                          f"{bare['messages_per_s']} msg/s, lost {bare['lost']}, "
                          f"errors {bare['errors']}"),
        ("server CPU / msg", f"procall {result['server_cpu_us_per_message']} us, bare "
                             f"{result['baseline_server_cpu_us_per_message']} us, "
                             f"cpu_ratio {result['cpu_ratio']}"),
        ("knee (p99<50ms)", f"procall {result['knee_per_s']:g} msg/s, bare "
                            f"{result['baseline_knee_per_s']:g} msg/s, "
                            f"ratio {result['knee_ratio']}"
                            if result["knee_steps"] else "not searched (--ramp 0)"),
        ("CPU us / msg", _per_process(result["cpu_us_per_message"])),
        ("bare CPU us / msg", _per_process(bare["cpu_us_per_message"])),
        ("CPU, % of a core", _per_process(result["cpu_percent"])),
        ("load average", " ".join(str(x) for x in result["load_average"])),
    ]  # fmt: skip
    lines = [
        f"chat on {result['database']}: {result['conversations']} conversations, offered "
        f"{result['offered_rate']:g} msg/s for {result['duration_s']:g} s "
        f"(events of {result['event_bytes']} bytes)"
    ]
    lines += [f"  {label:<17} {value}" for label, value in rows]
    lines.append("  servers' loop lag and GC pauses in the main window:")
    lines += _vitals(result.get("vitals", {})) + _vitals(bare.get("vitals", {}))
    if result["offered_rate"] == 2000:
        lines.append(
            f"  absolute figure: send-to-deliver p99 at 2,000 msg/s: {result['p99_ms']} ms"
        )
    for name, summary in result.get("profile", {}).items():
        lines.append(f"  py-spy {name}: {summary['samples']} busy samples; top self time:")
        lines += [f"    {pct:5.1f}%  {frame}" for frame, pct in summary["self"][:8]]
        lines.append("   procall frames on the stack (inclusive):")
        lines += [f"    {pct:5.1f}%  {frame}" for frame, pct in summary["inclusive"][:8]]
    return "\n".join(lines)
