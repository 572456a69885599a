"""Delegations, pick-up groups and LDAP home-server assignments in SQL.

These tables live in the SQL database of every Directory: with the SQL backend
it is the user database itself, with Active Directory / LDAP it is the Directory's
side database (``[database] users_url``), so delegations, pick-up groups and
home-server assignments made through procall work with AD too.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, delete, insert, or_, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from procall.directory.models import (
    Delegation,
    DelegationScope,
    HomeServerAssignment,
    NewDelegation,
    NewPickupGroup,
    PickupGroup,
)
from procall.directory.validation import normalize_key
from procall.errors import AlreadyExists, NotFound
from procall.storage.sql import directory_queries as q
from procall.storage.sql.directory_users import chunks, unix_time, utcnow
from procall.storage.sql.engine import SqlDatabase
from procall.storage.sql.tables import (
    delegation_scopes,
    delegations,
    home_server_overrides,
    pickup_group_members,
    pickup_groups,
)

__all__ = ["SqlDelegationStore", "SqlHomeServerOverrides"]

_SCOPE_ORDER = {scope: index for index, scope in enumerate(DelegationScope)}


def _scopes(names: Sequence[str]) -> tuple[DelegationScope, ...]:
    known: list[DelegationScope] = []
    for name in names:
        try:
            known.append(DelegationScope(name))
        except ValueError:  # a scope of a newer release: not ours to answer
            continue
    return tuple(sorted(known, key=_SCOPE_ORDER.__getitem__))


class SqlDelegationStore:
    """``DelegationStore`` on a SQL database."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database

    # -- delegations ----------------------------------------------------------------------

    async def _delegations(
        self, conn: AsyncConnection, rows: Sequence[Row[Any]]
    ) -> list[Delegation]:
        scopes: dict[str, list[str]] = {}
        for part in chunks([row.id for row in rows]):
            statement = select(delegation_scopes).where(delegation_scopes.c.delegation_id.in_(part))
            for row in await conn.execute(statement):
                scopes.setdefault(row.delegation_id, []).append(row.scope)
        return [
            Delegation(
                delegation_id=row.id,
                principal_user_id=row.principal_user_id,
                delegate_user_id=row.delegate_user_id,
                scopes=_scopes(scopes.get(row.id, [])),
                create_time=unix_time(row.create_time),
            )
            for row in rows
        ]

    async def list_delegations(self, user_id: str) -> list[Delegation]:
        """Delegations where ``user_id`` is principal or delegate (all when "")."""
        statement = select(delegations).order_by(delegations.c.create_time, delegations.c.id)
        if user_id:
            statement = statement.where(
                or_(
                    delegations.c.principal_user_id == user_id,
                    delegations.c.delegate_user_id == user_id,
                )
            )
        async with self._db.connect() as conn:
            rows = (await conn.execute(statement)).all()
            return await self._delegations(conn, rows)

    async def create_delegation(self, delegation: NewDelegation) -> Delegation:
        """Grant a delegation; one per principal and delegate."""
        delegation_id = str(uuid.uuid4())
        now = utcnow()
        try:
            async with self._db.begin() as conn:
                taken = select(delegations.c.id).where(
                    delegations.c.principal_user_id == delegation.principal_user_id,
                    delegations.c.delegate_user_id == delegation.delegate_user_id,
                )
                if (await conn.execute(taken)).first() is not None:
                    raise AlreadyExists(
                        "this delegate already has a delegation from this principal; "
                        "delete it to grant other scopes"
                    )
                await conn.execute(
                    insert(delegations).values(
                        id=delegation_id,
                        principal_user_id=delegation.principal_user_id,
                        delegate_user_id=delegation.delegate_user_id,
                        create_time=now,
                    )
                )
                await conn.execute(
                    insert(delegation_scopes),
                    [{"delegation_id": delegation_id, "scope": s.value} for s in delegation.scopes],
                )
        except sa_exc.IntegrityError:
            raise AlreadyExists("this delegation already exists") from None
        return Delegation(
            delegation_id,
            delegation.principal_user_id,
            delegation.delegate_user_id,
            _scopes([s.value for s in delegation.scopes]),
            unix_time(now),
        )

    async def delete_delegation(self, delegation_id: str) -> None:
        """Revoke a delegation."""
        async with self._db.begin() as conn:
            await conn.execute(
                delete(delegation_scopes).where(delegation_scopes.c.delegation_id == delegation_id)
            )
            result = await conn.execute(
                delete(delegations).where(delegations.c.id == delegation_id)
            )
            if not result.rowcount:
                raise NotFound("delegation not found", metadata={"delegation_id": delegation_id})

    async def delegated_scopes(
        self, actor_user_id: str, principal_user_id: str
    ) -> frozenset[DelegationScope]:
        """The scopes in which the actor may act for the principal."""
        async with self._db.connect() as conn:
            names = (await conn.execute(q.delegated_scopes(actor_user_id, principal_user_id))).all()
        return frozenset(_scopes([row.scope for row in names]))

    # -- pick-up groups -------------------------------------------------------------------

    async def _pickup_groups(
        self, conn: AsyncConnection, rows: Sequence[Row[Any]]
    ) -> list[PickupGroup]:
        members: dict[str, list[str]] = {}
        for part in chunks([row.id for row in rows]):
            statement = (
                select(pickup_group_members)
                .where(pickup_group_members.c.pickup_group_id.in_(part))
                .order_by(pickup_group_members.c.user_id)
            )
            for row in await conn.execute(statement):
                members.setdefault(row.pickup_group_id, []).append(row.user_id)
        return [PickupGroup(row.id, row.name, tuple(members.get(row.id, ()))) for row in rows]

    async def list_pickup_groups(self, user_id: str) -> list[PickupGroup]:
        """Pick-up groups ``user_id`` belongs to (all when "")."""
        statement = select(pickup_groups).order_by(pickup_groups.c.name_key)
        if user_id:
            mine = select(pickup_group_members.c.pickup_group_id).where(
                pickup_group_members.c.user_id == user_id
            )
            statement = statement.where(pickup_groups.c.id.in_(mine))
        async with self._db.connect() as conn:
            rows = (await conn.execute(statement)).all()
            return await self._pickup_groups(conn, rows)

    async def _check_name(self, conn: AsyncConnection, key: str, exclude_id: str | None) -> None:
        statement = select(pickup_groups.c.id).where(pickup_groups.c.name_key == key)
        if exclude_id is not None:
            statement = statement.where(pickup_groups.c.id != exclude_id)
        if (await conn.execute(statement)).first() is not None:
            raise AlreadyExists(
                "a pick-up group with this name already exists", metadata={"field": "name"}
            )

    async def _set_members(
        self, conn: AsyncConnection, group_id: str, members: Sequence[str]
    ) -> None:
        await conn.execute(
            delete(pickup_group_members).where(pickup_group_members.c.pickup_group_id == group_id)
        )
        if members:
            await conn.execute(
                insert(pickup_group_members),
                [{"pickup_group_id": group_id, "user_id": user_id} for user_id in members],
            )

    async def create_pickup_group(self, group: NewPickupGroup) -> PickupGroup:
        """Create a pick-up group."""
        group_id = str(uuid.uuid4())
        key = normalize_key(group.name)
        try:
            async with self._db.begin() as conn:
                await self._check_name(conn, key, None)
                await conn.execute(
                    insert(pickup_groups).values(
                        id=group_id, name=group.name, name_key=key, create_time=utcnow()
                    )
                )
                await self._set_members(conn, group_id, group.member_user_ids)
        except sa_exc.IntegrityError:
            raise AlreadyExists("a pick-up group with this name already exists") from None
        return PickupGroup(group_id, group.name, tuple(sorted(group.member_user_ids)))

    async def replace_pickup_group(
        self, pickup_group_id: str, group: NewPickupGroup
    ) -> PickupGroup:
        """Replace name and members."""
        key = normalize_key(group.name)
        try:
            async with self._db.begin() as conn:
                result = await conn.execute(
                    update(pickup_groups)
                    .where(pickup_groups.c.id == pickup_group_id)
                    .values(name=group.name, name_key=key)
                )
                if not result.rowcount:
                    raise NotFound(
                        "pick-up group not found", metadata={"pickup_group_id": pickup_group_id}
                    )
                await self._check_name(conn, key, pickup_group_id)
                await self._set_members(conn, pickup_group_id, group.member_user_ids)
        except sa_exc.IntegrityError:
            raise AlreadyExists("a pick-up group with this name already exists") from None
        return PickupGroup(pickup_group_id, group.name, tuple(sorted(group.member_user_ids)))

    async def delete_pickup_group(self, pickup_group_id: str) -> None:
        """Delete a pick-up group."""
        async with self._db.begin() as conn:
            await conn.execute(
                delete(pickup_group_members).where(
                    pickup_group_members.c.pickup_group_id == pickup_group_id
                )
            )
            result = await conn.execute(
                delete(pickup_groups).where(pickup_groups.c.id == pickup_group_id)
            )
            if not result.rowcount:
                raise NotFound(
                    "pick-up group not found", metadata={"pickup_group_id": pickup_group_id}
                )

    async def share_pickup_group(self, user_a: str, user_b: str) -> bool:
        """Whether both users are members of one pick-up group."""
        async with self._db.connect() as conn:
            count = (await conn.execute(q.shared_pickup_groups(user_a, user_b))).scalar_one()
        return bool(count)


class SqlHomeServerOverrides:
    """Home servers assigned through procall to users that live in LDAP."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database

    async def home_servers_of(self, user_ids: Sequence[str]) -> dict[str, str]:
        """The assigned home server of each of ``user_ids`` that has one."""
        found: dict[str, str] = {}
        async with self._db.connect() as conn:
            for part in chunks(list(dict.fromkeys(user_ids))):
                statement = select(home_server_overrides).where(
                    home_server_overrides.c.user_id.in_(part)
                )
                found.update(
                    (row.user_id, row.home_server_id) for row in await conn.execute(statement)
                )
        return found

    async def set_home_servers(self, assignments: Sequence[HomeServerAssignment]) -> int:
        """Record the assignments ("" removes one, falling back to what AD says)."""
        now = utcnow()
        ids = [a.user_id for a in assignments]
        rows = [
            {"user_id": a.user_id, "home_server_id": a.home_server_id, "update_time": now}
            for a in assignments
            if a.home_server_id
        ]
        async with self._db.begin() as conn:
            for part in chunks(ids):
                await conn.execute(
                    delete(home_server_overrides).where(home_server_overrides.c.user_id.in_(part))
                )
            for start in range(0, len(rows), 500):
                await conn.execute(insert(home_server_overrides), rows[start : start + 500])
        return len(assignments)
