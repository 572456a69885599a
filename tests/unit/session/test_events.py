"""Event sequencing, acks and resume: nothing lost, nothing duplicated, gaps detected."""

from __future__ import annotations

import asyncio

import pytest

from procall.session.events import EventLog, ReplayGap


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
