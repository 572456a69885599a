"""Client sessions: signed tokens, per-session event sequencing, replay and resume."""

from procall.session.events import EventLog, ReplayGap, SequencedEvent
from procall.session.hub import LiveSession, SessionHub
from procall.session.tokens import SessionClaims, TokenSigner

__all__ = [
    "EventLog",
    "LiveSession",
    "ReplayGap",
    "SequencedEvent",
    "SessionClaims",
    "SessionHub",
    "TokenSigner",
]
