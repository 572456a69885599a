"""``procall admin users import FILE``: create users in bulk from a CSV file.

The first line names the columns (any order; ``username`` is required):
``username, display_name, mail, phone_number, department, home_server_id,
principal_name, password, admin, disabled``. Commas or semicolons separate fields
(the separator is detected), UTF-8 with or without BOM. Users that already exist
are skipped, so an interrupted import can simply be run again.
"""

from __future__ import annotations

import asyncio
import csv
import io
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import grpc

from procall.admin._connect import AdminError, DirectoryTarget, error_text
from procall.api.directory.v1 import directory_pb2 as pb
from procall.api.directory.v1 import directory_service_pb2 as svc
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc

__all__ = ["COLUMNS", "ImportRow", "ImportSummary", "import_users", "read_rows"]

COLUMNS = (
    "username",
    "display_name",
    "mail",
    "phone_number",
    "department",
    "home_server_id",
    "principal_name",
    "password",
    "admin",
    "disabled",
)
_TRUE = {"1", "true", "yes", "y", "x", "ja"}
_FALSE = {"", "0", "false", "no", "n", "nein"}
_RETRIES = 3


@dataclass(frozen=True)
class ImportRow:
    """One data line of the file (``line`` counts from 1, the header is line 1)."""

    line: int
    user: pb.User
    password: str


@dataclass
class ImportSummary:
    """What an import did."""

    created: int = 0
    skipped: int = 0
    failures: list[tuple[int, str]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """Rows that could not be created."""
        return len(self.failures)


def _flag(value: str, line: int, column: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"line {line}: {column} must be true or false, not {value!r}")


def read_rows(path: Path) -> tuple[list[ImportRow], list[tuple[int, str]]]:
    """The rows of a CSV file, and the lines that could not be read."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise AdminError(f"{path} does not exist") from None
    except UnicodeDecodeError:
        raise AdminError(f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise AdminError(f"cannot read {path}: {exc.strerror}") from None
    header = text.splitlines()[0] if text.strip() else ""
    if not header:
        raise AdminError(f"{path} is empty; the first line must name the columns")
    delimiter = ";" if header.count(";") > header.count(",") else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    names = [name.strip().lower() for name in reader.fieldnames or []]
    unknown = [name for name in names if name not in COLUMNS]
    if unknown:
        raise AdminError(f"{path}: unknown column {unknown[0]!r} (known: {', '.join(COLUMNS)})")
    if "username" not in names:
        raise AdminError(f"{path}: the first line must name a 'username' column")
    reader.fieldnames = names
    rows: list[ImportRow] = []
    problems: list[tuple[int, str]] = []
    for record in reader:
        line = reader.line_num
        values = {k: (v or "").strip() for k, v in record.items() if k is not None}
        if not any(values.values()):
            continue
        if None in record:
            problems.append((line, "more fields than columns"))
            continue
        try:
            admin = _flag(values.get("admin", ""), line, "admin")
            disabled = _flag(values.get("disabled", ""), line, "disabled")
        except ValueError as exc:
            problems.append((line, str(exc).split(": ", 1)[1]))
            continue
        user = pb.User(
            username=values.get("username", ""),
            display_name=values.get("display_name", "") or values.get("username", ""),
            mail=values.get("mail", ""),
            phone_number=values.get("phone_number", ""),
            department=values.get("department", ""),
            home_server_id=values.get("home_server_id", ""),
            principal_name=values.get("principal_name", ""),
            admin=admin,
            disabled=disabled,
        )
        rows.append(ImportRow(line, user, values.get("password", "")))
    return rows, problems


class _Progress:
    """A progress bar on stderr (a line every 10 % when stderr is not a terminal)."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.done = 0
        self._stream = stream
        self._tty = stream.isatty()
        self._last_step = -1
        self._started = time.monotonic()

    def advance(self, summary: ImportSummary) -> None:
        self.done += 1
        fraction = self.done / self.total if self.total else 1.0
        counts = f"created {summary.created}, skipped {summary.skipped}, failed {summary.failed}"
        if self._tty:
            bar = "#" * int(fraction * 30)
            self._stream.write(f"\r[{bar:<30}] {self.done}/{self.total}  {counts}")
            if self.done == self.total:
                self._stream.write("\n")
        else:
            step = int(fraction * 10)
            if step != self._last_step:
                self._last_step = step
                self._stream.write(f"import: {self.done}/{self.total} ({fraction:.0%})  {counts}\n")
        self._stream.flush()


async def _create(
    stub: directory_grpc.DirectoryServiceAsyncStub, row: ImportRow, timeout: float
) -> tuple[str, str]:
    """``("created" | "skipped" | "failed", reason)``; retries while UNAVAILABLE."""
    for attempt in range(1, _RETRIES + 1):
        try:
            await stub.CreateUser(
                svc.CreateUserRequest(user=row.user, password=row.password), timeout=timeout
            )
            return "created", ""
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.ALREADY_EXISTS:
                return "skipped", ""
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                if attempt < _RETRIES:
                    await asyncio.sleep(0.5 * attempt)
                    continue
                raise AdminError(
                    f"the Directory is unavailable ({error_text(exc)}); stopped at line "
                    f"{row.line}. Run the import again: existing users are skipped"
                ) from None
            return "failed", error_text(exc)
    raise AssertionError("unreachable")  # pragma: no cover


async def import_users(
    target: str | DirectoryTarget,
    rows: list[ImportRow],
    *,
    concurrency: int = 4,
    timeout: float = 30.0,
    stream: TextIO | None = None,
    on_row: Callable[[ImportRow, str], None] | None = None,
    metadata: Sequence[tuple[str, str]] = (),
) -> ImportSummary:
    """Create the users of ``rows`` through the Directory at ``target``: a
    ``DirectoryTarget`` (which proves its caller), or an address whose calls send
    ``metadata`` (an administrator's token)."""
    if isinstance(target, str):
        target = DirectoryTarget(target, metadata=tuple(metadata))
    summary = ImportSummary()
    progress = _Progress(len(rows), stream or sys.stderr)
    # rows naming a user (or mail) an earlier row of the file names go after all others,
    # one by one, so that the first row in the file wins whatever the concurrency
    seen: set[str] = set()
    first: list[ImportRow] = []
    repeats: list[ImportRow] = []
    for row in rows:
        keys = {f"u:{row.user.username.casefold()}"}
        if row.user.mail:
            keys.add(f"m:{row.user.mail.casefold()}")
        (repeats if keys & seen else first).append(row)
        seen |= keys
    queue: asyncio.Queue[ImportRow] = asyncio.Queue()
    for row in first:
        queue.put_nowait(row)
    async with target.channel() as channel:
        stub = directory_grpc.DirectoryServiceStub(channel)

        async def worker() -> None:
            while not queue.empty():
                row = queue.get_nowait()
                outcome, reason = await _create(stub, row, timeout)
                if outcome == "created":
                    summary.created += 1
                elif outcome == "skipped":
                    summary.skipped += 1
                else:
                    summary.failures.append((row.line, reason))
                if on_row is not None:
                    on_row(row, outcome)
                progress.advance(summary)

        workers = [asyncio.create_task(worker()) for _ in range(max(1, concurrency))]
        try:
            await asyncio.gather(*workers)
            for row in repeats:
                queue.put_nowait(row)
            await worker()
        finally:
            for task in workers:
                task.cancel()
    summary.failures.sort()
    return summary
