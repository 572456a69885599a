"""Which driver errors count as "the database is unavailable" (UNAVAILABLE, retried later)."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

from procall.storage.sql.engine import is_unavailable_error


class _DriverError(Exception):
    """Shaped like asyncpg's errors: a ``sqlstate`` attribute."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


class Error(Exception):
    """Shaped like SQLAlchemy's asyncpg adapter error, which wraps the driver's."""


def _wrapped(sqlstate: str) -> sa_exc.DBAPIError:
    adapter = Error("wrapped")
    adapter.__cause__ = _DriverError(sqlstate)
    return sa_exc.DBAPIError("SELECT 1", None, adapter)


def test_a_server_starting_up_or_shutting_down_is_unavailable() -> None:
    for state in ("57P03", "57P01", "08006", "08001"):
        assert is_unavailable_error(_wrapped(state)), state


def test_a_bad_statement_is_not_unavailable() -> None:
    for state in ("42P01", "23505", "22021"):
        assert not is_unavailable_error(_wrapped(state)), state
