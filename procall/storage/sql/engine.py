"""Async SQLAlchemy engines for procall's SQL databases, with bounded waits.

``SqlDatabase`` wraps an ``AsyncEngine`` so that every unit of work is bounded in
time and a database that does not answer becomes ``Unavailable.backend(name)``
(UNAVAILABLE naming the database) instead of a hang or a traceback:

* connects give up after ``connect_timeout`` (asyncpg ``timeout``, psycopg
  ``connect_timeout``, ODBC login timeout, SQLite busy timeout);
* a whole unit of work gives up after ``operation_timeout``;
* a pooled connection whose driver already saw it close (the server restarted or
  went away: asyncpg and psycopg notice the closed socket) is replaced when it is
  checked out, without a round trip; ``SqlDatabase.transaction`` also runs its work
  once more on a fresh connection when the pooled one turns out dead in use. So
  after a database restart the next request reconnects: recovery needs no restart
  of the server. Other drivers (ODBC) ping each connection before use instead
  (SQLAlchemy's ``pool_pre_ping``: a round trip, three with asyncpg, per checkout).

SQLite gets foreign keys and WAL; Microsoft SQL Server URLs (``mssql+aioodbc://``)
need the optional ``mssql`` extra and the unixODBC driver manager, which are only
imported when such a URL is configured.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext import asyncio as sa_asyncio
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from procall.errors import ProcallError, Unavailable

__all__ = [
    "SqlConfigError",
    "SqlDatabase",
    "create_engine",
    "describe_url",
    "is_unavailable_error",
]

_log = logging.getLogger(__name__)

T = TypeVar("T")

#: Drivers whose connections know, without a round trip, that their socket closed.
_SELF_CHECKING_DRIVERS = ("asyncpg", "psycopg", "psycopg_async")

# driver exceptions that mean "the server went away", whatever class SQLAlchemy wraps them in
_DISCONNECT_NAMES = (
    "AdminShutdown",
    "CannotConnectNow",
    "ConnectionDoesNotExist",
    "ConnectionFailure",
    "ConnectionRefused",
    "InterfaceError",
    "OperationalError",
    "ConnectionResetError",
)


class SqlConfigError(Exception):
    """The database URL cannot be used (bad URL, driver missing); one-line message."""


def describe_url(url: str | URL) -> str:
    """The URL without password and query, for messages and logs."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except sa_exc.ArgumentError:
        return "<invalid database URL>"
    return parsed.set(password=None, query={}).render_as_string(hide_password=True)


def _connect_args(url: URL, connect_timeout: float, operation_timeout: float) -> dict[str, Any]:
    driver = url.get_driver_name()
    if driver == "asyncpg":
        # half the budget per statement: a statement that times out is followed by a
        # rollback on the same dead connection, and both must fit in the budget
        return {"timeout": connect_timeout, "command_timeout": operation_timeout / 2}
    if driver.startswith("psycopg"):
        return {"connect_timeout": max(1, math.ceil(connect_timeout))}
    if driver in ("aiosqlite", "pysqlite"):
        return {"timeout": connect_timeout}
    if driver in ("aioodbc", "pyodbc"):
        return {"timeout": max(1, math.ceil(connect_timeout))}
    return {}


def _check_driver(url: URL) -> None:
    if url.get_backend_name() != "mssql":
        return
    try:
        # only here: pyodbc needs the unixODBC driver manager, absent on most machines
        importlib.import_module("pyodbc")
    except ImportError as exc:
        raise SqlConfigError(
            "Microsoft SQL Server URLs need `pip install procall[mssql]` and the unixODBC "
            f"driver manager with an ODBC driver for SQL Server ({exc.__class__.__name__})"
        ) from None


def create_engine(
    url: str,
    *,
    connect_timeout: float = 3.0,
    operation_timeout: float = 15.0,
    pool_size: int = 10,
) -> AsyncEngine:
    """An ``AsyncEngine`` for ``url`` with connect timeouts, a check of pooled connections
    (see the module doc) and SQLite pragmas."""
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError:
        raise SqlConfigError(f"invalid database URL {describe_url(url)!r}") from None
    _check_driver(parsed)
    try:
        is_sqlite = parsed.get_backend_name() == "sqlite"
        self_checking = parsed.get_driver_name() in _SELF_CHECKING_DRIVERS
        options: dict[str, Any] = {
            # a local file needs no check; asyncpg and psycopg are checked at checkout
            "pool_pre_ping": not (is_sqlite or self_checking),
            # statement parameters (password hashes, personal data) stay out of errors and logs
            "hide_parameters": True,
            "connect_args": _connect_args(parsed, connect_timeout, operation_timeout),
        }
        if not is_sqlite:
            options.update(
                pool_size=pool_size, max_overflow=pool_size, pool_timeout=connect_timeout
            )
        # looked up at each call: tracing (procall.telemetry) wraps it after this import
        engine = sa_asyncio.create_async_engine(parsed, **options)
    except (ImportError, sa_exc.ArgumentError, sa_exc.NoSuchModuleError) as exc:
        raise SqlConfigError(
            f"cannot use database URL {describe_url(parsed)}: {exc.__class__.__name__}"
        ) from None
    if is_sqlite:
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    if self_checking:
        event.listen(engine.sync_engine, "checkout", _refuse_closed)
    return engine


def _refuse_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Make the pool replace a connection its driver already knows is closed."""
    driver = getattr(dbapi_connection, "driver_connection", None)
    is_closed = getattr(driver, "is_closed", None)  # asyncpg
    closed = is_closed() if callable(is_closed) else getattr(driver, "closed", False)  # psycopg
    if closed or getattr(driver, "broken", False):
        raise sa_exc.DisconnectionError("the pooled connection was closed")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    if ":memory:" not in str(getattr(dbapi_connection, "database", "")):
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def is_unavailable_error(exc: BaseException) -> bool:
    """Whether ``exc`` means the database is unreachable (not a bad statement)."""
    if isinstance(exc, TimeoutError | ConnectionError | sa_exc.TimeoutError):
        return True
    if isinstance(exc, sa_exc.DisconnectionError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
            return True
        return _means_disconnect(exc.orig)
    return isinstance(exc, OSError)


def _means_disconnect(error: BaseException | None) -> bool:
    """Whether a driver error (or what it wraps) says the server is gone or not ready."""
    seen = 0
    while error is not None and seen < 5:  # adapters wrap the driver's own exception
        if any(name in type(error).__name__ for name in _DISCONNECT_NAMES):
            return True
        state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        # SQLSTATE class 08: connection exception; 57P01-57P03: shutdown, crash, starting up
        if isinstance(state, str) and (state.startswith("08") or state[:4] == "57P0"):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


class _DeadConnection(Unavailable):
    """A pooled connection died in use (the pool was invalidated; a retry reconnects)."""


class SqlDatabase:
    """One SQL database: an engine plus bounded, error-mapped units of work.

    ``name`` is what clients see in UNAVAILABLE messages (``"user database"``).
    """

    def __init__(
        self,
        url: str,
        *,
        name: str,
        connect_timeout: float = 3.0,
        operation_timeout: float = 15.0,
    ) -> None:
        self.name = name
        self.url = url
        self.description = describe_url(url)
        self.operation_timeout = operation_timeout
        self.engine = create_engine(
            url, connect_timeout=connect_timeout, operation_timeout=operation_timeout
        )
        self.dialect_name = self.engine.dialect.name

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads (no explicit transaction is committed)."""
        async with self._bounded():
            async with self.engine.connect() as connection:
                yield connection

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction, committed when the block ends without error."""
        async with self._bounded():
            async with self.engine.begin() as connection:
                yield connection

    async def transaction(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """``work`` in a transaction (as ``begin``), run once more on a fresh connection
        when the pooled one turns out dead in use (a database restart the driver had not
        noticed yet). ``work`` must be idempotent: a commit whose answer was lost is run
        again."""
        try:
            async with self.begin() as connection:
                return await work(connection)
        except _DeadConnection:
            _log.info("%s: a pooled connection was dead; trying once more", self.name)
        async with self.begin() as connection:
            return await work(connection)

    @asynccontextmanager
    async def _bounded(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self.operation_timeout):
                yield
        except ProcallError:
            raise
        except Exception as exc:
            if not is_unavailable_error(exc):
                raise
            cause = getattr(exc, "orig", None) or exc
            if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
                # it was connected: the pool has been emptied, a new connection may work
                raise _DeadConnection.backend(self.name) from None
            _log.warning(
                "%s at %s is unavailable (%s)",
                self.name,
                self.description,
                type(cause).__name__,
            )
            raise Unavailable.backend(self.name) from None

    async def ping(self) -> None:
        """Raise ``Unavailable`` unless the database answers ``SELECT 1``."""
        from sqlalchemy import text

        async with self.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
