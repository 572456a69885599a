"""Forwarding rules to and from ``call.v1``: Duration timeouts, enums, defaults."""

from __future__ import annotations

import pytest
from google.protobuf import duration_pb2

from procall.api.call.v1 import call_pb2
from procall.calls.forwarding import (
    DEFAULT_NO_ANSWER_TIMEOUT,
    ForwardingCondition,
    ForwardingRule,
    check_rules,
)
from procall.errors import InvalidArgument
from procall.servers.codecs.forwarding import (
    rule_from_proto,
    rule_to_proto,
    rules_from_proto,
    rules_to_proto,
)


@pytest.mark.parametrize("condition", list(ForwardingCondition))
def test_conditions_have_the_wire_values(condition: ForwardingCondition) -> None:
    wire = call_pb2.ForwardingCondition.ValueType(condition.value)
    assert call_pb2.ForwardingCondition.Name(wire) == f"FORWARDING_CONDITION_{condition.name}"


def test_every_wire_condition_is_known() -> None:
    assert set(call_pb2.ForwardingCondition.values()) == {c.value for c in ForwardingCondition}


@pytest.mark.parametrize("timeout", [5.0, 20.0, 37.25, 119.999999999, 120.0])
@pytest.mark.parametrize("enabled", [True, False])
def test_a_rule_round_trips(timeout: float, enabled: bool) -> None:
    rule = ForwardingRule(ForwardingCondition.NO_ANSWER, "bob", timeout, enabled)
    proto = rule_to_proto(rule)
    assert proto.condition == call_pb2.FORWARDING_CONDITION_NO_ANSWER
    assert proto.target_user_id == "bob" and proto.enabled is enabled
    assert proto.HasField("no_answer_timeout")
    assert 0 <= proto.no_answer_timeout.nanos < 1_000_000_000
    back = rule_from_proto(call_pb2.ForwardingRule.FromString(proto.SerializeToString()))
    assert back.condition is ForwardingCondition.NO_ANSWER
    assert back.no_answer_timeout == pytest.approx(timeout, abs=1e-9)
    assert (back.target_user_id, back.enabled) == ("bob", enabled)


def test_the_timeout_is_a_duration() -> None:
    rule = ForwardingRule(ForwardingCondition.NO_ANSWER, "bob", 12.5)
    assert rule_to_proto(rule).no_answer_timeout == duration_pb2.Duration(
        seconds=12, nanos=500_000_000
    )


def test_an_unset_timeout_is_the_default() -> None:
    rule = rule_from_proto(
        call_pb2.ForwardingRule(
            condition=call_pb2.FORWARDING_CONDITION_NO_ANSWER, target_user_id="bob", enabled=True
        )
    )
    assert rule == ForwardingRule(ForwardingCondition.NO_ANSWER, "bob", DEFAULT_NO_ANSWER_TIMEOUT)


def test_an_explicit_zero_timeout_is_kept_for_the_domain_to_refuse() -> None:
    proto = call_pb2.ForwardingRule(
        condition=call_pb2.FORWARDING_CONDITION_NO_ANSWER,
        target_user_id="bob",
        no_answer_timeout=duration_pb2.Duration(),
    )
    assert rule_from_proto(proto).no_answer_timeout == 0.0
    with pytest.raises(InvalidArgument) as caught:
        check_rules("alice", [rule_from_proto(proto)])
    assert caught.value.violations[0].field == "rules[0].no_answer_timeout"


@pytest.mark.parametrize("value", [0, 99])
def test_unset_and_unknown_conditions_decode_as_unspecified(value: int) -> None:
    proto = call_pb2.ForwardingRule(target_user_id="bob")
    proto.condition = value  # type: ignore[assignment]  # a newer client's value
    rule = rule_from_proto(proto)
    assert rule.condition is ForwardingCondition.UNSPECIFIED
    with pytest.raises(InvalidArgument) as caught:
        check_rules("alice", [rule])
    assert caught.value.violations[0].field == "rules[0].condition"


def test_lists_keep_their_order() -> None:
    rules = [
        ForwardingRule(ForwardingCondition.OFFLINE, "carol"),
        ForwardingRule(ForwardingCondition.ALWAYS, "bob", enabled=False),
        ForwardingRule(ForwardingCondition.NO_ANSWER, "dave", 7.0),
    ]
    assert rules_from_proto(rules_to_proto(rules)) == rules
