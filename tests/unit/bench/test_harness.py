"""The load generators' shared pieces: the knee search and the shared ack ticker."""

from __future__ import annotations

import asyncio

from procall.bench.harness import AckTicker, Step, find_knee


def _system(capacity: float) -> tuple[list[float], object]:
    """A system that holds every rate up to ``capacity``; records the rates it was offered."""
    offered: list[float] = []

    async def measure(rate: float) -> Step:
        offered.append(rate)
        return Step(rate, 10.0 if rate <= capacity else 500.0, rate <= capacity)

    return offered, measure


async def test_the_knee_doubles_then_bisects_between_the_last_good_and_first_bad_rate() -> None:
    offered, measure = _system(capacity=3000)
    knee = await find_knee(measure, 1000, ceiling=32_000, bisections=2)  # type: ignore[arg-type]
    # 1000, 2000 hold; 4000 fails; 3000 holds; 3500 fails
    assert offered == [1000, 2000, 4000, 3000, 3500]
    assert knee.rate == 3000
    assert [s.ok for s in knee.steps] == [True, True, False, True, False]


async def test_the_knee_stops_at_the_ceiling_when_everything_holds() -> None:
    offered, measure = _system(capacity=1e9)
    knee = await find_knee(measure, 1000, ceiling=4000)  # type: ignore[arg-type]
    assert offered == [1000, 2000, 4000]
    assert knee.rate == 4000


async def test_the_knee_goes_down_when_even_the_first_rate_fails() -> None:
    offered, measure = _system(capacity=300)
    knee = await find_knee(measure, 1000, ceiling=8000, bisections=1)  # type: ignore[arg-type]
    # 1000 and 500 fail, 250 holds, then one bisection: 375 fails
    assert offered == [1000, 500, 250, 375]
    assert knee.rate == 250


async def test_the_knee_is_zero_when_nothing_holds() -> None:
    _, measure = _system(capacity=0)
    knee = await find_knee(measure, 1000, ceiling=8000)  # type: ignore[arg-type]
    assert knee.rate == 0.0 and len(knee.steps) == 3


async def test_one_ticker_acks_every_stream_at_once_after_enough_events_or_on_its_tick() -> None:
    written: dict[int, list[int]] = {0: [], 1: []}

    def writer(stream: int):  # type: ignore[no-untyped-def]
        async def write(sequence: int) -> None:
            written[stream].append(sequence)

        return write

    ticker = AckTicker(every=4, interval=0.05)
    busy, quiet = ticker.add(writer(0)), ticker.add(writer(1))
    ticker.start()
    try:
        for sequence in range(1, 10):  # the busy stream acks every 4 events by itself
            await ticker.received(busy, sequence)
        await ticker.received(quiet, 1)
        assert written == {0: [4, 8], 1: []}
        for _ in range(100):  # the tick acks what is left, on both streams
            if written[1]:
                break
            await asyncio.sleep(0.01)
        assert written == {0: [4, 8, 9], 1: [1]}
        await asyncio.sleep(0.15)  # nothing new: nothing more is written
        assert written == {0: [4, 8, 9], 1: [1]}
    finally:
        await ticker.stop()
