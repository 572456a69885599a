"""Opaque resume tokens: which session, which server run, up to which event."""

from __future__ import annotations

import base64
import binascii

from procall.errors import FailedPrecondition

__all__ = [
    "ResumePoint",
    "ResumeTokens",
    "decode_resume_token",
    "encode_resume_token",
    "resume_expired",
]


class ResumePoint:
    """Where a client wants its stream to continue."""

    def __init__(self, session_id: str, run_id: str, sequence: int) -> None:
        self.session_id = session_id
        self.run_id = run_id
        self.sequence = sequence


def resume_expired(detail: str) -> FailedPrecondition:
    """The error telling a client to resynchronise with unary calls and open a fresh stream."""
    return FailedPrecondition(
        f"cannot resume the stream: {detail}; resynchronise and connect without a resume token",
        reason="RESUME_EXPIRED",
    )


def encode_resume_token(session_id: str, run_id: str, sequence: int) -> str:
    """The token a client sends back to resume after event ``sequence``."""
    raw = f"1|{session_id}|{run_id}|{sequence}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class ResumeTokens:
    """The resume tokens of one session's events on one server run, as ASCII bytes: the
    same tokens as ``encode_resume_token``, with the part every token shares encoded once.

    Base64 turns each 3 bytes into 4 characters independently, so the encoding of the
    constant prefix up to a multiple of 3 bytes is a prefix of every token; only the rest
    and the sequence number are encoded per event (a stream writes one token per event).
    """

    __slots__ = ("_head", "_tail")

    def __init__(self, session_id: str, run_id: str) -> None:
        raw = f"1|{session_id}|{run_id}|".encode()
        cut = len(raw) - len(raw) % 3
        self._head = base64.urlsafe_b64encode(raw[:cut])
        self._tail = raw[cut:]

    def encode(self, sequence: int) -> bytes:
        """The token of event ``sequence`` (``encode_resume_token``, ASCII-encoded)."""
        rest = base64.urlsafe_b64encode(self._tail + str(sequence).encode("ascii"))
        return self._head + rest.rstrip(b"=")


def decode_resume_token(token: str) -> ResumePoint:
    """Parse a resume token; ``FailedPrecondition(RESUME_EXPIRED)`` when it is not one."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8")
        version, session_id, run_id, sequence = raw.split("|")
        if version != "1":
            raise ValueError(version)
        return ResumePoint(session_id, run_id, int(sequence))
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise resume_expired("the resume token is not valid") from None
