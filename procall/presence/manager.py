"""Presence on one UCServer: setting, aggregating, watching and fanning out.

A change is written to the shared store (versioned), then pushed to the
watchers on this server and sent to exactly the other UCServers that have
watchers of the user. When the store (Redis) is unreachable, users homed here
keep their presence locally: changes still reach watchers on this server,
other users read as UNKNOWN, and the local state is written back (republished)
as soon as the store answers again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace

from procall.clock import Clock
from procall.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable
from procall.presence.contact_reads import ContactReads
from procall.presence.model import (
    Availability,
    Capabilities,
    Presence,
    PresenceChange,
    TelephonyState,
)
from procall.presence.policy import contacts_page
from procall.presence.ports import (
    ContactStore,
    DelegationChecker,
    PresenceNotifier,
    PresenceStore,
    UserDirectory,
)

__all__ = [
    "FULL_CHECK_EVERY",
    "KNOWN_USERS_CACHE",
    "MAX_NOTE_CHARS",
    "PresenceManager",
    "WatchIndex",
]

MAX_NOTE_CHARS = 256
#: Heartbeats between two full checks of this server's state in the store.
FULL_CHECK_EVERY = 60
#: User ids remembered as known to the Directory (reads of them skip the Directory).
KNOWN_USERS_CACHE = 100_000
_log = logging.getLogger(__name__)


class WatchIndex:
    """Which local users watch which users."""

    def __init__(self) -> None:
        self._watchers: dict[str, set[str]] = {}
        self._watching: dict[str, set[str]] = {}

    def watchers_of(self, user_id: str) -> set[str]:
        """Local users watching ``user_id``."""
        return set(self._watchers.get(user_id, ()))

    def watched(self) -> set[str]:
        """Every user watched from here."""
        return set(self._watchers)

    def set_contacts(self, watcher: str, contacts: Iterable[str]) -> tuple[set[str], set[str]]:
        """Replace what ``watcher`` watches; returns (newly watched, no longer watched) users.

        Costs the size of the two contact lists, not of everything watched here (a restarted
        server's thousands of returning users each set theirs)."""
        old = self._watching.pop(watcher, set())
        wanted = set(contacts)
        removed: set[str] = set()
        for contact in old - wanted:
            watchers = self._watchers[contact]
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[contact]
                removed.add(contact)
        added: set[str] = set()
        for contact in wanted - old:
            watchers = self._watchers.setdefault(contact, set())
            if not watchers:
                added.add(contact)
            watchers.add(watcher)
        if wanted:
            self._watching[watcher] = wanted
        return added, removed


class PresenceManager:
    """The presence rules of one UCServer."""

    def __init__(
        self,
        *,
        server_id: str,
        store: PresenceStore,
        contacts: ContactStore,
        delegations: DelegationChecker,
        notifier: PresenceNotifier,
        clock: Clock,
        interest_ttl: float,
        users: UserDirectory | None = None,
    ) -> None:
        """``users`` checks that the users named in reads and contact lists exist (without
        it every id is taken as it comes)."""
        self.server_id = server_id
        self._users = users
        self._known: set[str] = set()
        self._store = store
        self._contacts = contacts
        self._delegations = delegations
        self._notifier = notifier
        self._clock = clock
        self._interest_ttl = interest_ttl
        self.watches = WatchIndex()
        #: The contact lists of the users watching from here (read once per opening, kept
        #: while the user has sessions here; contacts change only on the user's home server).
        self._contact_lists: dict[str, list[str]] = {}
        self._reads = ContactReads(contacts)
        #: Presence of users homed here, kept for when the store is unreachable.
        self._local: dict[str, Presence] = {}
        self._dirty: set[str] = set()
        #: Capabilities of each live session of the users homed here.
        self._caps: dict[str, dict[str, Capabilities]] = {}
        #: Newest version seen per user, so that late, older updates are dropped.
        self._seen: dict[str, int] = {}
        self.degraded = False
        #: Changes waiting to be fanned out, newest per user (bursts coalesce here).
        self._outgoing: dict[str, tuple[Presence, list[str] | None]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._heartbeats = 0

    # -- changes ------------------------------------------------------------------------

    async def set_presence(self, actor: str, target: str, change: PresenceChange) -> Presence:
        """Set ``target``'s presence as ``actor`` (the user, or a delegate with presence.set)."""
        if change.availability is Availability.UNKNOWN:
            raise InvalidArgument.field("availability", "UNKNOWN cannot be set")
        if change.note is not None and len(change.note) > MAX_NOTE_CHARS:
            raise InvalidArgument.field("note", f"must be at most {MAX_NOTE_CHARS} characters")
        if actor != target and not await self._delegations.may_set_presence(actor, target):
            raise PermissionDenied(
                f"you may not set the presence of {target}: no presence.set delegation"
            )
        return await self._apply(target, change, "" if actor == target else actor)

    async def set_telephony(self, user_id: str, state: TelephonyState) -> Presence:
        """The call flow's change of a user's telephony state (set by the user's home server)."""
        return await self._apply(user_id, PresenceChange(telephony=state), "")

    async def session_started(self, user_id: str, session_id: str, caps: Capabilities) -> None:
        """A client of a user homed here connected: online, its capabilities count."""
        self._caps.setdefault(user_id, {})[session_id] = caps
        await self._apply(user_id, PresenceChange(session_capabilities=(session_id, caps)), "")

    async def session_ended(self, user_id: str, session_id: str) -> None:
        """A client ended: its capabilities no longer count; OFFLINE when it was the last."""
        sessions = self._caps.get(user_id, {})
        sessions.pop(session_id, None)
        if not sessions:
            self._caps.pop(user_id, None)
        await self._apply(user_id, PresenceChange(ended_session=session_id), "")

    def session_moved(self, user_id: str, session_id: str) -> None:
        """A client's session moved to the user's new home, which owns its presence from
        now on: drop it here without writing or announcing anything."""
        sessions = self._caps.get(user_id, {})
        sessions.pop(session_id, None)
        if not sessions:
            self._caps.pop(user_id, None)
            self._local.pop(user_id, None)

    async def _apply(self, user_id: str, change: PresenceChange, set_by: str) -> Presence:
        servers: list[str] | None = None
        try:
            # the write also says which peers watch the user: one round trip for both
            presence, servers = await self._store.update_routed(
                user_id, change, set_by, self.server_id, self._notifier.peer_servers()
            )
            self._mark_healthy()
        except Unavailable:
            self.degraded = True
            presence = self._apply_locally(user_id, change, set_by)
        self._local[user_id] = presence
        self._publish(presence, servers)
        return presence

    def _apply_locally(self, user_id: str, change: PresenceChange, set_by: str) -> Presence:
        current = self._local.get(user_id, Presence(user_id))
        availability = change.availability or current.availability
        sessions = self._caps.get(user_id, {})
        if change.session_capabilities is not None and availability in (
            Availability.OFFLINE,
            Availability.UNKNOWN,
        ):
            availability = Availability.AVAILABLE
        if change.ended_session is not None and not sessions:
            availability = Availability.OFFLINE
        caps = Capabilities()
        for session_caps in sessions.values():
            caps = caps.union(session_caps)
        self._dirty.add(user_id)
        return replace(
            current,
            availability=availability,
            note=current.note if change.note is None else change.note,
            telephony=change.telephony or current.telephony,
            capabilities=caps,
            version=max(current.version + 1, int(self._clock() * 1_000_000)),
            update_time=self._clock(),
            set_by=set_by,
        )

    def _mark_healthy(self) -> None:
        self.degraded = False

    async def publish(self, presence: Presence) -> None:
        """Push a change to local watchers (and the user's own sessions) and interested peers.

        Changes are coalesced per user: of a burst of changes that arrive while
        the previous ones are still being fanned out, only the newest goes out.
        """
        self._publish(presence, None)

    def _publish(self, presence: Presence, servers: list[str] | None) -> None:
        """``publish``; ``servers``: the peers watching the user, when the store said so
        with the change (None: ask the store at fan-out)."""
        if not self._newer(presence):
            return
        self._outgoing[presence.user_id] = (presence, servers)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_outgoing())

    async def _flush_outgoing(self) -> None:
        await asyncio.sleep(0)  # let the rest of a burst arrive
        while self._outgoing:
            batch, self._outgoing = self._outgoing, {}
            try:
                await self._fan_out(list(batch.values()))
            except Exception:  # a bug in one batch must not stop the next
                _log.exception("fan-out of %d presence changes failed", len(batch))

    async def flush(self) -> None:
        """Wait until every published change has been fanned out."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def _fan_out(self, batch: list[tuple[Presence, list[str] | None]]) -> None:
        """Local watchers first, then the interested peers of the whole batch at once (the
        store told them with most changes; the others are looked up together)."""
        for presence, _ in batch:
            local = self.watches.watchers_of(presence.user_id)
            local.add(presence.user_id)
            try:
                await self._notifier.to_local_users(local, presence)
            except Exception:  # one failed delivery must not stop the others
                _log.exception("fan-out of %s's presence failed", presence.user_id)
        unrouted = [presence for presence, servers in batch if servers is None]
        routed = [(presence, servers) for presence, servers in batch if servers]
        if unrouted:
            peers = self._notifier.peer_servers()
            if peers:
                try:
                    interested = await self._store.interested_servers_many(
                        [p.user_id for p in unrouted], peers
                    )
                    routed += [(p, s) for p, s in zip(unrouted, interested, strict=True) if s]
                except Unavailable:
                    pass  # cross-server presence resumes when the store is back
        for presence, servers in routed:
            self._notifier.to_servers(servers, presence)

    async def received(self, presence: Presence) -> None:
        """A change sent by another UCServer: push it to the local watchers."""
        if self._newer(presence):
            await self._notifier.to_local_users(
                self.watches.watchers_of(presence.user_id), presence
            )

    def _newer(self, presence: Presence) -> bool:
        if presence.version <= self._seen.get(presence.user_id, 0):
            return False
        self._seen[presence.user_id] = presence.version
        return True

    # -- reads and contacts -------------------------------------------------------------

    async def read(self, user_ids: Sequence[str]) -> list[Presence]:
        """Presence of each user a client asked for; ``NotFound`` naming the first id of no
        user (while the Directory cannot say, the ids are taken as they come)."""
        await self._require_known(user_ids, strict=False)
        return await self.get_many(user_ids)

    async def _require_known(self, user_ids: Sequence[str], *, strict: bool) -> None:
        """``NotFound`` for the first id of no user; ``strict``: ``Unavailable`` when the
        Directory cannot say, else the ids are trusted meanwhile."""
        unchecked = [u for u in dict.fromkeys(user_ids) if u not in self._known]
        if self._users is None or not unchecked:
            return
        try:
            unknown = await self._users.unknown_users(unchecked)
        except Unavailable:
            if strict:
                raise
            return
        if unknown:
            raise NotFound(f"user {unknown[0]!r} does not exist", metadata={"user_id": unknown[0]})
        if len(self._known) + len(unchecked) > KNOWN_USERS_CACHE:
            self._known.clear()
        self._known.update(unchecked)

    async def resolve_usernames(self, usernames: Sequence[str]) -> list[str]:
        """The user id of each username; ``NotFound`` naming the first name of no user."""
        if not usernames:
            return []
        if self._users is None:
            raise Unavailable(
                "users cannot be found by name without a Directory",
                metadata={"backend": "Directory"},
            )
        found = await self._users.user_ids_of(usernames)
        for name, user_id in zip(usernames, found, strict=True):
            if user_id is None:
                raise NotFound(f"user {name!r} does not exist", metadata={"username": name})
        ids = [u for u in found if u is not None]
        self._known.update(ids)
        return ids

    async def get_many(self, user_ids: Sequence[str]) -> list[Presence]:
        """Presence of each user; UNKNOWN for users not homed here while the store is down."""
        try:
            found = await self._store.get_many(user_ids)
            self._mark_healthy()
        except Unavailable:
            self.degraded = True
            return [self._local.get(u) or Presence.unknown(u) for u in user_ids]
        live = {self.server_id, *self._notifier.peer_servers()}
        # a user whose server died before anyone marked the user offline is offline
        return [
            replace(p, availability=Availability.OFFLINE, capabilities=Capabilities())
            if p.server_id
            and p.server_id not in live
            and p.availability is not Availability.OFFLINE
            else p
            for p in found
        ]

    async def peer_lost(self, server_id: str) -> None:
        """Another UCServer left the topology: its users that are watched here go OFFLINE."""
        try:
            changed = await self._store.mark_offline_if_on(
                sorted(self.watches.watched()), server_id
            )
        except Unavailable:
            self.degraded = True
            return
        for presence in changed:
            await self.publish(presence)

    async def contacts_of(self, user_id: str) -> list[str]:
        """The user's contact list, in the order added (kept from the opening of the
        user's session here, else read from the contact store)."""
        cached = self._contact_lists.get(user_id)
        if cached is not None:
            return list(cached)
        return await self._contacts.contacts_of(user_id)

    async def list_contacts(
        self, user_id: str, size: int, token: str
    ) -> tuple[list[Presence], str]:
        """One page of the user's contacts with their presence, and the next page's token."""
        ids, next_token = contacts_page(user_id, await self.contacts_of(user_id), size, token)
        return (await self.get_many(ids) if ids else []), next_token

    async def start_watching(self, user_id: str) -> None:
        """A user homed here connected (or changed contacts): watch the user's contacts, and
        keep the list for the user's reads (``contacts_of``, ``list_contacts``) meanwhile."""
        contacts = await self._reads.contacts_of(user_id)
        self._contact_lists[user_id] = contacts
        await self._rewatch(user_id, contacts)

    async def stop_watching(self, user_id: str) -> None:
        """The user's last session here ended."""
        self._contact_lists.pop(user_id, None)
        await self._rewatch(user_id, [])

    async def add_contacts(
        self, user_id: str, contact_ids: Sequence[str], *, usernames: Sequence[str] = ()
    ) -> list[Presence]:
        """Add contacts (by id, then by username) durably and start receiving their changes;
        ``NotFound`` naming the first of no user (nothing is added then)."""
        named = await self.resolve_usernames(usernames)
        contact_ids = list(dict.fromkeys([*contact_ids, *named]))
        await self._require_known(contact_ids, strict=True)
        await self._contacts.add(user_id, contact_ids)
        await self.start_watching(user_id)
        return await self.get_many(contact_ids)

    async def remove_contacts(self, user_id: str, contact_ids: Sequence[str]) -> None:
        """Remove contacts durably and stop receiving their changes."""
        await self._contacts.remove(user_id, contact_ids)
        await self.start_watching(user_id)

    async def _rewatch(self, user_id: str, contacts: Iterable[str]) -> None:
        added, removed = self.watches.set_contacts(user_id, contacts)
        try:
            if added:
                await self._store.add_interest(self.server_id, added, self._interest_ttl)
            if removed:
                await self._store.remove_interest(self.server_id, removed)
        except Unavailable:
            self.degraded = True  # interest is re-registered by the upkeep

    async def _republish(self, user_id: str) -> None:
        local = self._local.get(user_id, Presence(user_id))
        presence = await self._store.update(
            user_id,
            PresenceChange(
                availability=local.availability, note=local.note, telephony=local.telephony
            ),
            local.set_by,
        )
        for session_id, caps in self._caps.get(user_id, {}).items():
            change = PresenceChange(session_capabilities=(session_id, caps))
            presence = await self._store.update(user_id, change, local.set_by, self.server_id)
        self._dirty.discard(user_id)
        self._local[user_id] = presence
        await self.publish(presence)

    # -- upkeep -------------------------------------------------------------------------

    async def upkeep(self) -> None:
        """Renew this server's watch interest and republish local changes made during an outage.

        A heartbeat costs the same whatever the number of users: only when the
        store lost this server's state (Redis restarted, or this server missed its
        TTL), and every ``FULL_CHECK_EVERY`` heartbeats as a safety net, are the
        interest set and every local user's presence written back whole.
        """
        try:
            self._heartbeats += 1
            intact = await self._store.heartbeat(self.server_id, self._interest_ttl)
            if not intact or self._heartbeats % FULL_CHECK_EVERY == 0:
                await self._store.add_interest(
                    self.server_id, self.watches.watched(), self._interest_ttl
                )
                # Redis restarted empty: what it lost of our users is written back
                self._dirty |= set(await self._store.missing(list(self._caps)))
            for user_id in list(self._dirty):
                await self._republish(user_id)
            self._mark_healthy()
        except Unavailable:
            self.degraded = True
