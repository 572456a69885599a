"""The buffered audit log: recording never waits or fails; a full queue drops the oldest."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from procall.audit import AuditEvent, AuditOutcome, BufferedAuditLog


class _Sink:
    """An audit sink that can be down, remembering what it stored."""

    def __init__(self) -> None:
        self.down = False
        self.stored: list[AuditEvent] = []
        self.batches = 0

    async def append(self, events: Sequence[AuditEvent]) -> None:
        if self.down:
            raise ConnectionError("the database is down")
        self.batches += 1
        self.stored.extend(events)


def _event(index: int) -> AuditEvent:
    return AuditEvent(
        float(index), "root", "admin.X", AuditOutcome.SUCCESS, detail={"i": str(index)}
    )


async def test_events_are_written_in_batches() -> None:
    sink = _Sink()
    log = BufferedAuditLog(sink, batch=10)
    log.start()
    for index in range(25):
        await log.record(_event(index))
    await log.stop()
    assert [e.time for e in sink.stored] == [float(i) for i in range(25)]
    assert sink.batches <= 3


async def test_a_full_queue_drops_the_oldest_and_recording_never_fails() -> None:
    sink = _Sink()
    sink.down = True
    log = BufferedAuditLog(sink, max_queued=5, retry_seconds=0.01)
    log.start()
    for index in range(8):
        await log.record(_event(index))  # never raises, never waits for the store
    await asyncio.sleep(0.05)
    assert log.queued == 5 and log.dropped == 3
    sink.down = False
    await log.stop()
    assert [e.time for e in sink.stored] == [3.0, 4.0, 5.0, 6.0, 7.0]


async def test_stop_gives_up_on_a_dead_store_in_bounded_time() -> None:
    sink = _Sink()
    sink.down = True
    log = BufferedAuditLog(sink)
    await log.record(_event(1))
    await asyncio.wait_for(log.stop(timeout=0.2), 2)  # logged, not raised
    assert log.queued == 1
