"""One behaviour suite for the Directory's ``DelegationStore`` port, run against the
in-memory fake of the Directory unit tests and against ``SqlDelegationStore`` on migrated
SQLite and PostgreSQL databases, so that the fake cannot drift from the store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from procall.directory.models import DelegationScope, NewDelegation, NewPickupGroup
from procall.directory.ports import DelegationStore
from procall.errors import AlreadyExists, NotFound
from procall.storage.sql.directory_delegations import SqlDelegationStore
from tests.integration.ports.conftest import SQL_BACKENDS, sql_database
from tests.unit.directory.fakes import MemoryDelegations

SET = DelegationScope.PRESENCE_SET
FORWARD = DelegationScope.CALLS_FORWARD
PICKUP = DelegationScope.CALLS_PICKUP


@pytest.fixture(params=["memory", *SQL_BACKENDS])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DelegationStore]:
    if request.param == "memory":
        yield MemoryDelegations()
        return
    database = await sql_database(request.param, request, tmp_path)
    try:
        yield SqlDelegationStore(database)
    finally:
        await database.dispose()


async def test_a_delegation_is_granted_listed_and_revoked(store: DelegationStore) -> None:
    first = await store.create_delegation(NewDelegation("alice", "carol", (PICKUP, SET)))
    assert (first.principal_user_id, first.delegate_user_id) == ("alice", "carol")
    assert first.scopes == (SET, PICKUP), "in the order of the scopes"
    assert first.delegation_id and first.create_time is not None
    second = await store.create_delegation(NewDelegation("bob", "alice", (FORWARD,)))
    assert await store.list_delegations("") == [first, second]
    assert await store.list_delegations("alice") == [first, second], "principal or delegate"
    assert await store.list_delegations("carol") == [first]
    assert await store.list_delegations("zoe") == []
    await store.delete_delegation(first.delegation_id)
    assert await store.list_delegations("") == [second]
    with pytest.raises(NotFound):
        await store.delete_delegation(first.delegation_id)


async def test_one_delegation_per_principal_and_delegate(store: DelegationStore) -> None:
    await store.create_delegation(NewDelegation("alice", "carol", (SET,)))
    with pytest.raises(AlreadyExists):
        await store.create_delegation(NewDelegation("alice", "carol", (FORWARD,)))
    await store.create_delegation(NewDelegation("carol", "alice", (FORWARD,)))  # the other way


async def test_scopes_are_those_the_actor_holds_for_that_principal(store: DelegationStore) -> None:
    await store.create_delegation(NewDelegation("alice", "carol", (SET, FORWARD)))
    await store.create_delegation(NewDelegation("bob", "carol", (PICKUP,)))
    assert await store.delegated_scopes("carol", "alice") == {SET, FORWARD}
    assert await store.delegated_scopes("carol", "bob") == {PICKUP}
    assert await store.delegated_scopes("alice", "carol") == frozenset(), "not the other way"


async def test_pickup_groups_are_created_listed_by_name_and_shared(
    store: DelegationStore,
) -> None:
    sales = await store.create_pickup_group(NewPickupGroup("sales", ("carol", "alice")))
    assert sales.member_user_ids == ("alice", "carol"), "members sorted"
    desk = await store.create_pickup_group(NewPickupGroup("Front desk", ("bob",)))
    assert await store.list_pickup_groups("") == [desk, sales], "by name, case-insensitive"
    assert await store.list_pickup_groups("alice") == [sales]
    assert await store.share_pickup_group("alice", "carol")
    assert not await store.share_pickup_group("alice", "bob")
    with pytest.raises(AlreadyExists):
        await store.create_pickup_group(NewPickupGroup("SALES", ()))


async def test_pickup_groups_are_replaced_and_deleted(store: DelegationStore) -> None:
    sales = await store.create_pickup_group(NewPickupGroup("sales", ("alice",)))
    desk = await store.create_pickup_group(NewPickupGroup("desk", ("bob",)))
    renamed = await store.replace_pickup_group(
        sales.pickup_group_id, NewPickupGroup("Sales EMEA", ("dave", "bob"))
    )
    assert renamed == type(sales)(sales.pickup_group_id, "Sales EMEA", ("bob", "dave"))
    assert await store.list_pickup_groups("bob") == [desk, renamed]
    assert await store.list_pickup_groups("alice") == []
    with pytest.raises(AlreadyExists):
        await store.replace_pickup_group(desk.pickup_group_id, NewPickupGroup("SALES emea", ()))
    with pytest.raises(NotFound):
        await store.replace_pickup_group("nope", NewPickupGroup("x", ()))
    await store.delete_pickup_group(desk.pickup_group_id)
    assert await store.list_pickup_groups("") == [renamed]
    with pytest.raises(NotFound):
        await store.delete_pickup_group(desk.pickup_group_id)
