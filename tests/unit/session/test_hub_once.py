"""Payloads marked "once" reach each session at most once, whoever announces them again."""

from __future__ import annotations

from procall.session.hub import SessionHub
from procall.session.tokens import SessionClaims


def _claims(session_id: str, user_id: str) -> SessionClaims:
    return SessionClaims(session_id, user_id, user_id, "uc-1", False, 0.0, 1e12)


def _payloads(hub: SessionHub[str], session_id: str) -> list[str]:
    session = hub.get(session_id)
    assert session is not None
    return [event.payload for event in session.log.after(0)]


def _key(payload: str) -> str | None:
    return payload.split(":", 1)[0] if payload.startswith("msg") else None


async def test_a_message_announced_twice_reaches_each_session_once() -> None:
    hub: SessionHub[str] = SessionHub(lambda: 0.0, once_key=_key)
    hub.add(_claims("s1", "bob"), "desk")
    hub.add(_claims("s2", "bob"), "phone")
    hub.add(_claims("s3", "carol"), "desk")
    assert await hub.deliver(["bob", "carol"], "msg1:hello") == 3
    assert await hub.deliver(["bob"], "msg1:hello again") == 0  # the retry's announcement
    assert await hub.deliver(["bob"], "typing") == 2
    assert await hub.deliver(["bob"], "typing") == 2  # not keyed: always delivered
    assert _payloads(hub, "s1") == ["msg1:hello", "typing", "typing"]
    assert _payloads(hub, "s3") == ["msg1:hello"]


async def test_only_a_window_of_keys_is_remembered() -> None:
    hub: SessionHub[str] = SessionHub(lambda: 0.0, once_key=_key, once_window=2)
    hub.add(_claims("s1", "bob"), "desk")
    for payload in ("msg1:a", "msg2:b", "msg3:c", "msg1:a"):
        await hub.deliver(["bob"], payload)
    assert _payloads(hub, "s1") == ["msg1:a", "msg2:b", "msg3:c", "msg1:a"]


async def test_the_sending_session_is_left_out_and_the_users_others_get_it() -> None:
    hub: SessionHub[str] = SessionHub(lambda: 0.0, once_key=_key)
    hub.add(_claims("s1", "bob"), "desk")
    hub.add(_claims("s2", "bob"), "phone")
    hub.add(_claims("s3", "carol"), "desk")
    assert await hub.deliver(["bob", "carol"], "msg1:from bob's desk", except_session="s1") == 2
    assert _payloads(hub, "s1") == []
    assert _payloads(hub, "s2") == _payloads(hub, "s3") == ["msg1:from bob's desk"]
