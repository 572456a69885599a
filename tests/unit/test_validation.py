"""The field checks every area shares: ids, id lists, free text, idempotency keys."""

from __future__ import annotations

import pytest

from procall.errors import InvalidArgument
from procall.validation import (
    MAX_ID_CHARS,
    MAX_REQUEST_ID_CHARS,
    check_id,
    check_ids,
    check_request_id,
    check_text,
    reject_nul,
)


def _field(error: pytest.ExceptionInfo[InvalidArgument]) -> str:
    (violation,) = error.value.violations
    return violation.field


def test_ids_are_required_bounded_and_free_of_nul() -> None:
    assert check_id("u" * MAX_ID_CHARS, "user_id") == "u" * MAX_ID_CHARS
    for bad in ("", "u" * (MAX_ID_CHARS + 1), "a\x00b"):
        with pytest.raises(InvalidArgument) as refused:
            check_id(bad, "user_id")
        assert _field(refused) == "user_id"


def test_id_lists_keep_order_and_repeats_and_are_capped() -> None:
    assert check_ids(["b", "a", "b"], "user_ids", max_count=3) == ["b", "a", "b"]
    assert check_ids([], "user_ids", max_count=3) == []
    with pytest.raises(InvalidArgument) as too_many:
        check_ids(["a", "b", "c", "d"], "user_ids", max_count=3)
    assert _field(too_many) == "user_ids"
    assert "at most 3" in too_many.value.message
    with pytest.raises(InvalidArgument) as empty:
        check_ids(["a", ""], "user_ids", max_count=3)
    assert _field(empty) == "user_ids"


def test_text_is_limited_in_utf8_bytes_and_named_by_its_field() -> None:
    assert check_text("€€", "entry.text", 6) == "€€"
    with pytest.raises(InvalidArgument) as refused:
        check_text("€€€", "entry.text", 8)
    assert _field(refused) == "entry.text"
    assert "is 9 bytes" in refused.value.message
    with pytest.raises(InvalidArgument):
        check_text("", "entry.text", 8)


def test_request_ids_required_or_optional_and_bounded() -> None:
    assert check_request_id("", required=False) == ""
    assert check_request_id("r" * MAX_REQUEST_ID_CHARS) == "r" * MAX_REQUEST_ID_CHARS
    for bad in ("", "r" * (MAX_REQUEST_ID_CHARS + 1), "x\x00"):
        with pytest.raises(InvalidArgument) as refused:
            check_request_id(bad)
        assert _field(refused) == "request_id"


def test_nul_is_refused_naming_the_field() -> None:
    reject_nul("fine", "note")
    with pytest.raises(InvalidArgument) as refused:
        reject_nul("no\x00pe", "note")
    assert _field(refused) == "note"
    assert "NUL" in refused.value.message
