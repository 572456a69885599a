"""Field rules of the Directory."""

from __future__ import annotations

import pytest

from procall.directory import validation as v
from procall.errors import InvalidArgument


@pytest.mark.parametrize(
    ("check", "good", "bad"),
    [
        (v.check_username, ["alice", "a.b-c_d", "A1"], ["", "-x", "with space", "ü", "x" * 65]),
        (
            v.check_mail,
            ["", "a@b.de", "first.last+tag@sub.example.com"],
            ["a@b", "@b.de", "a b@c.de"],
        ),
        (v.check_phone_number, ["", "+49 (231) 555-01", "100"], ["abc", "+", "1\n2"]),
        (v.check_home_server_id, ["", "ucserver-1", "uc:2.site"], ["uc 1", "-x", "a/b"]),
        (v.check_display_name, ["Jürgen Özdemir", " padded "], ["", "  ", "tab\there"]),
        (v.check_group_name, ["Sales team", "g-1"], ["", "a/b", "x" * 129]),
    ],
)
def test_good_values_pass_and_bad_ones_name_the_field(check, good, bad) -> None:  # type: ignore[no-untyped-def]
    for value in good:
        assert check("f", value) == value.strip()
    for value in bad:
        with pytest.raises(InvalidArgument) as failure:
            check("user.f", value)
        assert [x.field for x in failure.value.violations] == ["user.f"]


def test_searchable_values() -> None:
    assert v.is_searchable("ali")
    for text in ("", "a\x00", "x" * 257):
        assert not v.is_searchable(text)


def test_keys() -> None:
    assert v.normalize_key("  ÖZdemir ") == "özdemir"
    assert v.phone_digits("+49 (231) 555-01") == "4923155501"
