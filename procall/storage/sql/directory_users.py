"""The SQL user database: users, credentials, home servers and groups.

``SqlUserStore`` implements the Directory's ``UserReader``, ``UserWriter``,
``CredentialStore`` and ``HomeServerStore`` ports on one ``SqlDatabase``
(SQLite, PostgreSQL or SQL Server). Listings are keyset-paged on the
lower-cased username (groups: name), so a page costs the same wherever it is.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Row, and_, bindparam, delete, insert, or_, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from procall.clock import UnixTime, from_datetime
from procall.directory.models import (
    Account,
    Group,
    HomeServerAssignment,
    NewGroup,
    NewUser,
    User,
    UserChanges,
    etag_of_time,
)
from procall.directory.ports import UserQuery
from procall.directory.validation import normalize_key, phone_digits
from procall.errors import Aborted, AlreadyExists, NotFound
from procall.paging import Cursor, bad_page_token
from procall.storage.sql import directory_queries as q
from procall.storage.sql.engine import SqlDatabase
from procall.storage.sql.tables import (
    delegation_scopes,
    delegations,
    group_members,
    groups,
    pickup_group_members,
    users,
)

__all__ = ["SqlUserStore", "chunks", "unix_time", "utcnow"]

_CHUNK = 500


def utcnow() -> dt.datetime:
    """Now, in UTC, to the microsecond."""
    return dt.datetime.now(dt.UTC)


def unix_time(moment: dt.datetime | None) -> UnixTime | None:
    """A ``UTCDateTime`` column's value as the domain's time type (``procall/clock.py``)."""
    return None if moment is None else from_datetime(moment)


def _stale_user(user_id: str) -> Aborted:
    return Aborted(
        f"user {user_id} changed since you read it: read it again and retry",
        reason="STALE_VERSION",
        metadata={"user_id": user_id},
    )


def chunks(items: Sequence[str], size: int = _CHUNK) -> Iterable[Sequence[str]]:
    """``items`` in slices small enough for an ``IN`` list on every dialect."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _key_cursor(cursor: Cursor | None) -> str | None:
    if cursor is None:
        return None
    if len(cursor) != 1 or not isinstance(cursor[0], str):
        raise bad_page_token()
    return cursor[0]


def _optional(value: str) -> str | None:
    return value or None


def _column_values(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Table columns (with their key columns) for the given user field values."""
    values: dict[str, Any] = {}
    for name, value in fields.items():
        if name == "username":
            values.update(username=value, username_key=normalize_key(value))
        elif name == "display_name":
            values.update(display_name=value, display_name_key=normalize_key(value))
        elif name == "mail":
            values.update(mail=_optional(value), mail_key=_optional(normalize_key(value)))
        elif name == "principal_name":
            values.update(
                principal_name=_optional(value),
                principal_name_key=_optional(normalize_key(value)),
            )
        elif name == "phone_number":
            values.update(phone_number=_optional(value), phone_key=_optional(phone_digits(value)))
        elif name == "department":
            values.update(
                department=_optional(value), department_key=_optional(normalize_key(value))
            )
        elif name == "home_server_id":
            values["home_server_id"] = _optional(value)
        elif name in ("admin", "disabled"):
            values[name] = bool(value)
    return values


def _user(row: Row[Any], group_ids: Sequence[str] = ()) -> User:
    return User(
        user_id=row.id,
        username=row.username,
        display_name=row.display_name,
        mail=row.mail or "",
        phone_number=row.phone_number or "",
        department=row.department or "",
        home_server_id=row.home_server_id or "",
        group_ids=tuple(group_ids),
        admin=bool(row.admin),
        disabled=bool(row.disabled),
        principal_name=row.principal_name or "",
        create_time=unix_time(row.create_time),
        update_time=unix_time(row.update_time),
    )


def _group(row: Row[Any]) -> Group:
    return Group(
        group_id=row.id,
        name=row.name,
        description=row.description or "",
        member_count=int(row.member_count or 0),
    )


class SqlUserStore:
    """Users, groups and credentials in the SQL user database."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database

    # -- reading --------------------------------------------------------------------------

    async def _with_groups(self, conn: AsyncConnection, rows: Sequence[Row[Any]]) -> list[User]:
        memberships: dict[str, list[str]] = {}
        ids = [row.id for row in rows]
        for part in chunks(ids):
            for user_id, group_id in await conn.execute(q.group_member_ids(part)):
                memberships.setdefault(user_id, []).append(group_id)
        return [_user(row, memberships.get(row.id, ())) for row in rows]

    async def get_user(self, user_id: str) -> User | None:
        """The user with this id, or ``None``."""
        async with self._db.connect() as conn:
            statement = select(*q.USER_COLUMNS).where(users.c.id == user_id)
            row = (await conn.execute(statement)).first()
            return (await self._with_groups(conn, [row]))[0] if row else None

    async def get_user_by_username(self, username: str) -> User | None:
        """The user with this login name (case-insensitive), or ``None``."""
        key = normalize_key(username)
        async with self._db.connect() as conn:
            statement = select(*q.USER_COLUMNS).where(users.c.username_key == key)
            row = (await conn.execute(statement)).first()
            return (await self._with_groups(conn, [row]))[0] if row else None

    async def get_users(self, user_ids: Sequence[str]) -> dict[str, User]:
        """The existing users among ``user_ids``."""
        found: dict[str, User] = {}
        async with self._db.connect() as conn:
            for part in chunks(list(dict.fromkeys(user_ids))):
                statement = select(*q.USER_COLUMNS).where(users.c.id.in_(part))
                rows = (await conn.execute(statement)).all()
                found.update((u.user_id, u) for u in await self._with_groups(conn, rows))
        return found

    async def list_users(
        self, query: UserQuery, cursor: Cursor | None, limit: int
    ) -> tuple[list[User], Cursor | None]:
        """A keyset page of users by username."""
        statement = q.users_page(
            after_key=_key_cursor(cursor),
            limit=limit + 1,
            home_server_id=query.home_server_id,
            group_id=query.group_id,
            text=query.text,
            field=query.field,
        )
        async with self._db.connect() as conn:
            rows = (await conn.execute(statement)).all()
            page = await self._with_groups(conn, rows[:limit])
        following: Cursor | None = (rows[limit - 1].username_key,) if len(rows) > limit else None
        return page, following

    async def get_group(self, group_id: str) -> Group | None:
        """The group with this id, or ``None``."""
        async with self._db.connect() as conn:
            row = (await conn.execute(q.select_group(group_id))).first()
        return _group(row) if row else None

    async def list_groups(
        self, cursor: Cursor | None, limit: int
    ) -> tuple[list[Group], Cursor | None]:
        """A keyset page of groups by name."""
        statement = q.groups_page(after_key=_key_cursor(cursor), limit=limit + 1)
        async with self._db.connect() as conn:
            rows = (await conn.execute(statement)).all()
        following: Cursor | None = (rows[limit - 1].name_key,) if len(rows) > limit else None
        return [_group(row) for row in rows[:limit]], following

    # -- credentials ----------------------------------------------------------------------

    async def find_credentials(self, login: str) -> Account | None:
        """The account whose username, else principal name, is ``login``."""
        key = normalize_key(login)
        async with self._db.connect() as conn:
            row = (await conn.execute(select(users).where(users.c.username_key == key))).first()
            if row is None:
                statement = select(users).where(users.c.principal_name_key == key)
                row = (await conn.execute(statement)).first()
            if row is None:
                return None
            user = (await self._with_groups(conn, [row]))[0]
        return Account(user, row.password_hash or "")

    async def replace_password_hash(self, user_id: str, old_hash: str, new_hash: str) -> bool:
        """Swap the hash if it is still ``old_hash``."""
        statement = (
            update(users)
            .where(users.c.id == user_id, users.c.password_hash == old_hash)
            .values(password_hash=new_hash)
        )
        async with self._db.begin() as conn:
            result = await conn.execute(statement)
        return bool(result.rowcount)

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        """Store a new password hash."""
        statement = (
            update(users)
            .where(users.c.id == user_id)
            .values(password_hash=password_hash, update_time=utcnow())
        )
        async with self._db.begin() as conn:
            if not (await conn.execute(statement)).rowcount:
                raise NotFound("user not found", metadata={"user_id": user_id})

    # -- writing users --------------------------------------------------------------------

    async def _check_unique(
        self, conn: AsyncConnection, values: Mapping[str, Any], exclude_id: str | None
    ) -> None:
        checks = [
            ("username", "username_key"),
            ("mail", "mail_key"),
            ("principal_name", "principal_name_key"),
        ]
        for field, key_column in checks:
            key = values.get(key_column)
            if not key:
                continue
            statement = select(users.c.id).where(users.c[key_column] == key)
            if exclude_id is not None:
                statement = statement.where(users.c.id != exclude_id)
            if (await conn.execute(statement)).first() is not None:
                raise AlreadyExists(
                    f"a user with this {field.replace('_', ' ')} already exists",
                    metadata={"field": field},
                )

    async def _set_groups(
        self, conn: AsyncConnection, user_id: str, group_ids: Sequence[str]
    ) -> None:
        await conn.execute(delete(group_members).where(group_members.c.user_id == user_id))
        if group_ids:
            await conn.execute(
                insert(group_members),
                [{"group_id": group_id, "user_id": user_id} for group_id in group_ids],
            )

    async def create_user(self, user: NewUser, password_hash: str) -> User:
        """Insert a user (and its group memberships)."""
        now = utcnow()
        user_id = str(uuid.uuid4())
        fields = {name: getattr(user, name) for name in NewUser.__dataclass_fields__}
        values = _column_values(fields)
        values.update(
            id=user_id, password_hash=password_hash or None, create_time=now, update_time=now
        )
        try:
            async with self._db.begin() as conn:
                await self._check_unique(conn, values, None)
                await conn.execute(insert(users).values(**values))
                await self._set_groups(conn, user_id, user.group_ids)
        except sa_exc.IntegrityError:
            raise AlreadyExists("a user with this username or mail already exists") from None
        created = await self.get_user(user_id)
        if created is None:  # pragma: no cover - deleted between two statements
            raise NotFound("user not found", metadata={"user_id": user_id})
        return created

    async def update_user(self, user_id: str, changes: UserChanges) -> User:
        """Apply the changed fields (and replace group memberships when given)."""
        values = _column_values(changes.values)
        try:
            async with self._db.begin() as conn:
                exists = select(users.c.id, users.c.update_time).where(users.c.id == user_id)
                row = (await conn.execute(exists)).first()
                if row is None:
                    raise NotFound("user not found", metadata={"user_id": user_id})
                await self._check_unique(conn, values, user_id)
                values["update_time"] = utcnow()
                condition = users.c.id == user_id
                if changes.expected_etag:
                    if etag_of_time(unix_time(row.update_time)) != changes.expected_etag:
                        raise _stale_user(user_id)
                    # the same row version still: a concurrent writer makes this match nothing
                    condition = and_(condition, users.c.update_time == row.update_time)
                done = await conn.execute(update(users).where(condition).values(**values))
                if changes.expected_etag and done.rowcount != 1:
                    raise _stale_user(user_id)
                if "group_ids" in changes.values:
                    group_ids = changes.values["group_ids"]
                    assert isinstance(group_ids, tuple)
                    await self._set_groups(conn, user_id, group_ids)
        except sa_exc.IntegrityError:
            raise AlreadyExists("a user with this username or mail already exists") from None
        updated = await self.get_user(user_id)
        if updated is None:  # pragma: no cover - deleted concurrently
            raise NotFound("user not found", metadata={"user_id": user_id})
        return updated

    async def delete_user(self, user_id: str) -> None:
        """Delete a user with memberships, delegations and pick-up memberships."""
        async with self._db.begin() as conn:
            await conn.execute(delete(group_members).where(group_members.c.user_id == user_id))
            await conn.execute(
                delete(pickup_group_members).where(pickup_group_members.c.user_id == user_id)
            )
            own = select(delegations.c.id).where(
                or_(
                    delegations.c.principal_user_id == user_id,
                    delegations.c.delegate_user_id == user_id,
                )
            )
            await conn.execute(
                delete(delegation_scopes).where(delegation_scopes.c.delegation_id.in_(own))
            )
            await conn.execute(
                delete(delegations).where(
                    or_(
                        delegations.c.principal_user_id == user_id,
                        delegations.c.delegate_user_id == user_id,
                    )
                )
            )
            if not (await conn.execute(delete(users).where(users.c.id == user_id))).rowcount:
                raise NotFound("user not found", metadata={"user_id": user_id})

    # -- home servers ---------------------------------------------------------------------

    async def set_home_servers(self, assignments: Sequence[HomeServerAssignment]) -> int:
        """Apply all assignments in one transaction."""
        statement = (
            update(users)
            .where(users.c.id == bindparam("b_user_id"))
            .values(home_server_id=bindparam("b_home"), update_time=bindparam("b_now"))
        )
        now = utcnow()
        rows = [
            {"b_user_id": a.user_id, "b_home": a.home_server_id or None, "b_now": now}
            for a in assignments
        ]
        async with self._db.begin() as conn:
            for start in range(0, len(rows), _CHUNK):
                await conn.execute(statement, rows[start : start + _CHUNK])
        return len(rows)

    # -- writing groups -------------------------------------------------------------------

    async def create_group(self, group: NewGroup) -> Group:
        """Insert a group."""
        group_id = str(uuid.uuid4())
        key = normalize_key(group.name)
        try:
            async with self._db.begin() as conn:
                taken = select(groups.c.id).where(groups.c.name_key == key)
                if (await conn.execute(taken)).first() is not None:
                    raise AlreadyExists(
                        "a group with this name already exists", metadata={"field": "name"}
                    )
                await conn.execute(
                    insert(groups).values(
                        id=group_id,
                        name=group.name,
                        name_key=key,
                        description=group.description or None,
                        create_time=utcnow(),
                    )
                )
        except sa_exc.IntegrityError:
            raise AlreadyExists("a group with this name already exists") from None
        return Group(group_id, group.name, group.description, 0)

    async def delete_group(self, group_id: str) -> None:
        """Delete a group and its memberships."""
        async with self._db.begin() as conn:
            await conn.execute(delete(group_members).where(group_members.c.group_id == group_id))
            if not (await conn.execute(delete(groups).where(groups.c.id == group_id))).rowcount:
                raise NotFound("group not found", metadata={"group_id": group_id})

    async def modify_group_members(
        self, group_id: str, add: Sequence[str], remove: Sequence[str]
    ) -> Group:
        """Add and remove members."""
        async with self._db.begin() as conn:
            if (
                await conn.execute(select(groups.c.id).where(groups.c.id == group_id))
            ).first() is None:
                raise NotFound("group not found", metadata={"group_id": group_id})
            present: set[str] = set()
            for part in chunks(list(add)):
                statement = select(users.c.id).where(users.c.id.in_(part))
                present.update(row.id for row in await conn.execute(statement))
            for user_id in add:
                if user_id not in present:
                    raise NotFound("user not found", metadata={"user_id": user_id})
            members: set[str] = set()
            for part in chunks(list(add)):
                statement = select(group_members.c.user_id).where(
                    group_members.c.group_id == group_id, group_members.c.user_id.in_(part)
                )
                members.update(row.user_id for row in await conn.execute(statement))
            new = [user_id for user_id in add if user_id not in members]
            if new:
                await conn.execute(
                    insert(group_members), [{"group_id": group_id, "user_id": u} for u in new]
                )
            for part in chunks(list(remove)):
                await conn.execute(
                    delete(group_members).where(
                        group_members.c.group_id == group_id, group_members.c.user_id.in_(part)
                    )
                )
            row = (await conn.execute(q.select_group(group_id))).first()
        assert row is not None
        return _group(row)
