"""Client policies in SQL (the ``PolicyStore`` of ``procall.policies``), in the configuration
database: one row per user or group whose policy was set, written by compare-and-set on
its version (an ``INSERT`` for the first, an ``UPDATE ... WHERE version = :expected`` after)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Column, Double, Table, Unicode, and_, insert, or_, select, update
from sqlalchemy import exc as sa_exc

from procall.policies.model import ClientFeature, ClientPolicy, SubjectKind
from procall.storage.sql.engine import SqlDatabase
from procall.storage.sql.tables import ID_LENGTH, metadata

__all__ = ["SqlPolicyStore", "client_policies"]

client_policies = Table(
    "client_policies",
    metadata,
    # "user" or "group"
    Column("kind", Unicode(8), primary_key=True),
    Column("subject_id", Unicode(ID_LENGTH), primary_key=True),
    # the denied features' wire numbers, comma-separated ("" for none)
    Column("denied", Unicode(255), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("update_time", Double, nullable=False),
    Column("updated_by", Unicode(ID_LENGTH), nullable=False),
)

_c = client_policies.c


def _policy(row: Any) -> ClientPolicy:
    denied = frozenset(ClientFeature(int(v)) for v in row.denied.split(",") if v)
    return ClientPolicy(
        SubjectKind[row.kind.upper()],
        row.subject_id,
        denied,
        version=int(row.version),
        update_time=float(row.update_time),
        updated_by=row.updated_by,
    )


def _denied(policy: ClientPolicy) -> str:
    return ",".join(str(int(f)) for f in sorted(policy.denied))


class SqlPolicyStore:
    """Client policies in the configuration database."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database

    async def get_many(self, subjects: Sequence[tuple[SubjectKind, str]]) -> list[ClientPolicy]:
        """The stored policies of these subjects."""
        if not subjects:
            return []
        wanted = or_(*(and_(_c.kind == k.name.lower(), _c.subject_id == s) for k, s in subjects))
        async with self._db.connect() as connection:
            return [
                _policy(r) for r in await connection.execute(select(client_policies).where(wanted))
            ]

    async def compare_and_set(self, policy: ClientPolicy, expected_version: int) -> bool:
        """Store ``policy`` over ``expected_version`` (0: none stored yet)."""
        values = {
            "denied": _denied(policy),
            "version": expected_version + 1,
            "update_time": policy.update_time or 0.0,
            "updated_by": policy.updated_by,
        }
        kind = policy.kind.name.lower()
        if expected_version == 0:
            try:
                async with self._db.begin() as connection:
                    await connection.execute(
                        insert(client_policies).values(
                            kind=kind, subject_id=policy.subject_id, **values
                        )
                    )
            except sa_exc.IntegrityError:
                return False
            return True
        async with self._db.begin() as connection:
            result = await connection.execute(
                update(client_policies)
                .where(
                    _c.kind == kind,
                    _c.subject_id == policy.subject_id,
                    _c.version == expected_version,
                )
                .values(**values)
            )
        return bool(result.rowcount == 1)

    async def list_all(self) -> list[ClientPolicy]:
        """Every stored policy."""
        async with self._db.connect() as connection:
            return [_policy(r) for r in await connection.execute(select(client_policies))]
