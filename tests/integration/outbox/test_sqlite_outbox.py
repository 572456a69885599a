"""SqliteOutbox on real files: FIFO and positions, durability across reopen and SIGKILL,
the bounds (records, bytes, a disk that refuses writes), exact round trips, the lock."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from procall.chat.model import ChatMessage, ReadMarker
from procall.errors import Unavailable
from procall.journal.model import JournalEntry, JournalKind
from procall.outbox.ports import Record
from procall.storage.outbox import SqliteOutbox

ROOT = Path(__file__).resolve().parents[3]
BIG = 64 * 1024 * 1024


def msg(i: int, text: str = "", conversation: str = "conv-1", request: str = "") -> ChatMessage:
    return ChatMessage(
        conversation, i, "alice", text or f"message {i}", 1_700_000_000.5 + i, request or f"r-{i}"
    )


def message_ids(queued: list[tuple[int, Record]]) -> list[int]:
    ids = [record.message_id for _, record in queued if isinstance(record, ChatMessage)]
    assert len(ids) == len(queued)
    return ids


async def test_fifo_with_positions_that_are_never_reused(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    async with SqliteOutbox(path, 100, BIG) as outbox:
        assert outbox.depth == 0 and await outbox.peek(10) == []
        await outbox.append([msg(1), msg(2)])
        await outbox.append([ReadMarker("conv-1", "bob", 2, 5.0)])
        queued = await outbox.peek(10)
        assert [record for _, record in queued] == [
            msg(1),
            msg(2),
            ReadMarker("conv-1", "bob", 2, 5.0),
        ]
        positions = [position for position, _ in queued]
        assert positions == sorted(positions) and len(set(positions)) == 3
        assert [p for p, _ in await outbox.peek(2)] == positions[:2]

        await outbox.remove_through(positions[1])
        assert outbox.depth == 1
        assert [r for _, r in await outbox.peek(10)] == [ReadMarker("conv-1", "bob", 2, 5.0)]
        await outbox.remove_through(positions[-1] + 100)  # past the end: everything
        assert outbox.depth == 0
        await outbox.remove_through(positions[-1])  # nothing left: a no-op
    # emptied and reopened: positions still go on from where they were
    async with SqliteOutbox(path, 100, BIG) as outbox:
        await outbox.append([msg(3)])
        [(position, _)] = await outbox.peek(10)
        assert position > positions[-1]


async def test_concurrent_appends_keep_call_order(tmp_path: Path) -> None:
    async with SqliteOutbox(tmp_path / "outbox.sqlite", 1000, BIG) as outbox:
        await asyncio.gather(*(outbox.append([msg(i)]) for i in range(50)))
        assert [r for _, r in await outbox.peek(100)] == [msg(i) for i in range(50)]
        assert outbox.depth == 50


async def test_records_survive_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dirs" / "outbox.sqlite"  # parents are created
    records: list[Record] = [
        msg(1),
        ReadMarker("conv-1", "bob", 1, 2.0),
        JournalEntry("e-1", "bob", JournalKind.CALL_RECEIVED, 3.0, "alice", "call-1", 42_000),
    ]
    async with SqliteOutbox(path, 100, BIG) as outbox:
        await outbox.append(records)
    async with SqliteOutbox(path, 100, BIG) as outbox:
        assert outbox.depth == 3
        assert [r for _, r in await outbox.peek(10)] == records
        assert await outbox.find_message("conv-1", "alice", "r-1") == msg(1)


async def test_durability_settings(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    async with SqliteOutbox(path, 100, BIG) as outbox:
        live = outbox._conn  # the setting lives on the connection only; pin it
        assert live is not None
        query = live.execute
        synchronous = await outbox._run(lambda: query("PRAGMA synchronous").fetchone())
        assert synchronous == (2,)  # FULL: the WAL is synced at every commit
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA auto_vacuum").fetchone() == (2,)  # incremental
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT body FROM outbox_records"
            " WHERE conversation_id = ? AND sender_id = ? AND request_id = ?"
            " ORDER BY position LIMIT 1",
            (b"c", b"s", b"r"),
        ).fetchall()
    assert "outbox_records_message_key" in str(plan)


CHILD = """
import asyncio, sys
sys.path.insert(0, {root!r})
from procall.chat.model import ChatMessage
from procall.storage.outbox import SqliteOutbox

async def main():
    outbox = SqliteOutbox({path!r}, 1_000_000, 1 << 30)
    await outbox.open()
    i = 0
    while True:
        i += 1
        await outbox.append([ChatMessage("c", i, "u", "x" * 100, 1.0, f"r-{{i}}")])
        sys.stdout.write(f"{{i}}\\n")
        sys.stdout.flush()

asyncio.run(main())
"""


async def test_an_acknowledged_append_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    code = CHILD.format(root=str(ROOT), path=str(path))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    acknowledged = 0
    try:
        assert child.stdout is not None
        for line in child.stdout:
            acknowledged = int(line)
            if acknowledged >= 40:
                break
        # killed at an arbitrary point, most likely in the middle of the next append
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        # what the child acknowledged before it died, read or not
        for line in child.stdout.read().split():
            acknowledged = int(line)
    finally:
        child.kill()
        child.wait(10)
    assert acknowledged >= 40
    async with SqliteOutbox(path, 1_000_000, 1 << 30) as outbox:
        found = message_ids(await outbox.peek(10_000))
        assert outbox.depth == len(found)
    # everything acknowledged is there, in order, plus at most the one append in flight
    assert found == list(range(1, len(found) + 1))
    assert acknowledged <= len(found) <= acknowledged + 1


async def test_full_by_records_refuses_the_whole_batch(tmp_path: Path) -> None:
    async with SqliteOutbox(tmp_path / "outbox.sqlite", 3, BIG) as outbox:
        await outbox.append([msg(1), msg(2)])
        with pytest.raises(Unavailable) as raised:
            await outbox.append([msg(3), msg(4)])
        error = raised.value
        assert error.reason == "OUTBOX_FULL"
        assert "full" in error.message and "3 records" in error.message
        assert error.metadata["backend"] == "outbox"
        assert outbox.depth == 2
        await outbox.append([msg(3)])  # what fits, fits
        assert [r for _, r in await outbox.peek(10)] == [msg(1), msg(2), msg(3)]
        with pytest.raises(Unavailable):
            await outbox.append([msg(4)])
        [(first, _), *_] = await outbox.peek(1)
        await outbox.remove_through(first)
        await outbox.append([msg(4)])  # room again
        assert outbox.depth == 3


async def test_full_by_bytes_refuses_and_keeps_what_it_had(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    limit = 128 * 1024
    async with SqliteOutbox(path, 100_000, limit) as outbox:
        accepted = 0
        with pytest.raises(Unavailable) as raised:
            for i in range(1000):
                await outbox.append([msg(i, "y" * 3000)])
                accepted += 1
        assert raised.value.reason == "OUTBOX_FULL"
        assert f"{limit} bytes" in raised.value.message
        assert 10 < accepted < 45
        assert outbox.depth == accepted
        # a batch that does not fit is refused as a whole, even if part of it would
        with pytest.raises(Unavailable):
            await outbox.append([msg(5000, "z" * 10), msg(5001, "z" * 50_000)])
        assert outbox.depth == accepted
        assert message_ids(await outbox.peek(10_000)) == list(range(accepted))
        # drained, the same pages take new records
        [*_, (last, _)] = await outbox.peek(10_000)
        await outbox.remove_through(last)
        for i in range(accepted):
            await outbox.append([msg(i, "y" * 3000)])
    assert path.stat().st_size <= limit


DISK_CHILD = """
import asyncio, resource, signal, sys
sys.path.insert(0, {root!r})
from procall.chat.model import ChatMessage
from procall.errors import Unavailable
from procall.storage.outbox import SqliteOutbox

async def main():
    outbox = SqliteOutbox({path!r}, 1_000_000, 1 << 30)
    await outbox.open()
    # from here on the "disk" takes no more than 150 kB per file (EFBIG, like a full quota)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, resource.RLIM_INFINITY))
    accepted = 0
    try:
        for i in range(10_000):
            await outbox.append([ChatMessage("c", i, "u", "x" * 1000, 1.0, f"r-{{i}}")])
            accepted += 1
    except Unavailable as exc:
        print("refused", accepted, outbox.depth, exc.reason, exc.message, sep="|")
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    await outbox.append([ChatMessage("c", 99_999, "u", "after", 1.0, "r-after")])
    print("after", outbox.depth, sep="|")
    await outbox.close()

asyncio.run(main())
"""


async def test_a_disk_that_refuses_writes_fails_the_append_and_keeps_the_rest(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.sqlite"
    code = DISK_CHILD.format(root=str(ROOT), path=str(path))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    refused, after = done.stdout.strip().splitlines()
    _, accepted, depth, reason, message = refused.split("|")
    assert int(accepted) == int(depth) > 0
    assert reason == "BACKEND_UNAVAILABLE" and "cannot be written" in message
    assert "disk I/O error" not in message  # the SQLite text goes to the log only
    assert after == f"after|{int(accepted) + 1}"  # the outbox recovers with the disk
    async with SqliteOutbox(path, 1_000_000, 1 << 30) as outbox:
        ids = message_ids(await outbox.peek(100_000))
    assert ids == [*range(int(accepted)), 99_999]


async def test_tricky_text_round_trips_through_the_file(tmp_path: Path) -> None:
    texts = [
        "\x00\x01\x1f\x7f",
        "\ud800",
        "a\udfffb",
        "\ud83d\ude00",
        "\U0001f600",
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",
        "\u202e\u05e9\u05dc\u05d5\u05dd",
        "\ufeff\uffff\U0010ffff",
        "e\u0301",
        "'; DROP TABLE outbox_records; --",
    ]
    floats = [0.1, -0.0, 5e-324, sys.float_info.max, 1_700_000_000.123456789]
    records: list[Record] = []
    for i, text in enumerate(texts):
        records.append(ChatMessage(text, i, text, text, floats[i % len(floats)], text))
        records.append(ReadMarker(text, text, 2**62, floats[i % len(floats)]))
        records.append(
            JournalEntry(text, text, JournalKind.NOTE, 1.0, text, text, None, text, text)
        )
    path = tmp_path / "outbox.sqlite"
    async with SqliteOutbox(path, 1000, BIG) as outbox:
        await outbox.append(records)
    async with SqliteOutbox(path, 1000, BIG) as outbox:
        assert [r for _, r in await outbox.peek(1000)] == records
        for i, text in enumerate(texts):
            found = await outbox.find_message(text, text, text)
            assert found == records[3 * i], ascii(text)
        # a surrogate pair as two code points is not the astral character it would encode
        assert await outbox.find_message("\ud83d\ude00", "\ud83d\ude00", "\U0001f600") is None


async def test_find_message_by_idempotency_key(tmp_path: Path) -> None:
    async with SqliteOutbox(tmp_path / "outbox.sqlite", 100, BIG) as outbox:
        await outbox.append(
            [
                msg(1, request="same"),
                msg(2, conversation="conv-2", request="same"),
                msg(3, request="same"),  # a retried send queued twice: the first one counts
                msg(4, request=""),
                ReadMarker("conv-1", "alice", 1, 1.0),
            ]
        )
        assert await outbox.find_message("conv-1", "alice", "same") == msg(1, request="same")
        found = await outbox.find_message("conv-2", "alice", "same")
        assert found == msg(2, conversation="conv-2", request="same")
        assert await outbox.find_message("conv-1", "bob", "same") is None
        assert await outbox.find_message("conv-1", "alice", "") is None  # no key, no match
        [(first, _), *_] = await outbox.peek(1)
        await outbox.remove_through(first)
        assert await outbox.find_message("conv-1", "alice", "same") == msg(3, request="same")


async def test_one_file_one_process(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    async with SqliteOutbox(path, 10, BIG) as outbox:
        await outbox.append([msg(1)])
        second = SqliteOutbox(path, 10, BIG)
        with pytest.raises(Unavailable) as raised:
            await second.open()
        assert "in use by another process" in raised.value.message
    async with SqliteOutbox(path, 10, BIG) as outbox:  # free again once closed
        assert outbox.depth == 1


async def test_use_outside_open_is_an_error(tmp_path: Path) -> None:
    outbox = SqliteOutbox(tmp_path / "outbox.sqlite", 10, BIG)
    with pytest.raises(RuntimeError):
        await outbox.append([msg(1)])
    await outbox.close()  # closing what is not open is fine
    await outbox.open()
    with pytest.raises(RuntimeError):
        await outbox.open()
    await outbox.close()
    with pytest.raises(RuntimeError):
        await outbox.peek(1)
    with pytest.raises(ValueError):
        SqliteOutbox(tmp_path / "x.sqlite", 0, BIG)
    with pytest.raises(ValueError):
        SqliteOutbox("", 10, BIG)


async def test_outbox_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """Chat messages in the outbox are readable by the server's user only (0600, 0700)."""
    path = tmp_path / "new-dir" / "outbox.sqlite"
    previous = os.umask(0o000)
    try:
        async with SqliteOutbox(path, 10, BIG) as outbox:
            await outbox.append([msg(1)])
            files = sorted(p.name for p in path.parent.iterdir())
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
    finally:
        os.umask(previous)
    assert "outbox.sqlite-wal" in files  # the WAL holds the message until a checkpoint
    assert modes == dict.fromkeys(files, 0o600)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


async def test_an_outbox_from_before_private_files_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    async with SqliteOutbox(path, 10, BIG) as outbox:
        await outbox.append([msg(1)])
    path.chmod(0o644)
    async with SqliteOutbox(path, 10, BIG) as outbox:
        assert outbox.depth == 1
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
