"""A call between two users and the rules of its life (transport-free)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from procall.clock import UnixTime
from procall.presence.model import TelephonyState

__all__ = ["Call", "CallState", "EndReason", "telephony_of"]


class CallState(enum.IntEnum):
    """Where a call is in its life; the values are those of the wire enum."""

    INITIATING = 1
    RINGING = 2
    CONNECTED = 3
    ENDED = 4


class EndReason(enum.IntEnum):
    """Why a call ended; the values are those of the wire enum."""

    UNSPECIFIED = 0
    HANGUP = 1
    DECLINED = 2
    NO_ANSWER = 3
    BUSY = 4
    CANCELED = 5
    UNREACHABLE = 6
    MEDIA_FAILURE = 7
    FAILED = 8


@dataclass(frozen=True)
class Call:
    """One call between two users, as stored in the shared call state."""

    call_id: str
    #: Who placed the call, and from which session.
    caller: str
    callee: str
    #: Who the call rings for now (the callee, or whom it was forwarded to).
    target: str
    state: CallState
    create_time: UnixTime
    caller_session: str = ""
    answered_by: str = ""
    answered_session: str = ""
    end_reason: EndReason = EndReason.UNSPECIFIED
    #: The MediaServer bridging the legs, and where it serves MediaService.
    media_server_id: str = ""
    media_address: str = ""
    video: bool = False
    #: When ringing started at the current target (forwarding restarts it).
    ring_time: UnixTime = 0.0
    answer_time: UnixTime | None = None
    end_time: UnixTime | None = None
    forwarded_from: tuple[str, ...] = ()
    #: Idempotency key of the PlaceCall that created it.
    request_id: str = ""
    #: Grows with every change; a change is stored only over the version it was based on.
    version: int = 1
    #: The current target's NO_ANSWER forwarding: whom the call moves to after ringing
    #: ``no_answer_seconds`` unanswered (empty: it ends NO_ANSWER after the ring timeout).
    no_answer_target: str = ""
    no_answer_seconds: float = 0.0
    #: MediaServers found failed while carrying this call (never chosen for it again).
    failed_media: tuple[str, ...] = ()
    #: The trace its PlaceCall began (W3C trace context; empty when not traced), which
    #: the parties' media negotiations join, so that a call's set-up is one trace.
    trace_context: tuple[tuple[str, str], ...] = ()

    @property
    def ended(self) -> bool:
        """Whether the call is over."""
        return self.state is CallState.ENDED

    def parties(self) -> tuple[str, ...]:
        """The users of the call now: the caller, whom it rings for, who answered."""
        return tuple(dict.fromkeys(u for u in (self.caller, self.target, self.answered_by) if u))

    def notified(self) -> tuple[str, ...]:
        """Users told about every change: the parties and those it was forwarded from (so
        that their clients stop ringing when it moves on)."""
        return tuple(dict.fromkeys((*self.forwarded_from, *self.parties())))

    def is_party(self, user_id: str) -> bool:
        """Whether ``user_id`` may see and act on the call."""
        return user_id in self.parties()

    def in_call(self, user_id: str) -> bool:
        """Whether ``user_id`` talks in this call (its media goes through the bridge)."""
        return user_id == self.caller or (bool(self.answered_by) and user_id == self.answered_by)

    def duration(self) -> float | None:
        """Seconds from answer to end, for an answered call that ended."""
        if self.answer_time is None or self.end_time is None:
            return None
        return max(0.0, self.end_time - self.answer_time)

    def changed(self, **changes: object) -> Call:
        """A copy with ``changes`` applied and the version raised by one."""
        return replace(self, version=self.version + 1, **changes)  # type: ignore[arg-type]


def telephony_of(call: Call, user_id: str) -> TelephonyState | None:
    """The telephony state ``call`` gives ``user_id`` (None: the call does not concern
    the user's phone any more, e.g. a call that rang for them and was picked up by
    someone else)."""
    if call.ended or not call.is_party(user_id):
        return TelephonyState.IDLE if user_id in call.notified() else None
    if call.state is CallState.CONNECTED:
        if call.in_call(user_id):
            return TelephonyState.ON_THE_PHONE
        return TelephonyState.IDLE if user_id == call.target else None
    if user_id == call.caller:
        return TelephonyState.DIALING
    if user_id == call.target:
        return TelephonyState.RINGING
    return None
