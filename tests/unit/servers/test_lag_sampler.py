"""One loop-lag sampler per process feeds every listener (the shedder: tests/integration/limits)."""

from __future__ import annotations

import asyncio
import time

from procall.limits import LoadShedder, OverloadConfig
from procall.servers.runtime.overload import LagSampler


async def test_a_blocked_loop_reaches_every_listener_and_a_broken_one_stops_nobody() -> None:
    shedder = LoadShedder(OverloadConfig(lag_target=0.05, window=0.0))
    sampler = LagSampler(shedder, interval=0.01)
    seen: list[float] = []
    sampler.listen(seen.append)
    sampler.listen(lambda lag: 1 / 0)  # a broken listener stops nobody
    await sampler.start()
    try:
        await asyncio.sleep(0.05)
        time.sleep(0.2)  # blocking on purpose: the next sample is late by about that
        await asyncio.sleep(0.05)
        assert max(seen) >= 0.15
        assert len(seen) >= 3
    finally:
        await sampler.stop()
    count = len(seen)
    await asyncio.sleep(0.05)
    assert len(seen) == count  # stopped
