"""A server's vitals (loop lag, GC pauses): recorded only when asked, read per window."""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path

import pytest

from procall.servers.runtime import vitals


@pytest.fixture
def fresh_recorder():  # type: ignore[no-untyped-def]
    """No recorder left behind by an earlier test, and none left behind by this one."""
    vitals._running.clear()
    before = list(gc.callbacks)
    yield
    for recorder in vitals._running:
        if recorder.sampler is not None and recorder.sampler._task is not None:
            recorder.sampler._task.cancel()
    vitals._running.clear()
    gc.callbacks[:] = before


async def test_nothing_is_recorded_without_the_environment_variable(
    fresh_recorder: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(vitals.ENV_VAR, raising=False)
    callbacks = list(gc.callbacks)
    vitals.start_vitals("ucserver-1")
    assert gc.callbacks == callbacks
    assert not vitals._running


async def test_a_blocked_loop_and_a_collection_show_in_the_window(
    fresh_recorder: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(vitals.ENV_VAR, str(tmp_path))
    since = time.time()
    vitals.start_vitals("ucserver-1")
    await asyncio.sleep(0.1)
    time.sleep(0.3)  # the loop is blocked: the next sample is late by about that
    gc.collect()
    await asyncio.sleep(1.2)  # the second is over: its line is written
    found = vitals.read_vitals(tmp_path, since, time.time())
    assert set(found) == {"ucserver-1"}
    summary = found["ucserver-1"]
    assert summary.loop_lag_max_ms >= 200
    assert summary.gc_pauses >= 1 and summary.gc_max_ms > 0
    assert summary.gc_total_ms >= summary.gc_max_ms
    # a window before the process started holds nothing
    assert vitals.read_vitals(tmp_path, since - 100, since - 50)["ucserver-1"].gc_pauses == 0
