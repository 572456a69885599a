"""Plain, immutable views of the protobuf resources a client works with."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf import timestamp_pb2

from procall.api.presence.v1 import presence_pb2

__all__ = [
    "Availability",
    "Presence",
    "ServerEndpoint",
    "SessionInfo",
    "TelephonyState",
    "datetime_from_proto",
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
