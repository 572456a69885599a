"""Event-loop lag and garbage-collector pauses of a server process, for the benchmarks.

Off by default, and then free: nothing is registered unless the environment variable
``PROCALL_VITALS_DIR`` names a directory. When it does, :func:`start_vitals` (called once
where a server starts) listens to the process's loop-lag sampler
(``procall.servers.runtime.overload.LagSampler``, made to sample every
``SAMPLE_SECONDS``: how late its timer fires is the time callbacks waited for the loop)
and records every collection's pause through ``gc.callbacks``. Once a second it appends
one JSON line to ``<dir>/<name>.jsonl``: the wall-clock second it covers, the lag samples of that
second (ms) and the collections that ended in it (generation, ms). Appending a small
line a second keeps the cost out of what a benchmark measures; the benchmark picks
the lines of its measurement window with :func:`read_vitals`.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from procall.servers.runtime.overload import LagSampler

__all__ = ["ENV_VAR", "SAMPLE_SECONDS", "VitalsSummary", "read_vitals", "start_vitals"]

#: The environment variable naming the directory of the vitals files.
ENV_VAR = "PROCALL_VITALS_DIR"
#: Seconds between two loop-lag samples.
SAMPLE_SECONDS = 0.02

#: The running recorder, kept so that its task is not collected (one per process).
_running: list[_Recorder] = []


@dataclass
class _Recorder:
    path: Path
    lags_ms: list[float] = field(default_factory=list)
    pauses: list[tuple[int, float]] = field(default_factory=list)
    gc_began: float = 0.0
    sampler: LagSampler | None = None
    #: The wall-clock second the samples in ``lags_ms`` belong to.
    second: int = 0

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.gc_began = time.perf_counter()
        elif self.gc_began:
            took = (time.perf_counter() - self.gc_began) * 1000
            self.pauses.append((int(info.get("generation", 0)), round(took, 3)))
            self.gc_began = 0.0

    def on_lag(self, lag: float) -> None:
        self.lags_ms.append(round(lag * 1000, 3))
        now = int(time.time())
        if now != self.second:
            if self.second:
                self.flush(self.second)
            self.second = now

    def flush(self, second: int) -> None:
        line = {"t": second, "lag_ms": self.lags_ms, "gc": self.pauses}
        self.lags_ms, self.pauses = [], []
        with contextlib.suppress(OSError), self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")


def start_vitals(name: str, sampler: LagSampler | None = None) -> None:
    """Record this process's loop lag and GC pauses as ``name`` when ``PROCALL_VITALS_DIR``
    is set (nothing otherwise); call it once from the running event loop. The lag comes
    from ``sampler`` (made to sample every ``SAMPLE_SECONDS``; a sampler of its own, started
    here, when None)."""
    directory = os.environ.get(ENV_VAR)
    if not directory or _running:
        return
    recorder = _Recorder(Path(directory) / f"{name}.jsonl")
    gc.callbacks.append(recorder.on_gc)
    if sampler is None:
        sampler = LagSampler()
    sampler.interval = min(sampler.interval, SAMPLE_SECONDS)
    sampler.listen(recorder.on_lag)
    sampler.begin()
    recorder.sampler = sampler
    _running.append(recorder)


@dataclass(frozen=True)
class VitalsSummary:
    """One process's loop lag and GC pauses over a window."""

    #: 99th percentile of the loop-lag samples (ms)
    loop_lag_p99_ms: float
    #: the largest loop-lag sample (ms)
    loop_lag_max_ms: float
    #: collections that ended in the window
    gc_pauses: int
    #: their pauses added up (ms)
    gc_total_ms: float
    #: the longest of them (ms)
    gc_max_ms: float

    def as_dict(self) -> dict[str, float | int]:
        """The figures by name, for JSON."""
        return {
            "loop_lag_p99_ms": self.loop_lag_p99_ms,
            "loop_lag_max_ms": self.loop_lag_max_ms,
            "gc_pauses": self.gc_pauses,
            "gc_total_ms": self.gc_total_ms,
            "gc_max_ms": self.gc_max_ms,
        }


def read_vitals(directory: Path, since: float, until: float) -> dict[str, VitalsSummary]:
    """The vitals of every process that wrote to ``directory``, over the whole seconds
    from ``since`` to ``until`` (wall-clock times), by process name."""
    found: dict[str, VitalsSummary] = {}
    for path in sorted(directory.glob("*.jsonl")):
        lags: list[float] = []
        pauses: list[float] = []
        for text in path.read_text("utf-8").splitlines():
            try:
                line = json.loads(text)
            except ValueError:  # a line being written
                continue
            if int(since) <= line["t"] <= int(until):
                lags += line["lag_ms"]
                pauses += [ms for _, ms in line["gc"]]
        lags.sort()
        p99 = lags[max(0, math.ceil(0.99 * len(lags)) - 1)] if lags else 0.0  # nearest rank
        found[path.stem] = VitalsSummary(
            loop_lag_p99_ms=round(p99, 2),
            loop_lag_max_ms=round(max(lags, default=0.0), 2),
            gc_pauses=len(pauses),
            gc_total_ms=round(sum(pauses), 2),
            gc_max_ms=round(max(pauses, default=0.0), 2),
        )
    return found
