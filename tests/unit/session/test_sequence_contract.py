"""The contract of ``Event.sequence`` says what the server does: the session's events are
numbered from 1 without gaps, the stream's own messages (Welcome, SessionClosed) carry 0.
The behaviour is checked against real servers in
``tests/integration/session/test_sessions_at_home.py``."""

from __future__ import annotations

from pathlib import Path

PROTO = Path(__file__).resolve().parents[3] / "proto/procall/api/session/v1/session.proto"


def _comment_above(text: str, declaration: str) -> str:
    """The ``//`` comment lines right above the line that starts with ``declaration``."""
    lines = text.splitlines()
    (index,) = [i for i, line in enumerate(lines) if line.strip().startswith(declaration)]
    comment: list[str] = []
    for line in reversed(lines[:index]):
        if not line.strip().startswith("//"):
            break
        comment.insert(0, line.strip().removeprefix("//").strip())
    return " ".join(comment)


def test_event_sequence_documents_the_welcome_at_0() -> None:
    text = PROTO.read_text(encoding="utf-8")
    sequence = _comment_above(text, "uint64 sequence = 1;")
    assert "starting at 1, without gaps" in sequence
    assert "carry 0 (Welcome, SessionClosed)" in sequence
    welcome = _comment_above(text, "message Welcome {")
    assert "sequence 0" in welcome and "resume token" in welcome
