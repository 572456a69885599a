"""Users' call forwarding rules in SQL (the ``ForwardingStore`` of ``procall.calls.forwarding``).

One row per rule, numbered by ``position`` so that a user's rules come back in the order
they were set; a unique ``(user_id, condition)`` backs the domain's one-rule-per-condition
check. ``replace`` deletes and inserts in one transaction. Two concurrent replaces of the same
user's rules could both find nothing to delete and collide on the primary key: on
PostgreSQL a transaction-scoped advisory lock per user makes them wait for each other; on
SQLite the first write locks the database anyway; elsewhere the loser retries. Either
way the last writer wins, as if they had come one after the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Double,
    SmallInteger,
    Table,
    Unicode,
    UniqueConstraint,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy import exc as sa_exc

from procall.calls.forwarding import ForwardingCondition, ForwardingRule
from procall.errors import Aborted
from procall.storage.sql.engine import SqlDatabase
from procall.storage.sql.tables import ID_LENGTH, metadata

__all__ = ["SqlForwardingStore", "call_forwarding"]

# how often a replace that lost a race with another replace of the same user is retried
_ATTEMPTS = 5
# the first key of the PostgreSQL advisory locks of forwarding rules (any int4 constant;
# the second key is the user id's hash)
_PG_LOCK_SPACE = 0x66776400

call_forwarding = Table(
    "call_forwarding",
    metadata,
    Column("user_id", Unicode(ID_LENGTH), primary_key=True),
    # the rule's index in the list the user set
    Column("position", SmallInteger, primary_key=True, autoincrement=False),
    # procall.api.call.v1.ForwardingCondition values
    Column("condition", SmallInteger, nullable=False),
    Column("target_user_id", Unicode(ID_LENGTH), nullable=False),
    # seconds; exact as a double on every dialect
    Column("no_answer_timeout", Double, nullable=False),
    Column("enabled", Boolean(create_constraint=False), nullable=False),
    UniqueConstraint("user_id", "condition", name="uq_call_forwarding_user_id_condition"),
)

_f = call_forwarding.c


def _rule(row: Any) -> ForwardingRule:
    return ForwardingRule(
        condition=ForwardingCondition(int(row.condition)),
        target_user_id=row.target_user_id,
        no_answer_timeout=float(row.no_answer_timeout),
        enabled=bool(row.enabled),
    )


class SqlForwardingStore:
    """Forwarding rules in the central database (the chat & journal database)."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database

    async def rules_of(self, user_id: str) -> list[ForwardingRule]:
        """The user's rules, in the order they were set."""
        query = select(call_forwarding).where(_f.user_id == user_id).order_by(_f.position)
        async with self._db.connect() as connection:
            return [_rule(row) for row in await connection.execute(query)]

    async def replace(self, user_id: str, rules: Sequence[ForwardingRule]) -> None:
        """Replace all of the user's rules (an empty list removes them), atomically."""
        rows = [
            {
                "user_id": user_id,
                "position": position,
                "condition": int(rule.condition),
                "target_user_id": rule.target_user_id,
                "no_answer_timeout": float(rule.no_answer_timeout),
                "enabled": bool(rule.enabled),
            }
            for position, rule in enumerate(rules)
        ]
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                async with self._db.begin() as connection:
                    if connection.dialect.name == "postgresql":
                        await connection.execute(
                            select(
                                func.pg_advisory_xact_lock(_PG_LOCK_SPACE, func.hashtext(user_id))
                            )
                        )
                    await connection.execute(delete(call_forwarding).where(_f.user_id == user_id))
                    if rows:
                        await connection.execute(insert(call_forwarding), rows)
                return
            except sa_exc.IntegrityError:
                if attempt == _ATTEMPTS:
                    raise Aborted(
                        "the forwarding rules were changed concurrently; read them and retry",
                        metadata={"user_id": user_id},
                    ) from None
