"""``procall bench overload``: what the servers do past their capacity, with load shedding
and without it.

The presence scenario (``presence.py``, ``loadgen.py``) offered above what the servers
can carry, twice in a row: once with shedding off (``[limits] overload_lag_ms`` and
``max_in_flight`` 0) and once as configured by default. The servers run on the first
core and the load generator on the second (``setup.pinned``), so that the servers' own
core is the limit, as on a production host, not the load generator sharing it: without
that the cores saturate in the generator before a server's loop builds a queue, and
nothing is shed. Without shedding every change is accepted and waits in the servers'
queues, so latency grows with the run; with it the servers refuse part of the changes
(RESOURCE_EXHAUSTED, reason OVERLOADED, with a RetryInfo) and deliver the rest with a
bounded delay.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from procall.bench.presence import PresencePlan, run_presence_bench

__all__ = ["format_result", "run_overload_bench"]

#: The two runs, in the order they are made.
RUNS = ("without_shedding", "with_shedding")


def run_overload_bench(plan: PresencePlan) -> dict[str, Any]:
    """Run ``plan`` (pinned, no baseline, no knee) without shedding, then with it.

    Raises:
        DataCenterError: A topology or the load generator failed, or the machine has
            fewer than two cores.
    """
    base = replace(plan, baseline=False, pinned=True, ramp_seconds=0.0)
    return {
        name: run_presence_bench(replace(base, shedding=name == "with_shedding")) for name in RUNS
    }


def _line(name: str, run: dict[str, Any]) -> list[str]:
    refused = run.get("failed_by_code", {})
    lags = ", ".join(
        f"{server} {v['loop_lag_p99_ms']} ms"
        for server, v in run.get("vitals", {}).items()
        if server.startswith("ucserver")
    )
    return [
        f"  {name.replace('_', ' '):<17} p50 {run['p50_ms']} ms, p99 {run['p99_ms']} ms, "
        f"{run['deliveries_per_s']} deliveries/s (delivered {run['delivered_fraction']})",
        f"    changes {run['changes']}, refused {run['failed_changes']}"
        + (" (" + ", ".join(f"{c} {n}" for c, n in refused.items()) + ")" if refused else "")
        + f", skipped (one in flight per client) {run['changes_skipped']}",
        f"    UCServer loop lag p99: {lags or 'not recorded'}",
    ]


def format_result(result: dict[str, Any]) -> str:
    """The figures of both runs, readably."""
    first = result[RUNS[0]]
    lines = [
        f"overload: {first['clients']} clients watching {first['watch']} each, offered "
        f"{first['offered_per_s']:g} deliveries/s for {first['seconds']:g} s; servers on "
        "core 0, load generator on core 1",
    ]
    for name in RUNS:
        lines += _line(name, result[name])
    return "\n".join(lines)
