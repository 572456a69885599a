"""Contact lists in SQL: whom each user watches (``ContactStore`` of presence)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Column, DateTime, Integer, Table, Unicode, delete, func, insert, select

from procall.storage.sql.engine import SqlDatabase
from procall.storage.sql.tables import ID_LENGTH, metadata

__all__ = ["MAX_CONTACTS", "SqlContactStore", "contacts"]

#: Contacts per user; beyond it AddContacts is refused.
MAX_CONTACTS = 2000
#: Owners read in one statement by ``contacts_of_many`` (well below SQLite's bound of
#: variables per statement).
_OWNERS_PER_READ = 500

contacts = Table(
    "contacts",
    metadata,
    Column("owner_user_id", Unicode(ID_LENGTH), primary_key=True),
    Column("contact_user_id", Unicode(ID_LENGTH), primary_key=True),
    # insertion order, so that lists come back in the order the user built them
    Column("position", Integer, nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


class SqlContactStore:
    """Contact lists in the central database."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database

    async def contacts_of(self, user_id: str) -> list[str]:
        """Users ``user_id`` watches, in the order added."""
        query = (
            select(contacts.c.contact_user_id)
            .where(contacts.c.owner_user_id == user_id)
            .order_by(contacts.c.position)
        )
        async with self._db.connect() as connection:
            return [row[0] for row in await connection.execute(query)]

    async def contacts_of_many(self, user_ids: Sequence[str]) -> dict[str, list[str]]:
        """The contact lists of several users, read in few statements (the returning
        clients of a restarted server open their sessions by the thousand)."""
        found: dict[str, list[str]] = {user_id: [] for user_id in user_ids}
        owners = list(found)
        async with self._db.connect() as connection:
            for start in range(0, len(owners), _OWNERS_PER_READ):
                query = (
                    select(contacts.c.owner_user_id, contacts.c.contact_user_id)
                    .where(contacts.c.owner_user_id.in_(owners[start : start + _OWNERS_PER_READ]))
                    .order_by(contacts.c.owner_user_id, contacts.c.position)
                )
                for owner, contact in await connection.execute(query):
                    found[owner].append(contact)
        return found

    async def add(self, user_id: str, contact_ids: Sequence[str]) -> None:
        """Add contacts after the existing ones; already present ones are left alone."""
        async with self._db.begin() as connection:
            rows = await connection.execute(
                select(contacts.c.contact_user_id, contacts.c.position).where(
                    contacts.c.owner_user_id == user_id
                )
            )
            existing = {row[0]: row[1] for row in rows}
            position = max(existing.values(), default=0)
            new: list[dict[str, object]] = []
            for contact_id in dict.fromkeys(contact_ids):
                if contact_id in existing or contact_id == user_id:
                    continue
                position += 1
                new.append(
                    {"owner_user_id": user_id, "contact_user_id": contact_id, "position": position}
                )
            if new:
                await connection.execute(insert(contacts), new)

    async def count(self, user_id: str) -> int:
        """How many contacts a user has."""
        query = select(func.count()).where(contacts.c.owner_user_id == user_id)
        async with self._db.connect() as connection:
            return int((await connection.execute(query)).scalar_one())

    async def remove(self, user_id: str, contact_ids: Sequence[str]) -> None:
        """Remove contacts (absent ones are ignored)."""
        if not contact_ids:
            return
        async with self._db.begin() as connection:
            await connection.execute(
                delete(contacts).where(
                    contacts.c.owner_user_id == user_id,
                    contacts.c.contact_user_id.in_(list(contact_ids)),
                )
            )
