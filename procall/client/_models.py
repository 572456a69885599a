"""Plain, immutable views of the protobuf resources a client works with."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf import duration_pb2, timestamp_pb2

from procall.api.call.v1 import call_pb2
from procall.api.presence.v1 import presence_pb2

__all__ = [
    "Availability",
    "Call",
    "ForwardingRule",
    "Presence",
    "ServerEndpoint",
    "SessionInfo",
    "TelephonyState",
    "datetime_from_proto",
    "enum_name",
]


class Availability(enum.Enum):
    """What a user tells others about being reachable (``presence.v1.Availability``)."""

    UNSPECIFIED = "unspecified"
    AVAILABLE = "available"
    AWAY = "away"
    BUSY = "busy"
    DO_NOT_DISTURB = "do_not_disturb"
    OFFLINE = "offline"
    UNKNOWN = "unknown"
    BE_RIGHT_BACK = "be_right_back"

    @classmethod
    def from_proto(cls, value: int) -> Availability:
        """The availability of a wire value (unknown future values map to ``UNKNOWN``)."""
        try:
            name = presence_pb2.Availability.Name(value)  # type: ignore[arg-type]
        except ValueError:
            return cls.UNKNOWN
        return cls[name.removeprefix("AVAILABILITY_")]

    def to_proto(self) -> presence_pb2.Availability.ValueType:
        """The wire value."""
        return presence_pb2.Availability.Value(f"AVAILABILITY_{self.name}")

    @classmethod
    def parse(cls, text: str) -> Availability:
        """Parse what a user may set: ``busy``, ``do-not-disturb``, ``dnd``, ``brb``, ...

        Case and ``-`` / ``_`` do not matter; ``unspecified`` and ``unknown`` are refused.
        """
        key = text.strip().lower().replace("-", "_").replace(" ", "_")
        key = _ALIASES.get(key, key)
        settable = [m for m in cls if m not in (cls.UNSPECIFIED, cls.UNKNOWN)]
        for member in settable:
            if member.value == key:
                return member
        choices = ", ".join(m.value.replace("_", "-") for m in settable)
        raise ValueError(f"unknown availability {text!r} (choose from {choices})")


_ALIASES = {"dnd": "do_not_disturb", "brb": "be_right_back", "online": "available"}


class TelephonyState(enum.Enum):
    """The state of a user's phone lines (``presence.v1.TelephonyState``)."""

    UNSPECIFIED = "unspecified"
    IDLE = "idle"
    RINGING = "ringing"
    ON_THE_PHONE = "on_the_phone"
    DIALING = "dialing"

    @classmethod
    def from_proto(cls, value: int) -> TelephonyState:
        """The state of a wire value (unknown future values map to ``UNSPECIFIED``)."""
        try:
            name = presence_pb2.TelephonyState.Name(value)  # type: ignore[arg-type]
        except ValueError:
            return cls.UNSPECIFIED
        return cls[name.removeprefix("TELEPHONY_STATE_")]


def datetime_from_proto(stamp: timestamp_pb2.Timestamp) -> datetime | None:
    """An aware UTC datetime, or None for an unset (zero) timestamp."""
    if stamp.seconds == 0 and stamp.nanos == 0:
        return None
    return datetime.fromtimestamp(stamp.ToNanoseconds() / 1e9, UTC)


@dataclass(frozen=True)
class Presence:
    """One user's presence (``presence.v1.Presence``)."""

    user_id: str
    availability: Availability
    note: str = ""
    version: int = 0
    telephony_state: TelephonyState = TelephonyState.UNSPECIFIED
    #: Channels the user can be reached on right now: ``chat``, ``audio``, ``video``, ...
    capabilities: frozenset[str] = frozenset()
    update_time: datetime | None = None
    #: The delegate who made the last change; empty when the user did.
    set_by_user_id: str = ""

    @classmethod
    def from_proto(cls, message: presence_pb2.Presence) -> Presence:
        """The view of a wire message."""
        caps = message.capabilities
        return cls(
            user_id=message.user_id,
            availability=Availability.from_proto(message.availability),
            note=message.note,
            version=message.version,
            telephony_state=TelephonyState.from_proto(message.telephony_state),
            capabilities=frozenset(
                name
                for name in ("chat", "audio", "video", "screen_share", "conference")
                if getattr(caps, name)
            ),
            update_time=datetime_from_proto(message.update_time),
            set_by_user_id=message.set_by_user_id,
        )


@dataclass(frozen=True)
class ServerEndpoint:
    """A UCServer and its gRPC address."""

    server_id: str
    address: str


@dataclass(frozen=True)
class SessionInfo:
    """The client's session as the servers describe it."""

    session_id: str
    user_id: str
    username: str
    home_server: ServerEndpoint
    #: When the session token expires unless refreshed (the client refreshes it).
    expire_time: datetime | None = None


def enum_name(enum: object, value: int, prefix: str) -> str:
    """``END_REASON_HANGUP`` -> ``"hangup"``; ``""`` for ``*_UNSPECIFIED``; the number when
    the value is newer than this SDK."""
    try:
        name: str = enum.Name(value)  # type: ignore[attr-defined]
    except ValueError:
        return str(value)
    name = name.removeprefix(prefix).lower()
    return "" if name == "unspecified" else name


@dataclass(frozen=True)
class Call:
    """One call between two users (``call.v1.Call``).

    ``state`` is ``initiating``, ``ringing``, ``connected`` or ``ended``; ``end_reason``
    (``hangup``, ``declined``, ``no_answer``, ``busy``, ``canceled``, ``unreachable``,
    ``media_failure``, ``failed``) is empty until the call has ended.
    """

    call_id: str
    state: str
    caller_user_id: str
    callee_user_id: str
    #: Who the call rings for now (differs from the callee after forwarding).
    target_user_id: str = ""
    #: Who answered (the target, or a user who picked the call up); empty until answered.
    answered_by_user_id: str = ""
    #: The session that answered; empty until answered.
    answered_session_id: str = ""
    end_reason: str = ""
    #: The MediaServer carrying the call's media; it changes when that server fails.
    media_server_id: str = ""
    video: bool = False
    create_time: datetime | None = None
    answer_time: datetime | None = None
    end_time: datetime | None = None
    #: Users the call was forwarded from, in order.
    forwarded_from_user_ids: tuple[str, ...] = ()

    @property
    def ended(self) -> bool:
        """Whether the call is over."""
        return self.state == "ended"

    @classmethod
    def from_proto(cls, message: call_pb2.Call) -> Call:
        """The view of a wire message."""
        return cls(
            call_id=message.call_id,
            state=enum_name(call_pb2.CallState, message.state, "CALL_STATE_"),
            caller_user_id=message.caller_user_id,
            callee_user_id=message.callee_user_id,
            target_user_id=message.target_user_id,
            answered_by_user_id=message.answered_by_user_id,
            answered_session_id=message.answered_session_id,
            end_reason=enum_name(call_pb2.EndReason, message.end_reason, "END_REASON_"),
            media_server_id=message.media_server_id,
            video=message.video,
            create_time=datetime_from_proto(message.create_time),
            answer_time=datetime_from_proto(message.answer_time),
            end_time=datetime_from_proto(message.end_time),
            forwarded_from_user_ids=tuple(message.forwarded_from_user_ids),
        )


_CONDITIONS = ("always", "busy", "no_answer", "offline")


@dataclass(frozen=True)
class ForwardingRule:
    """Send a user's calls to ``target_user_id`` under ``condition`` (``call.v1.ForwardingRule``).

    ``condition`` is ``always``, ``busy``, ``no_answer`` or ``offline``;
    ``no_answer_timeout`` (seconds, ``None`` for the server's default of 20 s) applies to
    ``no_answer`` only.
    """

    condition: str
    target_user_id: str
    no_answer_timeout: float | None = None
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.condition not in _CONDITIONS:
            raise ValueError(
                f"unknown forwarding condition {self.condition!r} (choose from "
                f"{', '.join(_CONDITIONS)})"
            )

    @classmethod
    def from_proto(cls, message: call_pb2.ForwardingRule) -> ForwardingRule:
        """The view of a wire message (an unknown condition raises ``ValueError``)."""
        timeout = None
        if message.HasField("no_answer_timeout"):
            timeout = message.no_answer_timeout.ToNanoseconds() / 1e9
        return cls(
            condition=enum_name(
                call_pb2.ForwardingCondition, message.condition, "FORWARDING_CONDITION_"
            ),
            target_user_id=message.target_user_id,
            no_answer_timeout=timeout,
            enabled=message.enabled,
        )

    def to_proto(self) -> call_pb2.ForwardingRule:
        """The wire message."""
        message = call_pb2.ForwardingRule(
            condition=call_pb2.ForwardingCondition.Value(
                f"FORWARDING_CONDITION_{self.condition.upper()}"
            ),
            target_user_id=self.target_user_id,
            enabled=self.enabled,
        )
        if self.no_answer_timeout is not None:
            duration = duration_pb2.Duration()
            duration.FromNanoseconds(int(self.no_answer_timeout * 1e9))
            message.no_answer_timeout.CopyFrom(duration)
        return message
