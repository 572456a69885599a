"""``procall bench calls``: call set-up across UCServers, to the first audio frame, and set-ups/s.

Starts a DataCenter (Redis, Directory, Lookup, two UCServers, two MediaServers with media on
127.0.0.1) as real processes, creates the callers (homed on ucserver-1) and the callees
(homed on ucserver-2) and runs the load generator (:mod:`procall.bench.calls_loadgen`) in a
separate process: calls with real aiortc peers one at a time (place -> RINGING at the callee
-> answer -> CONNECTED at the caller -> first audio frame both ways -> hang up), then set-ups
without media ``concurrency`` at a time, then the baseline of bare grpc.aio unary round trips
in the same run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from procall.bench.calls_loadgen import SETUP_UNARY_CALLS, UNARY_CALLS_WITH_MEDIA
from procall.bench.chat import summarize_profile
from procall.bench.profiling import start_profilers, stop_profilers
from procall.bench.setup import PASSWORD, Progress, bench_config, make_pairs
from procall.launch.datacenter import DataCenter, DataCenterError

__all__ = ["TARGETS", "format_result", "run_calls_bench"]

#: The issue's targets on this machine: ringing at the callee p99, first audio frame p50 (ms).
TARGETS = {"ringing_p99_ms": 20.0, "first_audio_p50_ms": 300.0}


def _name(pair: int, side: int) -> tuple[str, str]:
    username = f"{('caller', 'callee')[side]}{pair:04d}"
    return username, username


def run_calls_bench(
    *,
    calls: int = 50,
    setups: int = 200,
    concurrency: int = 8,
    profile_dir: Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the benchmark once; returns the figures (see :mod:`procall.bench.calls_loadgen`).

    With ``profile_dir`` the UCServers and the Lookup are sampled with py-spy for the whole
    load generator run (both phases) and a summary of where their CPU went is added.

    Raises:
        DataCenterError: The topology or the load generator failed.
    """
    if calls < 1 or setups < 1 or concurrency < 1:
        raise DataCenterError("--calls, --setups and --concurrency must be at least 1")
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    say = Progress("calls", progress)
    pairs = max(concurrency, 4)
    with tempfile.TemporaryDirectory(prefix="procall-bench-calls-") as tmp:
        center = DataCenter(
            Path(tmp),
            tls=False,  # plaintext clients, as the other benchmarks
            ucservers=2,
            media_servers=2,
            on_line=lambda _: None,
            seed_demo=False,
            extra_config=bench_config(2 * pairs + 10, media={"host_addresses": ["127.0.0.1"]}),
        )
        say("starting the DataCenter")
        center.start()
        try:
            address = {e.name: e.address for e in center.endpoints}
            say(f"creating {2 * pairs} users")
            made = make_pairs(center, pairs, _name)
            pids = {
                e.name: e.pid
                for e in center.endpoints
                if e.pid and e.role in ("ucserver", "media", "lookup", "redis")
            }
            spec = {
                "password": PASSWORD,
                "pairs": [[{**u, "address": address[u["home"]]} for u in pair] for pair in made],
                "calls": calls,
                "setups": setups,
                "concurrency": concurrency,
                # the loadgen reports the CPU each of these used per call and per set-up
                "pids": pids,
            }
            spec_path = Path(tmp) / "spec.json"
            spec_path.write_text(json.dumps(spec), "utf-8")
            profiled = {n: p for n, p in pids.items() if n.startswith(("ucserver", "lookup"))}
            profilers = start_profilers(profiled, profile_dir) if profile_dir else []
            try:
                done = subprocess.run(
                    [sys.executable, "-m", "procall.bench.calls_loadgen", str(spec_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=None if progress else subprocess.PIPE,
                    text=True,
                )
            finally:
                stop_profilers(profilers)
            if done.returncode != 0:
                lines = (done.stderr or "").strip().splitlines() or ["see above"]
                reason = next((ln for ln in lines if "details =" in ln), lines[-1]).strip()
                raise DataCenterError(f"the load generator failed: {reason}")
            result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        finally:
            center.stop()
    result["pairs"] = pairs
    if profile_dir is not None:
        result["profile"] = {
            path.stem: summarize_profile(path) for path in sorted(profile_dir.glob("*.txt"))
        }
    result["unary_calls_per_setup"] = SETUP_UNARY_CALLS
    result["unary_calls_per_call_with_media"] = UNARY_CALLS_WITH_MEDIA
    result["targets"] = {
        key: {"target": limit, "met": result.get(key, float("inf")) < limit}
        for key, limit in TARGETS.items()
    }
    return result


def format_result(result: dict[str, Any]) -> str:
    """A short table: procall's figures beside the bare gRPC baseline of the same run."""

    def pair(key: str) -> str:
        return f"p50 {result[key + '_p50_ms']:>8.2f}  p99 {result[key + '_p99_ms']:>8.2f} ms"

    rows = [
        ("PlaceCall", pair("place")),
        ("place -> RINGING at callee", pair("ringing")),
        ("AnswerCall", pair("answer")),
        ("answer -> CONNECTED at caller", pair("answer_to_connected")),
        ("answer -> 1st audio at caller", pair("first_audio_caller")),
        ("answer -> 1st audio at callee", pair("first_audio_callee")),
        ("answer -> 1st audio both ways", pair("first_audio")),
        ("place -> 1st audio both ways", pair("place_to_first_audio")),
        ("HangUp -> ENDED at callee", pair("hangup_to_ended")),
        (f"ringing, {result['concurrency']} at once", pair("loaded_ringing")),
        (f"set-up, {result['concurrency']} at once", pair("loaded_setup")),
        ("bare unary round trip", pair("baseline_unary")),
        (f"bare {result['unary_calls_per_setup']} round trips", pair("baseline_setup")),
    ]
    cpu = ", ".join(f"{name} {ms}" for name, ms in result["cpu_ms_per_setup"].items() if ms >= 0.01)
    media_cpu = ", ".join(
        f"{name} {ms}" for name, ms in result["cpu_ms_per_call_with_media"].items() if ms >= 0.01
    )
    lines = [
        f"calls across UCServers: {result['calls']} calls with media one at a time, "
        f"{result['setups']} set-ups without media {result['concurrency']} at a time"
    ]
    lines += [f"  {label:<32} {value}" for label, value in rows]
    lines += [
        f"  {'set-ups/s (no media)':<32} {result['setups_per_s']} "
        f"(bare gRPC, {result['unary_calls_per_setup']} round trips each: "
        f"{result['baseline_setups_per_s']})",
        f"  {'CPU ms / set-up (no media)':<32} {cpu}",
        f"  {'CPU ms / call with media':<32} {media_cpu}",
        f"  {'load average':<32} {' '.join(str(x) for x in result['load_average'])}",
    ]
    for key, target in result["targets"].items():
        verdict = "met" if target["met"] else "MISSED"
        lines.append(f"  target {key} < {target['target']:g}: {verdict} ({result[key]})")
    for name, summary in result.get("profile", {}).items():
        lines.append(f"  py-spy {name}: {summary['samples']} busy samples; top self time:")
        lines += [f"    {pct:5.1f}%  {frame}" for frame, pct in summary["self"][:8]]
        lines.append("   procall frames on the stack (inclusive):")
        lines += [f"    {pct:5.1f}%  {frame}" for frame, pct in summary["inclusive"][:10]]
    return "\n".join(lines)
