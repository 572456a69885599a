"""The call use cases: place, ring, answer, decline, hang up, negotiate media.

Every change of a call is a compare-and-set on the shared call state (``CallStore``):
of two UCServers changing one call at once (two sessions answering, a hang-up racing
the ring timeout) exactly one wins, and the other re-reads and decides again. The one
that ends a call releases its media, writes the journal entries and tells the parties.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

from procall.calls.forwarding import ForwardingService, Reachability, Route
from procall.calls.model import Call, CallState, EndReason
from procall.calls.ports import (
    Callees,
    CallEvents,
    CallJournal,
    CallStore,
    MediaAllocation,
    PickupRights,
)
from procall.calls.ports import MediaServers as MediaPort
from procall.clock import Clock
from procall.errors import (
    Aborted,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ProcallError,
    ResourceExhausted,
    Unavailable,
)
from procall.journal.model import JournalEntry, JournalKind, entry_id_for
from procall.validation import check_id, check_request_id, reject_nul

__all__ = ["MAX_SDP_CHARS", "CallTimings", "Calls", "journal_entries"]

_log = logging.getLogger(__name__)
#: Attempts at a compare-and-set before giving up with ABORTED (only under heavy contention).
_ATTEMPTS = 8
#: Largest SDP offer accepted, in characters.
MAX_SDP_CHARS = 64 * 1024

#: Decides a call's next state from its current one (raises when the change is refused).
Decision = Callable[[Call], Call]


@dataclass(frozen=True)
class CallTimings:
    """How long calls ring and how long their state lives."""

    #: Seconds a call rings before it ends unanswered.
    ring_seconds: float = 30.0
    #: Seconds a call that has not ended stays stored without being refreshed (the
    #: parties' UCServers refresh connected calls; a call whose servers all died expires).
    live_ttl: float = 120.0
    #: Seconds an ended call stays readable (GetCall, retried requests).
    ended_ttl: float = 300.0
    #: Seconds a PlaceCall request id is remembered.
    request_ttl: float = 3600.0


def _not_ringing(call: Call) -> FailedPrecondition:
    if call.ended:
        return _ended(call)
    return FailedPrecondition(
        f"call {call.call_id} is no longer ringing",
        reason="CALL_NOT_RINGING",
        metadata={"call_id": call.call_id, "state": call.state.name},
    )


def _ended(call: Call) -> FailedPrecondition:
    return FailedPrecondition(
        f"call {call.call_id} has ended",
        reason="CALL_ENDED",
        metadata={"call_id": call.call_id, "end_reason": call.end_reason.name},
    )


class Calls:
    """The calls of every user, as seen from one UCServer."""

    def __init__(
        self,
        store: CallStore,
        media: MediaPort,
        callees: Callees,
        events: CallEvents,
        journal: CallJournal,
        pickup: PickupRights,
        forwarding: ForwardingService,
        clock: Clock,
        timings: CallTimings | None = None,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        join_trace: Callable[[Call], AbstractContextManager[object]] = lambda _: nullcontext(),
    ) -> None:
        """``join_trace(call)`` wraps the work of a party's media negotiation so that it
        joins the trace the call's set-up began (``Call.trace_context``)."""
        self._store = store
        self._media = media
        self._callees = callees
        self._events = events
        self._journal = journal
        self._pickup = pickup
        self._forwarding = forwarding
        self._clock = clock
        self.timings = timings or CallTimings()
        self._new_id = new_id
        self._join_trace = join_trace

    # -- placing ---------------------------------------------------------------------------

    async def place(
        self,
        caller: str,
        session_id: str,
        callee: str,
        video: bool,
        request_id: str,
        callee_username: str = "",
        trace_context: Mapping[str, str] | None = None,
    ) -> Call:
        """Place a call from ``caller`` to ``callee`` (or to the user named
        ``callee_username``); a retried request returns its call. ``trace_context`` is
        the trace the placing began, kept with the call (``Call.trace_context``)."""
        if not callee and callee_username:
            name = check_id(callee_username, "callee_username")
            found = await self._callees.user_id_of(name)
            if found is None:
                raise NotFound(f"no user is named {name!r}", metadata={"username": name})
            callee = found
        callee = check_id(callee, "callee_user_id")
        request_id = check_request_id(request_id, required=False)
        if callee == caller:
            raise InvalidArgument.field("callee_user_id", "you cannot call yourself")
        if request_id:
            earlier = await self._store.by_request(caller, request_id)
            if earlier is not None:
                return earlier
        # the Directory's answer, the forwarding decision and the MediaServer at once: the
        # callee's clients ring only after all three (a refused call gives its media back)
        call_id = self._new_id()
        known, routed, media = await asyncio.gather(
            self._callees.exists(callee),
            self._route(callee, caller),
            self._media.allocate(call_id),
            return_exceptions=True,
        )
        try:
            if not _result(known):
                raise NotFound(f"user {callee!r} does not exist", metadata={"user_id": callee})
            route, reach = _result(routed)
            _check_reachable(route.target_user_id, reach)
            media = _result(media)
        except ProcallError:
            if isinstance(media, MediaAllocation):
                await self._release(call_id, media)
            raise
        target = route.target_user_id
        now = self._clock()
        call = Call(
            call_id=call_id,
            caller=caller,
            callee=callee,
            target=target,
            forwarded_from=route.forwarded_from,
            state=CallState.RINGING,
            create_time=now,
            ring_time=now,
            caller_session=session_id,
            media_server_id=media.server_id,
            media_address=media.address,
            video=video,
            request_id=request_id,
            trace_context=tuple(sorted((trace_context or {}).items())),
            **_no_answer(route),
        )
        stored = await self._store.create(call, self.timings.live_ttl, self.timings.request_ttl)
        if stored.call_id != call_id:  # a concurrent retry of the same request won
            await self._release(call_id, media)
            return stored
        await self._events.changed(stored)
        return stored

    # -- the callee's answers ----------------------------------------------------------------

    async def answer(self, user_id: str, session_id: str, call_id: str) -> Call:
        """The first answer of the call's target wins; later ones get CALL_NOT_RINGING."""

        def decide(call: Call) -> Call:
            if user_id != call.target:
                raise PermissionDenied(f"call {call.call_id} does not ring for you")
            if call.state is not CallState.RINGING:
                raise _not_ringing(call)
            return call.changed(
                state=CallState.CONNECTED,
                answered_by=user_id,
                answered_session=session_id,
                answer_time=self._clock(),
            )

        return await self._change(user_id, call_id, decide)

    async def decline(self, user_id: str, call_id: str) -> Call:
        """The target refuses a ringing call: it ends, DECLINED."""

        def decide(call: Call) -> Call:
            if user_id != call.target:
                raise PermissionDenied(f"call {call.call_id} does not ring for you")
            if call.state is not CallState.RINGING:
                raise _not_ringing(call)
            return self._ending(call, EndReason.DECLINED)

        return await self._change(user_id, call_id, decide)

    async def hang_up(self, user_id: str, call_id: str) -> Call:
        """End a call: the caller cancels a ringing call, the target declines it, either
        talking party ends a connected one."""

        def decide(call: Call) -> Call:
            if call.ended:
                raise _ended(call)
            if call.state is CallState.CONNECTED:
                if not call.in_call(user_id):
                    raise PermissionDenied(f"you are not in call {call.call_id}")
                return self._ending(call, EndReason.HANGUP)
            if user_id == call.caller:
                return self._ending(call, EndReason.CANCELED)
            return self._ending(call, EndReason.DECLINED)

        return await self._change(user_id, call_id, decide)

    async def pick_up(self, user_id: str, session_id: str, call_id: str) -> Call:
        """Take a call ringing for someone else; of concurrent pick-ups (and the target's
        own answer) exactly one wins, the others get CALL_NOT_RINGING."""
        call_id = check_id(call_id, "call_id")
        call = await self._store.get(call_id)
        if call is None:
            raise NotFound(f"call {call_id!r} does not exist", metadata={"call_id": call_id})
        if user_id == call.target:
            raise InvalidArgument.field("call_id", "the call rings for you: answer it")
        if user_id == call.caller:
            raise InvalidArgument.field("call_id", "you placed this call")
        if not await self._pickup.may_pick_up(user_id, call.target):
            raise PermissionDenied(
                f"you may not pick up calls for {call.target}: no shared pick-up group "
                "and no calls.pickup delegation"
            )

        def decide(current: Call) -> Call:
            if current.state is not CallState.RINGING:
                raise _not_ringing(current)
            return current.changed(
                state=CallState.CONNECTED,
                answered_by=user_id,
                answered_session=session_id,
                answer_time=self._clock(),
            )

        picked = await self._apply(call_id, decide)
        if picked is None:
            raise NotFound(f"call {call_id!r} does not exist", metadata={"call_id": call_id})
        return picked

    # -- media -------------------------------------------------------------------------------

    async def negotiate(
        self, user_id: str, session_id: str, call_id: str, sdp_offer: str
    ) -> tuple[str, Call]:
        """The user's SDP offer to the call's MediaServer; returns its answer and the call.

        The caller may negotiate while the call rings (so that media flows the moment it
        is answered); the answering party once it answered, from the session that answered.
        """
        if not sdp_offer.strip():
            raise InvalidArgument.field("sdp_offer", "is required")
        if len(sdp_offer) > MAX_SDP_CHARS:
            raise InvalidArgument.field("sdp_offer", f"is longer than {MAX_SDP_CHARS} characters")
        reject_nul(sdp_offer, "sdp_offer")
        call = await self._party_call(user_id, call_id)
        if call.ended:
            raise _ended(call)
        if not call.in_call(user_id):
            raise PermissionDenied(f"you are not in call {call.call_id} (answer it first)")
        own = call.caller_session if user_id == call.caller else call.answered_session
        if own and session_id and own != session_id:
            raise PermissionDenied(f"call {call.call_id} is on another of your clients")
        media = MediaAllocation(call.media_server_id, call.media_address)
        try:
            with self._join_trace(call):
                answer = await self._media.negotiate(media, call.call_id, user_id, sdp_offer)
        except Unavailable:
            # the call's MediaServer is gone: the call moves (the clients hear of it and
            # negotiate again) or ends MEDIA_FAILURE
            await self.media_failed(call.call_id, call.media_server_id)
            raise
        return answer, call

    async def media_ended(self, call_id: str, server_id: str) -> None:
        """The bridge of a connected call ended on its MediaServer ``server_id`` (a party's
        peer went away): the call ends FAILED."""

        def decide(current: Call) -> Call:
            if current.state is not CallState.CONNECTED or current.media_server_id != server_id:
                return current
            return self._ending(current, EndReason.FAILED)

        await self._apply(call_id, decide)

    async def media_failed(self, call_id: str, server_id: str) -> Call | None:
        """The call's MediaServer ``server_id`` failed: re-anchor the call on another one
        (its parties negotiate again when they see the new ``media_server_id``), or end it
        MEDIA_FAILURE when none is left. Returns the call when this server changed it."""
        call = await self._store.get(call_id)
        if call is None or call.ended or call.media_server_id != server_id:
            return None  # ended, or another UCServer moved it already
        failed = (*call.failed_media, server_id)
        try:  # the Lookup keeps one choice per call: both parties' servers get the same
            media: MediaAllocation | None = await self._media.allocate(call_id, failed)
        except (Unavailable, ResourceExhausted) as error:
            _log.warning("call %s lost its MediaServer and no other: %s", call_id, error.message)
            media = None

        def decide(current: Call) -> Call:
            if current.ended or current.media_server_id != server_id:
                return current
            if media is None:
                return self._ending(current, EndReason.MEDIA_FAILURE)
            return current.changed(
                media_server_id=media.server_id, media_address=media.address, failed_media=failed
            )

        changed = await self._apply(call_id, decide)
        return changed if changed is not None and changed.version > call.version else None

    # -- reading -----------------------------------------------------------------------------

    async def get(self, user_id: str, call_id: str) -> Call:
        """One call of the user's."""
        return await self._party_call(user_id, call_id)

    async def active(self, user_id: str) -> list[Call]:
        """The user's calls that have not ended, oldest first."""
        calls = await self._store.active_of(user_id)
        return sorted((c for c in calls if c.is_party(user_id)), key=lambda c: c.create_time)

    # -- time and departures -----------------------------------------------------------------

    def ring_deadline(self, call: Call) -> float:
        """When a ringing call moves on (NO_ANSWER forwarding) or ends unanswered."""
        if call.no_answer_target:
            return call.ring_time + call.no_answer_seconds
        return call.ring_time + self.timings.ring_seconds

    async def _route(self, callee: str, caller: str) -> tuple[Route, Reachability]:
        """Where a new call for ``callee`` rings, and whether that user can take it."""
        route = await self._forwarding.route(callee, self._reachability, caller=caller)
        return route, await self._reachability(route.target_user_id)

    async def _reachability(self, user_id: str) -> Reachability:
        online = await self._callees.online(user_id)
        return Reachability(online, online and bool(await self._store.active_of(user_id)))

    async def _forward_unanswered(self, call: Call) -> Call | None:
        """Where a call whose target did not answer moves on to (its NO_ANSWER rule, the
        rules of that user applied in turn), or None when nobody there can take it."""
        route = await self._forwarding.route(
            call.no_answer_target,
            self._reachability,
            caller=call.caller,
            forwarded_from=(*call.forwarded_from, call.target),
        )
        reach = await self._reachability(route.target_user_id)
        if route.target_user_id in (call.caller, call.target) or not reach.online or reach.busy:
            return None
        return call.changed(
            target=route.target_user_id,
            forwarded_from=route.forwarded_from,
            ring_time=self._clock(),
            **_no_answer(route),
        )

    async def ring_timeout(self, call_id: str) -> Call | None:
        """A call still ringing past its deadline moves on by its target's NO_ANSWER rule,
        or ends NO_ANSWER; returns the call when this server changed it."""

        try:
            call = await self._store.get(call_id)
            if call is None or call.state is not CallState.RINGING:
                return None
            if self._clock() < self.ring_deadline(call):
                return None
            moved = await self._forward_unanswered(call) if call.no_answer_target else None
            seen = call.version

            def decide(current: Call) -> Call:
                if current.version != seen:
                    return current  # answered, ended or moved on meanwhile
                return moved or self._ending(current, EndReason.NO_ANSWER)

            changed = await self._apply(call_id, decide)
        except ProcallError as error:
            _log.warning("ring timeout of call %s not applied: %s", call_id, error.message)
            return None
        return changed if changed is not None and changed.version == seen + 1 else None

    async def user_gone(self, user_id: str) -> None:
        """The user's last client went away: calls it talks in end, calls ringing for it
        end unanswered, calls it placed are canceled."""
        for call in await self._store.active_of(user_id):
            reason = EndReason.HANGUP if call.state is CallState.CONNECTED else EndReason.CANCELED
            if user_id == call.target and call.state is CallState.RINGING:
                reason = EndReason.UNREACHABLE

            def decide(current: Call, reason: EndReason = reason) -> Call:
                if current.ended or not current.is_party(user_id):
                    return current
                if current.state is CallState.CONNECTED and not current.in_call(user_id):
                    return current
                return self._ending(current, reason)

            try:
                await self._apply(call.call_id, decide)
            except ProcallError as error:
                _log.warning("call %s of departed %s not ended: %s", call.call_id, user_id, error)

    # -- the machinery -----------------------------------------------------------------------

    def _ending(self, call: Call, reason: EndReason) -> Call:
        return call.changed(state=CallState.ENDED, end_reason=reason, end_time=self._clock())

    async def _party_call(self, user_id: str, call_id: str) -> Call:
        call_id = check_id(call_id, "call_id")
        call = await self._store.get(call_id)
        if call is None or not call.is_party(user_id):
            raise NotFound(f"call {call_id!r} does not exist", metadata={"call_id": call_id})
        return call

    async def _change(self, user_id: str, call_id: str, decide: Decision) -> Call:
        """Apply ``decide`` to a call of the user's (NOT_FOUND for anyone else)."""
        call_id = check_id(call_id, "call_id")

        def checked(call: Call) -> Call:
            if not call.is_party(user_id):
                raise NotFound(f"call {call_id!r} does not exist", metadata={"call_id": call_id})
            return decide(call)

        call = await self._apply(call_id, checked)
        if call is None:
            raise NotFound(f"call {call_id!r} does not exist", metadata={"call_id": call_id})
        return call

    async def _apply(self, call_id: str, decide: Decision) -> Call | None:
        """Compare-and-set ``decide``'s change; tell the parties; finish an ended call."""
        for _ in range(_ATTEMPTS):
            call = await self._store.get(call_id)
            if call is None:
                return None
            changed = decide(call)
            if changed is call:
                return call
            ttl = self.timings.ended_ttl if changed.ended else self.timings.live_ttl
            if await self._store.replace(changed, ttl):
                if changed.ended:
                    await self._finish(changed)
                else:
                    await self._events.changed(changed)
                return changed
        raise Aborted(f"call {call_id} changed too often at once; try again")

    async def _release(self, call_id: str, media: MediaAllocation) -> None:
        try:
            await self._media.release(call_id, media)
        except ProcallError as error:  # the bridge ends with its legs or its server anyway
            _log.info("media of call %s not released: %s", call_id, error.message)

    async def _finish(self, call: Call) -> None:
        """An ended call: tell the parties, release its media, write the journal."""
        await self._events.changed(call)
        await self._release(call.call_id, MediaAllocation(call.media_server_id, call.media_address))
        try:
            await self._journal.record(journal_entries(call))
        except Unavailable as error:
            _log.warning("journal of call %s not written: %s", call.call_id, error.message)


_T = TypeVar("_T")


def _result(outcome: _T | BaseException) -> _T:
    """The value of one ``gather(..., return_exceptions=True)`` outcome (its error raised)."""
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _check_reachable(target: str, reach: Reachability) -> None:
    """FAILED_PRECONDITION unless ``target`` is online and not in another call."""
    if not reach.online:
        raise FailedPrecondition(
            f"{target} has no client logged on", reason="CALLEE_OFFLINE",
            metadata={"user_id": target},
        )  # fmt: skip
    if reach.busy:
        raise FailedPrecondition(
            f"{target} is in another call", reason="CALLEE_BUSY", metadata={"user_id": target}
        )


def _no_answer(route: Route) -> dict[str, Any]:
    """The call fields of a route's NO_ANSWER forwarding."""
    if route.no_answer is None:
        return {"no_answer_target": "", "no_answer_seconds": 0.0}
    return {
        "no_answer_target": route.no_answer.target_user_id,
        "no_answer_seconds": route.no_answer.timeout_seconds,
    }


def journal_entries(call: Call) -> Sequence[JournalEntry]:
    """The journal entry of each user an ended call concerned (ids derive from the call,
    so that a retried write stores each once)."""
    at = call.end_time if call.end_time is not None else call.create_time
    duration = call.duration()
    duration_ms = int(duration * 1000) if duration is not None else None

    def entry(user: str, kind: JournalKind, peer: str, talked: bool = False) -> JournalEntry:
        request_id = f"call:{call.call_id}"
        return JournalEntry(
            entry_id_for(user, request_id),
            user,
            kind,
            at,
            peer_user_id=peer,
            call_id=call.call_id,
            duration_ms=duration_ms if talked else None,
            request_id=request_id,
        )

    entries = [entry(call.caller, JournalKind.CALL_PLACED, call.callee, True)]
    entries += [entry(u, JournalKind.CALL_FORWARDED, call.caller) for u in call.forwarded_from]
    if call.answered_by == call.target:
        entries.append(entry(call.target, JournalKind.CALL_RECEIVED, call.caller, True))
    elif call.answered_by:
        entries.append(entry(call.target, JournalKind.CALL_PICKED_UP, call.caller))
        entries.append(entry(call.answered_by, JournalKind.CALL_PICKED_UP, call.caller, True))
    elif call.end_reason is EndReason.DECLINED:
        entries.append(entry(call.target, JournalKind.CALL_DECLINED, call.caller))
    else:
        entries.append(entry(call.target, JournalKind.CALL_MISSED, call.caller))
    return entries
