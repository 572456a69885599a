"""Event sequencing, acks and resume: nothing lost, nothing duplicated, gaps detected."""

from __future__ import annotations

import asyncio
import gc

import pytest

from procall.session.events import EventLog, ReplayGap, SequencedEvent


async def test_sequence_numbers_start_at_one_without_gaps() -> None:
    log: EventLog[str] = EventLog()
    events = [await log.append(f"e{i}", at=0.0) for i in range(5)]
    assert [e.sequence for e in events] == [1, 2, 3, 4, 5]


async def test_resume_replays_exactly_the_unseen_events() -> None:
    log: EventLog[str] = EventLog()
    for i in range(1, 7):
        await log.append(f"e{i}", at=0.0)
    log.ack(2)
    assert [e.payload for e in log.after(4)] == ["e5", "e6"]
    assert [e.payload for e in log.after(2)] == ["e3", "e4", "e5", "e6"]
    assert log.after(6) == []


async def test_resume_from_before_acked_or_dropped_events_is_a_gap() -> None:
    log: EventLog[str] = EventLog(capacity=3)
    for i in range(1, 6):
        await log.append(f"e{i}", at=0.0)
    assert [e.payload for e in log.after(2)] == ["e3", "e4", "e5"]
    with pytest.raises(ReplayGap):
        log.after(1)
    with pytest.raises(ReplayGap):
        log.after(9)


async def test_acks_never_move_backwards() -> None:
    log: EventLog[str] = EventLog()
    for i in range(3):
        await log.append(f"e{i}", at=0.0)
    log.ack(2)
    log.ack(1)
    assert log.acked == 2
    log.ack(99)
    assert log.acked == 3 and len(log) == 0


async def test_follow_yields_backlog_then_live_events_until_closed() -> None:
    log: EventLog[str] = EventLog()
    await log.append("old", at=0.0)
    received: list[str] = []

    async def consume() -> None:
        async for event in log.follow(0):
            received.append(event.payload)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    await log.append("new1", at=0.0)
    await log.append("new2", at=0.0)
    await asyncio.sleep(0.01)
    await log.close()
    await asyncio.wait_for(task, 1)
    assert received == ["old", "new1", "new2"]


async def test_buffered_events_leave_no_objects_for_the_collector() -> None:
    """Events waiting for acks are what a middle-generation collection looks at: the
    buffer holds the shared payload and the time of each, no object per event."""

    class Payload:  # a message delivered to many sessions: one object for all of them
        pass

    shared = Payload()
    logs: list[EventLog[Payload]] = [EventLog() for _ in range(10)]
    gc.collect()
    before = len(gc.get_objects())
    for i in range(1000):
        for log in logs:
            log.append_nowait(shared, at=1700000000.0 + i)
    gc.collect()
    assert len(gc.get_objects()) - before < 100  # 10,000 buffered events
    replayed = logs[0].after(997)
    assert [(e.sequence, e.time, e.payload) for e in replayed] == [
        (998, 1700000997.0, shared),
        (999, 1700000998.0, shared),
        (1000, 1700000999.0, shared),
    ]


def test_a_restored_log_replays_only_what_ends_at_its_last_event() -> None:
    events = [SequencedEvent(n, float(n), f"e{n}") for n in (3, 4, 6, 7, 8)]
    log = EventLog.restored(10, events, last=8, acked=2)
    assert [e.payload for e in log.after(5)] == ["e6", "e7", "e8"]
    with pytest.raises(ReplayGap):  # 4 and 5 cannot both be replayed: 5 is missing
        log.after(4)
    assert log.resumable_from == 5
    log.append_nowait("e9", at=9.0)
    assert [(e.sequence, e.payload) for e in log.after(7)] == [(8, "e8"), (9, "e9")]


def test_a_restored_log_keeps_everything_after_the_ack() -> None:
    events = [SequencedEvent(n, float(n), f"e{n}") for n in range(1, 6)]
    log = EventLog.restored(10, events, last=5, acked=2)
    assert [e.sequence for e in log.snapshot()] == [3, 4, 5]
    assert log.acked == 2 and len(log) == 3
