"""What chat refuses from clients, and cursors that keep timestamps exact."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import pytest

from procall.chat.conversations import MAX_PAGE_SIZE, page_limit
from procall.chat.model import MAX_GROUP_MEMBERS, MAX_TEXT_BYTES
from procall.chat.validation import (
    MAX_QUERY_CHARS,
    check_id,
    check_member_ids,
    check_query,
    check_request_id,
    check_text,
    check_title,
)
from procall.errors import InvalidArgument
from procall.paging import time_from_cursor, time_in_cursor


def _field(error: pytest.ExceptionInfo[InvalidArgument]) -> str:
    (violation,) = error.value.violations
    return violation.field


def test_text_must_not_be_empty() -> None:
    with pytest.raises(InvalidArgument) as refused:
        check_text("")
    assert _field(refused) == "text"


@pytest.mark.parametrize("char", ["x", "é", "€", "😀"])  # 1, 2, 3 and 4 bytes of UTF-8
def test_text_is_limited_in_bytes_not_characters(char: str) -> None:
    width = len(char.encode())
    fits = char * (MAX_TEXT_BYTES // width)
    assert check_text(fits) == fits  # exactly 16 KiB: kept as sent
    too_long = fits + char
    size = len(too_long.encode())
    assert size > MAX_TEXT_BYTES and (width == 1 or len(too_long) < MAX_TEXT_BYTES)
    with pytest.raises(InvalidArgument) as refused:
        check_text(too_long)
    assert _field(refused) == "text"
    assert f"is {size} bytes" in refused.value.message


def test_whitespace_and_control_characters_other_than_nul_are_kept() -> None:
    text = " \t\r\n\a\x1b[31m\u202e\ufeff "
    assert check_text(text) == text


@pytest.mark.parametrize(
    ("check", "field"),
    [
        (lambda v: check_text(v), "text"),
        (lambda v: check_title(v), "title"),
        (lambda v: check_id(v, "conversation_id"), "conversation_id"),
        (lambda v: check_query(v), "query"),
        (lambda v: check_request_id(v), "request_id"),
        (lambda v: check_member_ids(["bob", v]), "member_user_ids"),
    ],
)
def test_nul_characters_are_refused_everywhere(check: Callable[[str], object], field: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        check("before\x00after")
    assert _field(refused) == field
    assert "NUL" in refused.value.message


def test_request_id_is_required_unless_optional() -> None:
    with pytest.raises(InvalidArgument) as missing:
        check_request_id("")
    assert _field(missing) == "request_id"
    assert check_request_id("", required=False) == ""
    assert check_request_id("r" * 128) == "r" * 128
    with pytest.raises(InvalidArgument):
        check_request_id("r" * 129, required=False)


def test_ids_are_required_and_bounded() -> None:
    assert check_id("c" * 64, "conversation_id") == "c" * 64
    for bad in ("", "c" * 65):
        with pytest.raises(InvalidArgument) as refused:
            check_id(bad, "conversation_id")
        assert _field(refused) == "conversation_id"


def test_titles_and_queries_must_not_be_blank_or_too_long() -> None:
    assert check_title(" Team ☕ ") == " Team ☕ "  # kept as sent
    assert check_query("0% d") == "0% d"
    for check, limit in ((check_title, 256), (check_query, MAX_QUERY_CHARS)):
        for bad in ("", " \t\n", "q" * (limit + 1)):
            with pytest.raises(InvalidArgument):
                check(bad)


def test_member_ids_drop_duplicates_and_are_capped() -> None:
    assert check_member_ids(["bob", "carol", "bob"]) == ["bob", "carol"]
    many = [f"u{i}" for i in range(MAX_GROUP_MEMBERS)]
    assert len(check_member_ids(many + many)) == MAX_GROUP_MEMBERS
    with pytest.raises(InvalidArgument) as refused:
        check_member_ids([*many, "one-more"], "user_ids")
    assert _field(refused) == "user_ids"
    with pytest.raises(InvalidArgument):
        check_member_ids(["bob", ""])


def test_page_size_defaults_caps_and_refuses_negative() -> None:
    assert page_limit(0) == 50
    assert page_limit(7) == 7
    assert page_limit(10**9) == MAX_PAGE_SIZE == 500
    with pytest.raises(InvalidArgument) as refused:
        page_limit(-1)
    assert _field(refused) == "page_size"


@pytest.mark.parametrize(
    "value",
    [
        0.0,
        -0.0,
        0.1,
        0.1 + 0.2,
        1_700_000_000.123456789,
        math.nextafter(1_700_000_000.5, math.inf),
        sys.float_info.min,
        5e-324,  # the smallest subnormal
        sys.float_info.max,
        -1234.5678,
    ],
)
def test_cursor_times_round_trip_exactly(value: float) -> None:
    item = time_in_cursor(value)
    back = time_from_cursor(item)
    assert back == value and math.copysign(1.0, back) == math.copysign(1.0, value)


@pytest.mark.parametrize("item", [5, "", "garbage", "nan", "inf", "-inf", "0x1p+99999"])
def test_bad_cursor_times_are_bad_page_tokens(item: str | int) -> None:
    with pytest.raises(InvalidArgument) as refused:
        time_from_cursor(item)
    assert _field(refused) == "page_token"
