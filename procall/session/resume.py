"""Opaque resume tokens: which session, which server run, up to which event."""

from __future__ import annotations

import base64
import binascii

from procall.errors import FailedPrecondition

__all__ = ["ResumePoint", "decode_resume_token", "encode_resume_token", "resume_expired"]


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
