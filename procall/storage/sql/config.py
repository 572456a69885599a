"""Configuration property values in SQL (the ``ConfigStore`` of ``procall.config``).

One row per property value that was ever written: ``(scope, server_id, name)`` is the key
(``server_id`` empty for GLOBAL values). A write is one compare-and-set statement: an
``INSERT`` for version 1 (the primary key refuses a second creator) or an ``UPDATE ...
WHERE version = :expected AND fencing <= :fencing`` (a stale version or a lower fencing
number matches no row), followed in the same transaction by a read of the row when
nothing matched, to say why. Nothing is queued: a database that does not answer raises
``Unavailable`` and the write is refused.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Column, Double, Table, Unicode, and_, insert, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from procall.config.model import PropertyKey, PropertyValue, Scope
from procall.errors import Aborted
from procall.storage.sql.engine import SqlDatabase
from procall.storage.sql.tables import ID_LENGTH, LongUnicodeText, metadata

__all__ = ["SqlConfigStore", "config_properties"]

#: Longest property name.
NAME_LENGTH = 128

config_properties = Table(
    "config_properties",
    metadata,
    # "global" or "local"
    Column("scope", Unicode(8), primary_key=True),
    # the server a local value applies to; "" for global values
    Column("server_id", Unicode(ID_LENGTH), primary_key=True),
    Column("name", Unicode(NAME_LENGTH), primary_key=True),
    Column("value", LongUnicodeText, nullable=False),
    # grows by one per write
    Column("version", BigInteger, nullable=False),
    # seconds since the epoch; exact as a double on every dialect
    Column("update_time", Double, nullable=False),
    Column("updated_by", Unicode(ID_LENGTH), nullable=False),
    # the highest lease fencing number the row was written under (0: none)
    Column("fencing", BigInteger, nullable=False),
)

_c = config_properties.c


def _value(row: Any) -> PropertyValue:
    return PropertyValue(
        key=PropertyKey(Scope(row.scope), row.server_id, row.name),
        value=row.value,
        version=int(row.version),
        update_time=float(row.update_time),
        updated_by=row.updated_by,
        fencing=int(row.fencing),
    )


def _where(key: PropertyKey) -> Any:
    return and_(_c.scope == key.scope.value, _c.server_id == key.server_id, _c.name == key.name)


def _stale(key: PropertyKey, current: int, expected: int) -> Aborted:
    return Aborted(
        f"{key.name} is at version {current}, not {expected}: it was changed meanwhile; "
        "read it again and retry",
        reason="STALE_VERSION",
        metadata={"current_version": str(current), "resource": key.resource},
    )


def _fenced(key: PropertyKey, stored: int, fencing: int) -> Aborted:
    return Aborted(
        f"{key.name} was written under a newer edit lease (fencing {stored} > {fencing}): "
        "your lease was taken over; acquire it again and retry",
        reason="STALE_VERSION",
        metadata={"fencing": str(stored), "resource": key.resource},
    )


class SqlConfigStore:
    """Property values in the configuration database."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database

    async def get(self, key: PropertyKey) -> PropertyValue | None:
        """The stored value of ``key``; None when it was never written."""
        async with self._db.connect() as connection:
            return await self._read(connection, key)

    async def values(self, scope: Scope, server_id: str) -> list[PropertyValue]:
        """Every stored value of ``scope`` (for LOCAL: of ``server_id``), by name."""
        query = (
            select(config_properties)
            .where(_c.scope == scope.value, _c.server_id == server_id)
            .order_by(_c.name)
        )
        async with self._db.connect() as connection:
            return [_value(row) for row in await connection.execute(query)]

    async def compare_and_set(
        self,
        key: PropertyKey,
        value: str,
        *,
        expected_version: int,
        updated_by: str,
        update_time: float,
        fencing: int | None,
    ) -> PropertyValue:
        """Write ``value`` as version ``expected_version + 1`` (see ``ConfigStore``)."""
        if expected_version == 0:
            return await self._create(key, value, updated_by, update_time, fencing)
        changes: dict[str, Any] = {
            "value": value,
            "version": _c.version + 1,
            "update_time": update_time,
            "updated_by": updated_by,
        }
        condition = and_(_where(key), _c.version == expected_version)
        if fencing is not None:
            changes["fencing"] = fencing
            condition = and_(condition, _c.fencing <= fencing)
        async with self._db.begin() as connection:
            result = await connection.execute(
                update(config_properties).where(condition).values(**changes)
            )
            current = await self._read(connection, key)
            if result.rowcount == 1 and current is not None:
                return current
        if current is None or current.version != expected_version:
            raise _stale(key, current.version if current else 0, expected_version)
        raise _fenced(key, current.fencing, fencing or 0)

    async def _create(
        self,
        key: PropertyKey,
        value: str,
        updated_by: str,
        update_time: float,
        fencing: int | None,
    ) -> PropertyValue:
        row = PropertyValue(key, value, 1, update_time, updated_by, fencing or 0)
        try:
            async with self._db.begin() as connection:
                await connection.execute(
                    insert(config_properties).values(
                        scope=key.scope.value,
                        server_id=key.server_id,
                        name=key.name,
                        value=value,
                        version=1,
                        update_time=update_time,
                        updated_by=updated_by,
                        fencing=row.fencing,
                    )
                )
            return row
        except sa_exc.IntegrityError:
            current = await self.get(key)
            raise _stale(key, current.version if current else 0, 0) from None

    @staticmethod
    async def _read(connection: AsyncConnection, key: PropertyKey) -> PropertyValue | None:
        result = await connection.execute(select(config_properties).where(_where(key)))
        row = result.first()
        return _value(row) if row is not None else None
