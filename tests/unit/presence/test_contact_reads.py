"""Contact lists read together: reads asked for while one runs share the next read, and a
read asked for after a change sees it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from procall.errors import Unavailable
from procall.presence.contact_reads import ContactReads
from tests.unit.presence.fakes import MemoryContactStore


class _CountingStore(MemoryContactStore):
    def __init__(self, lists: dict[str, list[str]]) -> None:
        super().__init__(lists)
        self.reads: list[list[str]] = []
        self.fail = False

    async def contacts_of_many(self, user_ids: Sequence[str]) -> dict[str, list[str]]:
        self.reads.append(list(user_ids))
        await asyncio.sleep(0.01)
        if self.fail:
            raise Unavailable.backend("the database")
        return await super().contacts_of_many(user_ids)


async def test_reads_asked_for_during_a_read_share_the_next_one() -> None:
    store = _CountingStore({"alice": ["bob"], "bob": ["alice", "carol"]})
    reads = ContactReads(store)
    first = asyncio.create_task(reads.contacts_of("alice"))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(reads.contacts_of(u)) for u in ("bob", "carol", "bob")]
    assert await first == ["bob"]
    assert [await r for r in rest] == [["alice", "carol"], [], ["alice", "carol"]]
    assert store.reads == [["alice"], ["bob", "carol"]]


async def test_a_read_after_a_change_sees_it_and_errors_reach_every_waiter() -> None:
    store = _CountingStore({"alice": ["bob"]})
    reads = ContactReads(store)
    before = asyncio.create_task(reads.contacts_of("alice"))
    await asyncio.sleep(0)  # that read is running
    await store.add("alice", ["carol"])
    assert await reads.contacts_of("alice") == ["bob", "carol"]
    await before

    store.fail = True
    waiting = [asyncio.create_task(reads.contacts_of(u)) for u in ("alice", "bob")]
    for task in waiting:
        with pytest.raises(Unavailable):
            await task
    store.fail = False
    assert await reads.contacts_of("alice") == ["bob", "carol"]
