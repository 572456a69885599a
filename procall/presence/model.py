"""Presence: what a user tells others about being reachable (transport-free)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from procall.clock import UnixTime

__all__ = ["Availability", "Capabilities", "Presence", "PresenceChange", "TelephonyState"]


class Availability(enum.Enum):
    """Reachability, as the user (or a delegate) set it."""

    AVAILABLE = "AVAILABLE"
    AWAY = "AWAY"
    BUSY = "BUSY"
    DO_NOT_DISTURB = "DO_NOT_DISTURB"
    OFFLINE = "OFFLINE"
    #: Cannot be determined now (shared state unreachable); never stored.
    UNKNOWN = "UNKNOWN"
    BE_RIGHT_BACK = "BE_RIGHT_BACK"


class TelephonyState(enum.Enum):
    """The state of the user's phone lines."""

    UNSPECIFIED = "UNSPECIFIED"
    IDLE = "IDLE"
    RINGING = "RINGING"
    ON_THE_PHONE = "ON_THE_PHONE"
    DIALING = "DIALING"


@dataclass(frozen=True)
class Capabilities:
    """Channels a user can be reached on (the union over the user's clients)."""

    chat: bool = False
    audio: bool = False
    video: bool = False
    screen_share: bool = False
    conference: bool = False

    def union(self, other: Capabilities) -> Capabilities:
        """Reachable on a channel when any client is."""
        return Capabilities(
            self.chat or other.chat,
            self.audio or other.audio,
            self.video or other.video,
            self.screen_share or other.screen_share,
            self.conference or other.conference,
        )


@dataclass(frozen=True)
class Presence:
    """One user's aggregated presence."""

    user_id: str
    availability: Availability = Availability.OFFLINE
    note: str = ""
    telephony: TelephonyState = TelephonyState.UNSPECIFIED
    capabilities: Capabilities = field(default_factory=Capabilities)
    #: Grows with every change; watchers drop anything older than what they have.
    version: int = 0
    update_time: UnixTime = 0.0
    #: The delegate who made the last change; empty when the user did.
    set_by: str = ""
    #: The UCServer holding the user's sessions (not sent to clients).
    server_id: str = ""

    @classmethod
    def unknown(cls, user_id: str) -> Presence:
        """The presence of a user whose state cannot be read right now."""
        return cls(user_id, Availability.UNKNOWN)


@dataclass(frozen=True)
class PresenceChange:
    """Fields to change; None leaves a field as it is."""

    availability: Availability | None = None
    note: str | None = None
    telephony: TelephonyState | None = None
    #: Capabilities of one client session (aggregated over the user's sessions).
    session_capabilities: tuple[str, Capabilities] | None = None
    #: A session that ended (its capabilities no longer count).
    ended_session: str | None = None
