"""Page sizes and opaque page tokens (AIP-158)."""

from __future__ import annotations

import base64
import json

import pytest

from procall.errors import InvalidArgument
from procall.paging import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    decode_page_token,
    encode_page_token,
    page_size,
)


def test_page_size_defaults_caps_and_refuses_negative() -> None:
    assert page_size(0) == DEFAULT_PAGE_SIZE == 50
    assert page_size(7) == 7
    assert page_size(10**6) == MAX_PAGE_SIZE == 1000
    with pytest.raises(InvalidArgument) as failure:
        page_size(-1)
    assert [v.field for v in failure.value.violations] == ["page_size"]


def test_tokens_round_trip_and_hide_their_cursor() -> None:
    token = encode_page_token("users", {"home_server_id": "uc-1"}, ("bob", 3))
    assert "bob" not in token and "=" not in token
    assert decode_page_token(token, "users", {"home_server_id": "uc-1"}) == ("bob", 3)
    assert decode_page_token("", "users", {}) is None


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "%%%",
        "x" * 5000,
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(json.dumps([1, 2]).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps({"k": "users", "c": ["a"]}).encode()).decode(),
    ],
)
def test_garbage_tokens_name_the_page_token_field(token: str) -> None:
    with pytest.raises(InvalidArgument) as failure:
        decode_page_token(token, "users", {})
    assert [v.field for v in failure.value.violations] == ["page_token"]


def test_a_token_only_continues_its_own_listing() -> None:
    token = encode_page_token("search", {"query": "ali", "field": "all"}, ("alice",))
    for kind, scope in [
        ("users", {"query": "ali", "field": "all"}),
        ("search", {"query": "bob", "field": "all"}),
        ("search", {"query": "ali", "field": "mail"}),
    ]:
        with pytest.raises(InvalidArgument):
            decode_page_token(token, kind, scope)


def test_forged_cursor_shapes_are_refused() -> None:
    for cursor in ([], [True], [{"a": 1}], list(range(20))):
        raw = json.dumps({"k": "users", "f": "", "c": cursor}).encode()
        forged = base64.urlsafe_b64encode(raw).decode()
        with pytest.raises(InvalidArgument):
            decode_page_token(forged, "users", {})
