"""A throwaway PostgreSQL server for benchmarks and drills (``procall bench chat``).

Finds the server binaries (``$PROCALL_PG_BINDIR``, the newest Debian
``/usr/lib/postgresql/*/bin``, or ``initdb`` on ``PATH``), runs ``initdb`` into a
private temporary directory and starts ``postgres`` on a free loopback port with
trust authentication for the user ``postgres``. ``initdb`` and ``postgres`` refuse
to run as root, so as root every server command runs as the ``postgres`` user
through ``runuser`` in a directory that user owns. ``close()`` stops the server and
deletes its files; an ``atexit`` hook stops it should the caller forget.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from procall.launch.redis import free_port

__all__ = [
    "PG_USER",
    "PostgresError",
    "PostgresServer",
    "as_pg_user",
    "find_postgres_bindir",
    "postgres_unavailable_reason",
    "run_pg_command",
]

PG_USER = "postgres"
_TOOLS = ("initdb", "pg_ctl", "postgres")


class PostgresError(RuntimeError):
    """PostgreSQL cannot be set up or started; the message names the problem."""


def find_postgres_bindir() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or ``None``."""
    candidates: list[Path] = []
    if env := os.environ.get("PROCALL_PG_BINDIR"):
        candidates.append(Path(env))
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = [p for p in debian.iterdir() if p.name.isdigit()]
        candidates.extend(p / "bin" for p in sorted(versions, key=lambda p: -int(p.name)))
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if all(os.access(bindir / tool, os.X_OK) for tool in _TOOLS):
            return bindir
    return None


def postgres_unavailable_reason() -> str | None:
    """Why a throwaway server cannot run here, or ``None`` if it can."""
    if find_postgres_bindir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            return f"running as root but there is no {PG_USER!r} user to run initdb as"
        if shutil.which("runuser") is None:
            return "running as root but 'runuser' is missing"
    return None


def as_pg_user(command: list[str]) -> list[str]:
    """``command`` run as the ``postgres`` user when we are root (the server refuses root)."""
    return ["runuser", "-u", PG_USER, "--", *command] if os.geteuid() == 0 else command


def run_pg_command(command: list[str], what: str) -> None:
    """Run a PostgreSQL tool; ``PostgresError`` with its output when it fails."""
    done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()
        raise PostgresError(f"{what} failed (exit {done.returncode}): {output}")


class PostgresServer:
    """One PostgreSQL server in a private temporary directory, on a loopback TCP port.

    Args:
        fsync: Whether commits reach the disk (``False`` is quicker, for tests only).
        options: Further server settings (``-c name=value``), e.g. ``max_connections``.
    """

    def __init__(self, *, fsync: bool = True, options: dict[str, str] | None = None) -> None:
        if reason := postgres_unavailable_reason():
            raise PostgresError(reason)
        bindir = find_postgres_bindir()
        assert bindir is not None
        self.bindir = bindir
        self.host = "127.0.0.1"
        self.port = 0
        self._settings = {"fsync": "on" if fsync else "off", **(options or {})}
        self._base: Path | None = None
        self._running = False

    @property
    def base_dir(self) -> Path:
        """Private directory: ``data/`` (PGDATA), ``postgres.log`` and the unix socket."""
        if self._base is None:
            raise PostgresError("the server has no files yet (call start())")
        return self._base

    @property
    def log_path(self) -> Path:
        """The server log."""
        return self.base_dir / "postgres.log"

    @property
    def pid(self) -> int:
        """The postmaster's process id (0 when it is not running)."""
        try:
            return int((self.base_dir / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError, PostgresError):
            return 0

    def start(self) -> Self:
        """``initdb`` (first time only), start the server and wait until it accepts connections."""
        if self._running:
            return self
        if self._base is None:
            self._base = Path(tempfile.mkdtemp(prefix="procall-bench-pg-", dir="/tmp"))
            if os.geteuid() == 0:
                entry = pwd.getpwnam(PG_USER)
                os.chown(self._base, entry.pw_uid, entry.pw_gid)
            run_pg_command(
                as_pg_user([
                    str(self.bindir / "initdb"), "-D", str(self._base / "data"), "-U", PG_USER,
                    "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
                    "--no-instructions",
                ]),
                "initdb",
            )  # fmt: skip
        settings = {"listen_addresses": self.host, **self._settings}
        for attempt in range(3):  # a free port can be taken before the server binds it
            self.port = free_port(self.host)
            options = f"-p {self.port} -k {self._base} " + " ".join(
                f"-c {name}={value}" for name, value in settings.items()
            )
            try:
                run_pg_command(
                    as_pg_user([
                        str(self.bindir / "pg_ctl"), "-D", str(self._base / "data"),
                        "-l", str(self.log_path), "-o", options, "-w", "-t", "60", "start",
                    ]),
                    "pg_ctl start",
                )  # fmt: skip
            except PostgresError as exc:
                if attempt < 2 and "already in use" in self._log_tail():
                    continue
                raise PostgresError(f"{exc}; last log lines: {self._log_tail()}") from None
            break
        self._running = True
        atexit.register(self._atexit_stop)
        return self

    def stop(self, mode: Literal["smart", "fast", "immediate"] = "fast") -> None:
        """Stop the server; ``mode="immediate"`` kills it without a checkpoint (a crash)."""
        if not self._running:
            return
        run_pg_command(
            as_pg_user([str(self.bindir / "pg_ctl"), "-D", str(self.base_dir / "data"),
                         "-m", mode, "-w", "-t", "30", "stop"]),
            "pg_ctl stop",
        )  # fmt: skip
        self._running = False
        atexit.unregister(self._atexit_stop)

    def close(self) -> None:
        """Stop the server and delete its files; idempotent."""
        try:
            self.stop()
        finally:
            if self._base is not None:
                shutil.rmtree(self._base, ignore_errors=True)
                self._base = None

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy async URL (asyncpg) of ``database``."""
        return f"postgresql+asyncpg://{PG_USER}@{self.host}:{self.port}/{database}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except (OSError, PostgresError):
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])

    def _atexit_stop(self) -> None:
        try:
            self.stop("immediate")
        except PostgresError:
            pass
