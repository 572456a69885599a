"""Background tasks stop for good, even when a cancellation is lost."""

from __future__ import annotations

import asyncio
import logging

import pytest

from procall.tasks import stop_task


class _Reader:
    """A loop like a subscription reader whose timed read turns a cancel into a timeout."""

    def __init__(self, lost: int) -> None:
        self.lost = lost

    async def run(self) -> None:
        while True:
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                if self.lost <= 0:
                    raise
                self.lost -= 1  # a lost cancellation: the loop goes round again
                task = asyncio.current_task()
                assert task is not None
                task.uncancel()


async def test_a_task_that_lost_cancellations_is_cancelled_again_until_it_ends() -> None:
    reader = _Reader(lost=2)
    task = asyncio.create_task(reader.run())
    await asyncio.sleep(0.01)

    assert await stop_task(task, patience=5.0)

    assert task.cancelled()
    assert reader.lost == 0


async def test_a_task_that_does_not_end_is_reported_after_the_patience(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader = _Reader(lost=1_000_000)
    task = asyncio.create_task(reader.run(), name="stubborn")
    await asyncio.sleep(0.01)

    with caplog.at_level(logging.WARNING):
        assert not await stop_task(task, patience=0.6)

    assert not task.done()
    assert "stubborn did not stop" in caplog.text
    reader.lost = 0
    assert await stop_task(task)


async def test_a_failed_task_or_none_stops_without_raising() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)

    assert await stop_task(task)
    assert await stop_task(None)
