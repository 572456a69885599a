"""Sampling benchmark processes with py-spy (``--profile``), for the benches that offer it."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

from procall.launch.datacenter import DataCenterError

__all__ = ["py_spy", "start_profilers", "stop_profilers"]


def py_spy() -> str | None:
    """The py-spy executable beside this interpreter or on the PATH, if installed."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start_profilers(pids: dict[str, int], profile_dir: Path) -> list[subprocess.Popen[bytes]]:
    """py-spy on each process until stopped (collapsed stacks, ``<name>.txt`` each).

    Raises:
        DataCenterError: py-spy is not installed.
    """
    profiler = py_spy()
    if profiler is None:
        raise DataCenterError("py-spy is not installed (pip install py-spy)")
    return [
        subprocess.Popen(
            [
                profiler,
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--function",
                "--nonblocking",
                "--rate",
                "200",
                "--output",
                str(profile_dir / f"{name}.txt"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]


def stop_profilers(profilers: list[subprocess.Popen[bytes]]) -> None:
    """Stop the profilers; each writes what it has (SIGINT) or is killed after 15 s."""
    for process in profilers:
        process.send_signal(signal.SIGINT)
    for process in profilers:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
