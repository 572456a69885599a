"""Client sessions: login, signed tokens, per-session event sequencing, replay and resume.

Transport-free. ``SessionManager`` (the use-case) logs users in through ``Authenticator``,
takes licenses from ``Licenses``, asks ``ServerLocator`` for a user's home, keeps the live
sessions in a ``SessionHub`` (each with its ``EventLog``) and tells ``SessionObserver`` who
came and went; revoked sessions are shared through ``RevocationStore``.
"""

from procall.session.events import EventLog, ReplayGap, SequencedEvent
from procall.session.hub import Forwarder, LiveSession, MovedTo, SessionHub
from procall.session.manager import Attachment, LoginResult, SessionManager
from procall.session.moves import HandOver, HandOverPeer, SessionMover
from procall.session.openings import OpeningGate
from procall.session.ports import (
    AuthenticatedUser,
    Authenticator,
    Licenses,
    Rehoming,
    ServerLocator,
    SessionObserver,
)
from procall.session.resume import (
    ResumePoint,
    ResumeTokens,
    decode_resume_token,
    encode_resume_token,
    resume_expired,
)
from procall.session.revocations import (
    RevocationList,
    RevocationStore,
    RevokingVerifier,
    TokenCheck,
)
from procall.session.tokens import (
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    SessionClaims,
    TokenSigner,
    TokenVerifier,
    key_id,
)

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_ISSUER",
    "Attachment",
    "AuthenticatedUser",
    "Authenticator",
    "EventLog",
    "Forwarder",
    "HandOver",
    "HandOverPeer",
    "MovedTo",
    "OpeningGate",
    "Rehoming",
    "SessionMover",
    "Licenses",
    "LiveSession",
    "LoginResult",
    "ReplayGap",
    "ResumePoint",
    "ResumeTokens",
    "RevocationList",
    "RevokingVerifier",
    "TokenCheck",
    "RevocationStore",
    "SequencedEvent",
    "ServerLocator",
    "SessionClaims",
    "SessionHub",
    "SessionManager",
    "SessionObserver",
    "TokenSigner",
    "TokenVerifier",
    "key_id",
    "decode_resume_token",
    "encode_resume_token",
    "resume_expired",
]
