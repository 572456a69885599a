"""The local durable outbox: a bounded FIFO of records in a SQLite file.

``SqliteOutbox`` implements ``procall.outbox.ports.Outbox`` with the standard library's
``sqlite3``. Every call runs on one dedicated worker thread, so the event loop never
waits on a disk sync, and the calls are serialised in the order they were made.

Durability: the file is in WAL mode with ``synchronous=FULL``, so ``append`` returns
only after the WAL (and, when the files were just created, their directory) has been
fsynced: an acknowledged append survives SIGKILL and power loss. The file is locked
exclusively while open, so two servers configured with the same path cannot both
flush it.

Bounds: ``append`` refuses a whole batch with ``Unavailable`` (reason OUTBOX_FULL) when
it would take the outbox past ``max_records`` records, or the file past ``max_bytes``
(enforced by SQLite itself through ``max_page_count``), or when the disk is full.
Nothing of a refused batch is kept.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from procall.chat.model import ChatMessage
from procall.errors import Unavailable
from procall.outbox.codec import (
    KIND_MESSAGE,
    decode_record,
    encode_record,
    encode_text,
    record_kind,
)
from procall.outbox.ports import Record
from procall.security.files import PRIVATE_DIR_MODE, private_file

__all__ = ["SqliteOutbox"]

_log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: ``PRAGMA user_version`` of the schema below; bump it with a migration when it changes.
_SCHEMA_VERSION = 1

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS outbox_records (
    -- AUTOINCREMENT: positions are never reused, even after the table was emptied
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    -- idempotency key of a chat message, NULL for other records and for messages
    -- without a request id. BLOBs, because a Python str with a lone surrogate
    -- cannot be bound as SQLite TEXT.
    conversation_id BLOB,
    sender_id BLOB,
    request_id BLOB,
    body BLOB NOT NULL
)""",
    """
CREATE INDEX IF NOT EXISTS outbox_records_message_key
    ON outbox_records (conversation_id, sender_id, request_id)
    WHERE request_id IS NOT NULL""",
)

_SQLITE_FULL = 13  # SQLITE_FULL: max_page_count reached, or the disk is full

#: One table row: kind, the message key (conversation, sender, request id) or NULLs, body.
_Row = tuple[str, bytes | None, bytes | None, bytes | None, bytes]

# WAL bytes kept after a checkpoint; a larger WAL is truncated back to this
_JOURNAL_SIZE_LIMIT = 8 * 1024 * 1024
# free bytes below which an SQLITE_FULL is blamed on the disk rather than on max_bytes
_DISK_FULL_SLACK = 4 * 1024 * 1024
_NOT_ACCEPTED = "the write was not accepted, try again later"
# how long open() waits for another process's lock before refusing the file
_OPEN_BUSY_SECONDS = 1.0


class SqliteOutbox:
    """A durable, bounded FIFO of records in the SQLite file ``path``.

    Use ``await outbox.open()`` / ``await outbox.close()`` or ``async with``.
    """

    def __init__(self, path: str | os.PathLike[str], max_records: int, max_bytes: int) -> None:
        if not os.fspath(path):
            raise ValueError("the outbox path is empty")  # Path("") would mean the cwd
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.path = Path(path)
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        # written on the worker thread only; reading an int from the loop thread is safe
        self._depth = 0

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        """Create (with parent directories) or open the file; load the depth."""
        if self._executor is not None:
            raise RuntimeError("outbox is already open")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        try:
            await self._run(self._open_sync, check_open=False)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def close(self) -> None:
        """Close the file (waiting for calls already made); a no-op when not open."""
        executor = self._executor
        if executor is None:
            return
        try:
            await self._run(self._close_sync, check_open=False)
        finally:
            self._executor = None
            # the worker is idle now (the close ran last), so this does not wait
            executor.shutdown(wait=False)

    async def __aenter__(self) -> SqliteOutbox:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- the Outbox port ----------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Records queued."""
        return self._depth

    async def append(self, records: Sequence[Record]) -> None:
        """Queue records, all or none; synced to disk before returning.

        ``Unavailable`` (reason OUTBOX_FULL) when the outbox or the disk is full,
        (reason BACKEND_UNAVAILABLE) when the file cannot be written.
        """
        if not records:
            return
        # encode on the loop thread: a record that cannot be encoded is the caller's error
        rows = [_row(record) for record in records]
        await self._run(lambda: self._append_sync(rows))

    async def peek(self, limit: int) -> list[tuple[int, Record]]:
        """The oldest queued records with their positions, oldest first."""
        if limit < 1:
            return []
        rows = await self._run(lambda: self._peek_sync(limit))
        return [(position, decode_record(body)) for position, body in rows]

    async def remove_through(self, position: int) -> None:
        """Drop the records up to and including ``position`` (they reached the database)."""
        await self._run(lambda: self._remove_sync(position))

    async def find_message(
        self, conversation_id: str, sender_id: str, request_id: str
    ) -> ChatMessage | None:
        """The oldest queued message with this idempotency key; None without a request id."""
        if not request_id:
            return None  # no key, no deduplication
        key = (encode_text(conversation_id), encode_text(sender_id), encode_text(request_id))
        body = await self._run(lambda: self._find_sync(key))
        if body is None:
            return None
        record = decode_record(body)
        return record if isinstance(record, ChatMessage) else None

    # -- worker-thread side -----------------------------------------------------------------

    async def _run(self, fn: Callable[[], _T], *, check_open: bool = True) -> _T:
        if self._executor is None or (check_open and self._conn is None):
            raise RuntimeError("outbox is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("outbox is not open")
        return self._conn

    def _open_sync(self) -> None:
        directory = self.path.parent
        try:
            # the outbox holds chat messages and journal entries: only the server's user may
            # read it, from the moment it exists (a folder made for it is private too)
            directory.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
            created = private_file(self.path)
            for sidecar in (_sidecar(self.path, "-wal"), _sidecar(self.path, "-shm")):
                if sidecar.exists():  # SQLite gives new ones the mode of the database file
                    private_file(sidecar)
        except OSError as exc:
            _log.error("cannot create the local outbox %s: %s", self.path, exc)
            raise Unavailable(
                f"the local outbox {self.path} cannot be created", metadata={"backend": "outbox"}
            ) from None
        try:
            # autocommit mode: transactions are opened explicitly below; the single worker
            # thread serialises every use, so the connection may move between threads safely
            conn = sqlite3.connect(
                self.path,
                timeout=_OPEN_BUSY_SECONDS,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise _open_error(self.path, exc) from None
        try:
            self._configure(conn, created)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise _open_error(self.path, exc) from None
            raise
        self._conn = conn
        if created:
            # the new file's directory entry must reach the disk too, else a power loss can
            # drop the whole file along with everything acknowledged into it
            _fsync_directory(directory)

    def _configure(self, conn: sqlite3.Connection, created: bool) -> None:
        # before the first access: with WAL this also means no shared-memory index is used,
        # and the lock (kept until close) stops a second process from using the same file
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        if created:
            # must precede the first table; lets a drained outbox give its pages back
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"journal_mode is {mode}, not wal")
        # FULL: the WAL is fsynced at every commit, so a returned append is on disk
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA journal_size_limit={_JOURNAL_SIZE_LIMIT}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                conn.execute(statement)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, _SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"unknown outbox schema version {version}")
            conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        # SQLite refuses to grow the file past this many pages (SQLITE_FULL), so the bound
        # covers table, index and free pages alike; it never shrinks below the current size
        conn.execute(f"PRAGMA max_page_count={max(self.max_bytes // page_size, 1)}")
        self._depth = int(conn.execute("SELECT count(*) FROM outbox_records").fetchone()[0])
        if self._depth:
            _log.info("outbox %s holds %d records from a previous run", self.path, self._depth)

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _append_sync(self, rows: list[_Row]) -> None:
        conn = self._connection()
        if self._depth + len(rows) > self.max_records:
            raise Unavailable(
                f"the local outbox is full ({self._depth} of {self.max_records} records); "
                + _NOT_ACCEPTED,
                reason="OUTBOX_FULL",
                metadata={"backend": "outbox", "limit": "records", "depth": str(self._depth)},
                retry_after=1.0,
            )
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT INTO outbox_records"
                    " (kind, conversation_id, sender_id, request_id, body) VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
                conn.execute("COMMIT")
            except BaseException:
                # SQLite may already have rolled back (SQLITE_FULL, I/O errors); harmless then
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._write_error(conn, exc, sum(len(row[-1]) for row in rows)) from None
        self._depth += len(rows)

    def _peek_sync(self, limit: int) -> list[tuple[int, bytes]]:
        cursor = self._connection().execute(
            "SELECT position, body FROM outbox_records ORDER BY position LIMIT ?", (limit,)
        )
        return [(int(position), bytes(body)) for position, body in cursor]

    def _remove_sync(self, position: int) -> None:
        conn = self._connection()
        try:
            cursor = conn.execute("DELETE FROM outbox_records WHERE position <= ?", (position,))
            removed = max(cursor.rowcount, 0)
            self._depth = max(self._depth - removed, 0)
        except sqlite3.Error as exc:
            # the records reached the database; leaving them queued only means a repeat apply
            raise _unavailable(f"the local outbox {self.path} cannot be written", exc) from None
        if removed and self._depth == 0:
            try:
                # the outage is over: hand the pages back to the disk and empty the WAL
                # (each step frees one page, so the statement must be run to its end)
                conn.execute("PRAGMA incremental_vacuum").fetchall()
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.Error as exc:
                _log.warning("outbox %s could not give back its space: %s", self.path, exc)

    def _find_sync(self, key: tuple[bytes, bytes, bytes]) -> bytes | None:
        cursor = self._connection().execute(
            "SELECT body FROM outbox_records"
            " WHERE conversation_id = ? AND sender_id = ? AND request_id = ?"
            " ORDER BY position LIMIT 1",
            key,
        )
        row = cursor.fetchone()
        return None if row is None else bytes(row[0])

    def _write_error(
        self, conn: sqlite3.Connection, exc: sqlite3.Error, batch_bytes: int
    ) -> Unavailable:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF == _SQLITE_FULL:
            # SQLITE_FULL means either our page limit or ENOSPC; the refused batch is rolled
            # back already, so ask the disk rather than the page count
            try:
                free = shutil.disk_usage(self.path.parent).free
            except OSError:
                free = 0
            if free > 2 * batch_bytes + _DISK_FULL_SLACK:
                what = f"the local outbox is full ({self.max_bytes} bytes)"
            else:
                what = f"the disk holding the local outbox {self.path} is full"
            _log.warning("outbox append refused: %s", what)
            return Unavailable(
                f"{what}; {_NOT_ACCEPTED}",
                reason="OUTBOX_FULL",
                metadata={"backend": "outbox", "limit": "bytes", "depth": str(self._depth)},
                retry_after=1.0,
            )
        what = f"the local outbox {self.path} cannot be written"
        return _unavailable(f"{what}; {_NOT_ACCEPTED}", exc)


def _row(record: Record) -> _Row:
    kind = record_kind(record)
    if kind == KIND_MESSAGE and isinstance(record, ChatMessage) and record.request_id:
        return (
            kind,
            encode_text(record.conversation_id),
            encode_text(record.sender_id),
            encode_text(record.request_id),
            encode_record(record),
        )
    return (kind, None, None, None, encode_record(record))


def _unavailable(message: str, exc: sqlite3.Error) -> Unavailable:
    # the SQLite text goes to the log only; callers get a plain sentence
    _log.error("%s: %s (%s)", message, exc, getattr(exc, "sqlite_errorname", "?"))
    return Unavailable(
        message,
        metadata={"backend": "outbox"},
        retry_after=1.0,
    )


def _open_error(path: Path, exc: sqlite3.Error) -> Unavailable:
    if getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY"):
        return _unavailable(f"the local outbox {path} is in use by another process", exc)
    return _unavailable(f"the local outbox {path} cannot be opened", exc)


def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not possible on every platform; SQLite syncs its own files regardless
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
