"""DurableWriter with a fake central database at the seam and a real SqliteOutbox in tmp_path:
group commit, outages, order, restarts, a full outbox and shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import pytest

from procall.chat.model import ChatMessage
from procall.errors import InvalidArgument, ProcallError, Unavailable
from procall.outbox import DurableWriter, Persisted, Record
from procall.storage.outbox import SqliteOutbox


class FakeCentral:
    """The chat & journal database: idempotent like the real one, switchable down and up."""

    def __init__(self) -> None:
        self.up = True
        #: every apply attempt, in order
        self.calls: list[list[Record]] = []
        #: distinct records in the order they were first committed
        self.stored: list[Record] = []
        #: while set and cleared, apply waits (a database that hangs)
        self.gate: asyncio.Event | None = None
        #: commit, then raise Unavailable (the connection broke before the answer)
        self.fail_after_commit = False
        #: records the database refuses (not an outage)
        self.refuse: Callable[[Record], bool] = lambda record: False

    async def apply(self, records: Sequence[Record]) -> None:
        batch = list(records)
        self.calls.append(batch)
        if self.gate is not None:
            await self.gate.wait()
        if not self.up:
            raise Unavailable.backend("chat database")
        if any(self.refuse(record) for record in batch):
            raise InvalidArgument("refused by the database")
        for record in batch:
            if record not in self.stored:
                self.stored.append(record)
        if self.fail_after_commit:
            raise Unavailable.backend("chat database")


def msg(i: int, text: str = "") -> ChatMessage:
    return ChatMessage("conv-1", i, "alice", text or f"message {i}", 1_700_000_000.0 + i, f"r-{i}")


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


MakeWriter = Callable[..., Awaitable[tuple[DurableWriter, SqliteOutbox]]]


@pytest.fixture
def central() -> FakeCentral:
    return FakeCentral()


@pytest.fixture
async def make_writer(tmp_path: Path, central: FakeCentral) -> AsyncIterator[MakeWriter]:
    """Open an outbox at ``tmp_path/outbox.sqlite`` and start a writer on it; both closed after."""
    opened: list[tuple[DurableWriter, SqliteOutbox]] = []

    async def make(
        *, max_records: int = 10_000, flush_batch: int = 10, retry: float = 0.02
    ) -> tuple[DurableWriter, SqliteOutbox]:
        outbox = SqliteOutbox(tmp_path / "outbox.sqlite", max_records, 64 * 1024 * 1024)
        await outbox.open()
        writer = DurableWriter(central, outbox, flush_batch=flush_batch, flush_retry_seconds=retry)
        writer.start()
        opened.append((writer, outbox))
        return writer, outbox

    yield make
    for writer, outbox in reversed(opened):
        await writer.stop()
        await outbox.close()


async def test_a_write_is_stored_directly(make_writer: MakeWriter, central: FakeCentral) -> None:
    writer, outbox = await make_writer()
    assert await writer.write([msg(1), msg(2)]) is Persisted.STORED
    assert central.stored == [msg(1), msg(2)]
    assert writer.depth == 0 and outbox.depth == 0
    assert writer.central_available
    assert await writer.write([]) is Persisted.STORED


async def test_concurrent_writes_share_transactions(
    make_writer: MakeWriter, central: FakeCentral
) -> None:
    writer, _ = await make_writer(flush_batch=10)
    central.gate = asyncio.Event()
    first = asyncio.create_task(writer.write([msg(0)]))
    await until(lambda: len(central.calls) == 1)
    # these pile up behind the first transaction and are taken together, 10 records at most
    rest = [asyncio.create_task(writer.write([msg(i)])) for i in range(1, 26)]
    await asyncio.sleep(0.01)
    central.gate.set()
    outcomes = await asyncio.gather(first, *rest)
    assert set(outcomes) == {Persisted.STORED}
    assert [len(call) for call in central.calls] == [1, 10, 10, 5]
    assert central.stored == [msg(i) for i in range(26)]


async def test_a_write_larger_than_a_batch_stays_whole(
    make_writer: MakeWriter, central: FakeCentral
) -> None:
    writer, _ = await make_writer(flush_batch=4)
    central.gate = asyncio.Event()
    tasks = [asyncio.create_task(writer.write([msg(0)]))]
    await until(lambda: len(central.calls) == 1)
    tasks.append(asyncio.create_task(writer.write([msg(i) for i in range(1, 8)])))
    tasks.append(asyncio.create_task(writer.write([msg(8)])))
    await asyncio.sleep(0.01)
    central.gate.set()
    assert set(await asyncio.gather(*tasks)) == {Persisted.STORED}
    assert [len(call) for call in central.calls] == [1, 7, 1]
    assert central.stored == [msg(i) for i in range(9)]


async def test_outage_queues_then_recovery_flushes_in_order(
    make_writer: MakeWriter, central: FakeCentral
) -> None:
    writer, outbox = await make_writer()
    for i in range(1, 4):
        assert await writer.write([msg(i)]) is Persisted.STORED
    central.up = False
    for i in range(4, 7):
        assert await writer.write([msg(i)]) is Persisted.QUEUED
    assert writer.depth == 3 and not writer.central_available
    assert await writer.find_queued_message("conv-1", "alice", "r-5") == msg(5)
    assert not await writer.drained(0.05)

    central.up = True
    await writer.write([msg(7)])  # QUEUED or STORED, depending on the flush; order is what counts
    assert await writer.drained(5)
    assert central.stored == [msg(i) for i in range(1, 8)]
    assert writer.depth == 0 and outbox.depth == 0 and writer.central_available
    assert await writer.find_queued_message("conv-1", "alice", "r-5") is None
    assert await writer.write([msg(8)]) is Persisted.STORED


async def test_writes_during_a_hanging_flush_are_acknowledged_and_stay_in_order(
    make_writer: MakeWriter, central: FakeCentral
) -> None:
    writer, _ = await make_writer(flush_batch=5)
    central.up = False
    for i in range(1, 21):
        assert await writer.write([msg(i)]) is Persisted.QUEUED
    # the database comes back but answers slowly: a flush is stuck in apply
    central.gate = asyncio.Event()
    central.up = True
    calls = len(central.calls)
    await until(lambda: len(central.calls) > calls)
    async with asyncio.timeout(2):  # acknowledged while the flush still hangs
        outcomes = await asyncio.gather(*(writer.write([msg(i)]) for i in range(21, 26)))
    assert set(outcomes) == {Persisted.QUEUED}
    central.gate.set()
    assert await writer.drained(5)
    assert central.stored == [msg(i) for i in range(1, 26)]
    assert max(len(call) for call in central.calls) <= 5


async def test_order_is_kept_through_flapping_outages(
    make_writer: MakeWriter, central: FakeCentral
) -> None:
    writer, _ = await make_writer(flush_batch=7, retry=0.005)
    toggles = {20, 35, 50, 52, 90, 120}  # down, up, down, up, ...
    outcomes = []
    for i in range(1, 151):
        if i in toggles:
            central.up = not central.up
        outcomes.append(await writer.write([msg(i)]))
        if i % 10 == 0:
            await asyncio.sleep(0.01)  # let a flush run between writes now and then
    assert await writer.drained(5)
    assert central.stored == [msg(i) for i in range(1, 151)]
    assert Persisted.QUEUED in outcomes and Persisted.STORED in outcomes


async def test_a_restart_flushes_the_outbox_left_by_the_previous_run(
    make_writer: MakeWriter, central: FakeCentral
) -> None:
    writer, outbox = await make_writer()
    central.up = False
    for i in range(1, 6):
        assert await writer.write([msg(i)]) is Persisted.QUEUED
    await writer.stop()
    await outbox.close()

    central.up = True
    writer, outbox = await make_writer()
    assert outbox.depth == 5
    # written before the leftovers are flushed: it must go behind them
    assert await writer.write([msg(6)]) is Persisted.QUEUED
    assert await writer.drained(5)
    assert central.stored == [msg(i) for i in range(1, 7)]
    assert await writer.write([msg(7)]) is Persisted.STORED


async def test_a_full_outbox_refuses_and_loses_nothing_acknowledged(
    make_writer: MakeWriter, central: FakeCentral
) -> None:
    writer, _ = await make_writer(max_records=5)
    central.up = False
    results = await asyncio.gather(
        *(writer.write([msg(i)]) for i in range(1, 9)), return_exceptions=True
    )
    acknowledged = [
        msg(i) for i, r in zip(range(1, 9), results, strict=True) if r is Persisted.QUEUED
    ]
    refused = [r for r in results if isinstance(r, ProcallError)]
    assert len(acknowledged) == 5 and len(refused) == 3
    for error in refused:
        assert isinstance(error, Unavailable) and error.reason == "OUTBOX_FULL"
        assert "full" in error.message
    # a two-record write does not fit into what is left, so none of it is taken
    with pytest.raises(Unavailable) as raised:
        await writer.write([msg(100), msg(101)])
    assert raised.value.reason == "OUTBOX_FULL"
    assert writer.depth == 5

    central.up = True
    assert await writer.drained(5)
    assert central.stored == acknowledged


async def test_a_batch_that_committed_before_the_error_is_stored_once(
    make_writer: MakeWriter, central: FakeCentral
) -> None:
    writer, _ = await make_writer()
    central.fail_after_commit = True
    assert await writer.write([msg(1)]) is Persisted.QUEUED
    central.fail_after_commit = False
    assert await writer.drained(5)
    assert central.stored == [msg(1)]
    assert sum(call.count(msg(1)) for call in central.calls) == 2


async def test_a_refused_record_fails_only_its_own_write(
    make_writer: MakeWriter, central: FakeCentral
) -> None:
    writer, _ = await make_writer()
    central.refuse = lambda record: isinstance(record, ChatMessage) and record.text == "bad"
    central.gate = asyncio.Event()
    first = asyncio.create_task(writer.write([msg(0)]))
    await until(lambda: len(central.calls) == 1)
    grouped = [
        asyncio.create_task(writer.write([record])) for record in (msg(1), msg(2, "bad"), msg(3))
    ]
    await asyncio.sleep(0.01)
    central.gate.set()
    results = await asyncio.gather(first, *grouped, return_exceptions=True)
    assert results[0] is Persisted.STORED and results[1] is Persisted.STORED
    assert isinstance(results[2], InvalidArgument)
    assert results[3] is Persisted.STORED
    assert central.stored == [msg(0), msg(1), msg(3)]
    assert writer.depth == 0


async def test_a_queued_record_the_database_refuses_is_kept_and_retried(
    make_writer: MakeWriter, central: FakeCentral
) -> None:
    writer, _ = await make_writer()
    central.up = False
    assert await writer.write([msg(1, "bad")]) is Persisted.QUEUED
    assert await writer.write([msg(2)]) is Persisted.QUEUED
    # it was acknowledged, so it is never dropped; it blocks the flush (and says so in the log)
    central.refuse = lambda record: isinstance(record, ChatMessage) and record.text == "bad"
    central.up = True
    assert not await writer.drained(0.2)
    assert writer.depth == 2 and central.stored == []
    central.refuse = lambda record: False  # fixed (e.g. by an upgrade of the database)
    assert await writer.drained(5)
    assert central.stored == [msg(1, "bad"), msg(2)]


async def test_a_caller_that_gives_up_does_not_disturb_the_others(
    make_writer: MakeWriter, central: FakeCentral
) -> None:
    writer, _ = await make_writer()
    central.gate = asyncio.Event()
    first = asyncio.create_task(writer.write([msg(1)]))
    await until(lambda: len(central.calls) == 1)
    second = asyncio.create_task(writer.write([msg(2)]))
    third = asyncio.create_task(writer.write([msg(3)]))
    await asyncio.sleep(0.01)
    second.cancel()
    central.gate.set()
    assert await first is Persisted.STORED and await third is Persisted.STORED
    assert second.cancelled()
    # the write itself still counts: given up on is not the same as refused
    assert central.stored == [msg(1), msg(2), msg(3)]


async def test_flushes_are_retried_at_the_configured_pace(
    make_writer: MakeWriter, central: FakeCentral
) -> None:
    writer, _ = await make_writer(retry=0.1)
    central.up = False
    assert await writer.write([msg(1)]) is Persisted.QUEUED
    calls = len(central.calls)
    await asyncio.sleep(0.5)
    retries = len(central.calls) - calls
    assert 2 <= retries <= 8  # about one per 0.1 s, and no busy loop
    central.up = True
    assert await writer.drained(5)


async def test_stop_answers_every_pending_write(
    make_writer: MakeWriter, central: FakeCentral
) -> None:
    writer, outbox = await make_writer()
    central.up = False
    tasks = [asyncio.create_task(writer.write([msg(i)])) for i in range(1, 21)]
    await asyncio.sleep(0)
    await writer.stop()
    assert all(task.done() for task in tasks)
    assert {task.result() for task in tasks} == {Persisted.QUEUED}
    assert outbox.depth == 20
    with pytest.raises(Unavailable) as raised:
        await writer.write([msg(21)])
    assert raised.value.reason == "SERVER_DRAINING"


async def test_stop_with_a_hanging_database_gives_up_after_its_timeout(
    make_writer: MakeWriter, central: FakeCentral
) -> None:
    writer, _ = await make_writer()
    central.gate = asyncio.Event()  # never opened: the database hangs
    tasks = [asyncio.create_task(writer.write([msg(i)])) for i in range(1, 11)]
    await until(lambda: len(central.calls) == 1)
    async with asyncio.timeout(2):
        await writer.stop(timeout=0.1)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, Unavailable) and r.reason == "SERVER_DRAINING" for r in results)


async def test_a_write_before_start_is_a_programming_error(
    tmp_path: Path, central: FakeCentral
) -> None:
    async with SqliteOutbox(tmp_path / "o.sqlite", 10, 1 << 20) as outbox:
        writer = DurableWriter(central, outbox)
        with pytest.raises(RuntimeError):
            await writer.write([msg(1)])
        with pytest.raises(ValueError):
            DurableWriter(central, outbox, flush_batch=0)
