"""Contact lists read together: the sessions opening at the same moment share one read.

A restarted UCServer's clients come back by the thousand, and each opening reads its user's
contact list. Reads asked for while one is running wait for the next, which fetches all of
them in one call to the store (``ContactStore.contacts_of_many``): a lone read costs what it
did, and a burst costs few statements instead of one per user. A read asked for after a
change was stored sees the change (it is never served by a read that began before it).
"""

from __future__ import annotations

import asyncio

from procall.presence.ports import ContactStore

__all__ = ["ContactReads"]


class ContactReads:
    """Reads contact lists, coalescing the reads asked for while one runs."""

    def __init__(self, store: ContactStore) -> None:
        self._store = store
        self._waiting: dict[str, list[asyncio.Future[list[str]]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def contacts_of(self, user_id: str) -> list[str]:
        """The user's contact list, in the order added."""
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(user_id, []).append(future)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read(), name="contact-reads")
        return list(await future)

    async def _read(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, {}
            try:
                found = await self._store.contacts_of_many(list(batch))
            except asyncio.CancelledError:
                for futures in batch.values():
                    for future in futures:
                        future.cancel()
                raise
            except Exception as error:  # each waiter gets the store's error
                for futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(error)
                continue
            for user_id, futures in batch.items():
                for future in futures:
                    if not future.done():
                        future.set_result(found.get(user_id, []))
