"""``procall bench media``: concurrent 2-party calls through one MediaServer pinned to one core.

Three relays are measured in the same run, one after the other, each in its own process
pinned to the same core, under the same load generator (:mod:`procall.bench.media_loadgen`,
its own process pinned to another core) stepping through the same numbers of calls:

- ``procall``: a real MediaServer (``procall serve media``, media on 127.0.0.1), legs made
  with ``MediaService.CreateLeg`` as a UCServer makes them;
- ``forwarding``: a bare aiortc relay forwarding encoded Opus through the decoder-queue tap,
  without procall's gRPC, registry, bridges or legs (:mod:`procall.bench.media_relay`);
- ``transcoding``: a bare aiortc ``MediaRelay`` relay (decode, then encode again).

A step passes when, over its measured window, at least ``min_delivered`` of the frames reached
the far ends (frames received / (received + frames missing from the RTP timestamp sequence),
both directions), the far ends received at least 97 % as many frames as were sent in the same
window (a silent far end fails), the sampled call heard the right tones, the relay used less
than ``max_cpu`` of its core and the load generator sent at least 98 % of its nominal rate.
A run stops after two failing steps in a row (one may be a burst of other work on a shared
machine). ``calls_per_core`` is the highest passing step — measured, not extrapolated, and a
lower bound when every step passed; ``*_extrapolated`` is one core divided by the relay's CPU
per call at that step. ``relay_wait`` / ``loadgen_wait`` say how long each process was
runnable but waiting for its core: high values mean other work shared the core and the step's
figures understate the relay.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from procall.launch.datacenter import DataCenterError
from procall.launch.process import dying_with_parent

__all__ = ["RELAYS", "format_result", "media_steps", "run_media_bench"]

#: The relays measured, in the order they run.
RELAYS = ("procall", "forwarding", "transcoding")
#: Seconds a relay process may take to start serving.
_START_TIMEOUT = 30.0
_SERVER_ID = "media-bench"


def media_steps(max_calls: int, step: int) -> list[int]:
    """The concurrent calls of each step: half a step first (the transcoding relay carries
    fewer than ten calls), then every multiple of ``step`` up to ``max_calls``."""
    if max_calls < 1 or step < 1:
        raise DataCenterError("--max-calls and --step must be at least 1")
    steps = {max_calls} if max_calls < step else set(range(step, max_calls + 1, step))
    if step >= 4 and step // 2 < min(steps):
        steps.add(step // 2)
    return sorted(steps)


def _cores() -> tuple[int | None, int | None, str]:
    """(relay core, load generator core, note)."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None, "no CPU pinning on this platform"
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return cores[0], cores[0], "one core only: relay and load generator share it"
    return cores[0], cores[1], ""


def _pin(pid: int, core: int | None) -> None:
    if core is not None:
        os.sched_setaffinity(pid, {core})


def _start_procall(
    tmp: Path, core: int | None, capacity: int
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    credential = secrets.token_hex(16)
    config = tmp / "media.toml"
    config.write_text(
        f'[auth]\nservice_credential = "{credential}"\n\n'
        f'[media]\nhost_addresses = ["127.0.0.1"]\ncapacity = {capacity}\n',
        "utf-8",
    )
    config.chmod(0o600)
    ready = tmp / "media-ready.json"
    log = open(tmp / "media.log", "ab")
    process = subprocess.Popen(
        dying_with_parent(
            [
                sys.executable,
                "-m",
                "procall",
                "serve",
                "media",
                "--config",
                str(config),
                "--port",
                "0",
                "--server-id",
                _SERVER_ID,
                "--ready-file",
                str(ready),
            ]
        ),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp,
    )
    log.close()
    _pin(process.pid, core)
    deadline = time.monotonic() + _START_TIMEOUT
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            tail = (tmp / "media.log").read_text("utf-8", errors="replace")[-500:]
            raise DataCenterError(f"the MediaServer did not start: {tail}")
        time.sleep(0.05)
    time.sleep(0.1)  # the ready file is written, maybe not flushed yet
    address = json.loads(ready.read_text("utf-8"))["address"]
    return process, {"address": address, "credential": credential, "server_id": _SERVER_ID}


def _start_relay(kind: str, core: int | None) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    process = subprocess.Popen(
        dying_with_parent([sys.executable, "-m", "procall.bench.media_relay", kind]),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    _pin(process.pid, core)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.strip():
        process.kill()
        raise DataCenterError(f"the {kind} relay did not start")
    return process, {"port": int(line)}


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _summary(steps: list[dict[str, Any]], min_delivered: float, max_cpu: float) -> dict[str, Any]:
    passing = [
        s
        for s in steps
        if s["delivered"] >= min_delivered
        and s["received_vs_sent"] >= 0.97
        and s["relay_cpu"] < max_cpu
        and s["offered"] >= 0.98
        and s["tone_ok"]
    ]
    best = max(passing, key=lambda s: s["calls"], default=None)
    if best is None:
        return {"calls_per_core": 0, "cpu_per_call": None, "calls_per_core_extrapolated": None}
    per_call = best["relay_cpu_per_call"]
    return {
        "calls_per_core": best["calls"],
        "cpu_per_call": per_call,
        "calls_per_core_extrapolated": round(1 / per_call, 1) if per_call > 0 else None,
        "all_steps_passed": len(passing) == len(steps),
    }


def _run_one(
    kind: str, tmp: Path, spec: dict[str, Any], cores: tuple[int | None, int | None], progress: bool
) -> dict[str, Any]:
    relay_core, loadgen_core = cores
    if kind == "procall":
        process, target = _start_procall(tmp, relay_core, capacity=max(spec["steps"]) + 10)
        target["target"] = "procall"
    else:
        process, target = _start_relay(kind, relay_core)
        target["target"] = "relay"
    try:
        spec_path = tmp / f"spec-{kind}.json"
        spec_path.write_text(
            json.dumps({**spec, **target, "pid": process.pid, "core": loadgen_core}), "utf-8"
        )
        done = subprocess.run(
            [sys.executable, "-m", "procall.bench.media_loadgen", str(spec_path)],
            stdout=subprocess.PIPE,
            stderr=None if progress else subprocess.PIPE,
            text=True,
        )
    finally:
        _stop(process)
    if done.returncode != 0:
        lines = (done.stderr or "").strip().splitlines() or ["see above"]
        raise DataCenterError(f"the load generator failed on the {kind} relay: {lines[-1]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_media_bench(
    *,
    max_calls: int = 80,
    step: int = 10,
    seconds: float = 5.0,
    settle: float = 1.0,
    min_delivered: float = 0.99,
    max_cpu: float = 0.98,
    relays: tuple[str, ...] = RELAYS,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the benchmark once over ``relays``; returns the figures (one JSON-ready dict).

    Raises:
        DataCenterError: A relay or the load generator failed.
    """
    if seconds <= 0:
        raise DataCenterError("--seconds must be positive")
    steps = media_steps(max_calls, step)
    relay_core, loadgen_core, note = _cores()
    spec = {
        "steps": steps,
        "seconds": seconds,
        "settle": settle,
        "min_delivered": min_delivered,
        "max_cpu": max_cpu,
    }
    result: dict[str, Any] = {
        "steps": steps,
        "seconds_per_step": seconds,
        "min_delivered": min_delivered,
        "max_cpu": max_cpu,
        "relay_core": relay_core,
        "loadgen_core": loadgen_core,
        "cpu_count": os.cpu_count(),
        "note": note,
        "calls_per_core_method": (
            "measured: the highest step with delivered >= min_delivered, received/sent >= 97 %,"
            " the sampled tones right, relay CPU < max_cpu and the load generator sending >= 98 %"
            " of its nominal rate; *_extrapolated = 1 / relay CPU per call at that step (CPU per"
            " call falls as calls are added, so it flatters)"
        ),
        "relays": {},
    }
    with tempfile.TemporaryDirectory(prefix="procall-bench-media-") as tmp:
        for kind in relays:
            if progress:
                print(f"{time.strftime('%H:%M:%S')} bench media: {kind}", file=sys.stderr)
            run = _run_one(kind, Path(tmp), spec, (relay_core, loadgen_core), progress)
            run.update(_summary(run["steps"], min_delivered, max_cpu))
            result["relays"][kind] = run
    figures = result["relays"]
    for kind, key in (
        ("procall", ""),
        ("forwarding", "baseline_forwarding_"),
        ("transcoding", "baseline_transcoding_"),
    ):
        if kind in figures:
            result[f"{key}calls_per_core"] = figures[kind]["calls_per_core"]
            result[f"{key}calls_per_core_extrapolated"] = figures[kind][
                "calls_per_core_extrapolated"
            ]
            result[f"{key}cpu_per_call"] = figures[kind]["cpu_per_call"]
    if "procall" in figures and "transcoding" in figures:
        base = figures["transcoding"]["calls_per_core"]
        result["ratio_to_transcoding"] = (
            round(figures["procall"]["calls_per_core"] / base, 2) if base else None
        )
    return result


def format_result(result: dict[str, Any]) -> str:
    """A human table: one line per relay and step, then the summary."""
    lines = [
        f"{'relay':<12}{'calls':>6}{'delivered':>11}{'rx/tx':>8}{'offered':>9}{'relay cpu':>11}"
        f"{'cpu/call':>10}{'relay wait':>12}{'loadgen cpu':>13}{'lg wait':>9}"
        f"{'p50 ms':>8}{'p99 ms':>8}  tone"
    ]
    for kind, run in result["relays"].items():
        for s in run["steps"]:
            lines.append(
                f"{kind:<12}{s['calls']:>6}{s['delivered']:>11.2%}{s['received_vs_sent']:>8.1%}"
                f"{s['offered']:>9.1%}"
                f"{s['relay_cpu']:>11.1%}{s['relay_cpu_per_call']:>10.2%}{s['relay_wait']:>12.1%}"
                f"{s['loadgen_cpu']:>13.1%}{s['loadgen_wait']:>9.1%}"
                f"{s['interarrival_p50_ms']:>8.1f}{s['interarrival_p99_ms']:>8.1f}  "
                f"{'ok' if s['tone_ok'] else 'WRONG'}"
            )
        lines.append(f"{kind:<12}stopped: {run['stopped']}")
    lines.append("")
    for kind, run in result["relays"].items():
        per_call = run["cpu_per_call"]
        lines.append(
            f"{kind}: {run['calls_per_core']} calls per core measured"
            f"{' (every step passed: a lower bound)' if run.get('all_steps_passed') else ''}"
            + (
                f", {per_call:.2%} of a core per call, {run['calls_per_core_extrapolated']} "
                "calls per core extrapolated"
                if per_call
                else ""
            )
        )
    if result.get("ratio_to_transcoding") is not None:
        lines.append(f"procall / transcoding relay: {result['ratio_to_transcoding']}x")
    if result.get("note"):
        lines.append(f"note: {result['note']}")
    return "\n".join(lines)
