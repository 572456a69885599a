"""Forwarding rules between the domain (``procall.calls.forwarding``) and ``call.v1``.

A rule's ``no_answer_timeout`` is a ``Duration`` on the wire and float seconds in the
domain; an unset one means the default (20 s). A condition this release does not know
decodes as ``UNSPECIFIED``, which the domain refuses naming the rule's field.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from google.protobuf import duration_pb2

from procall.api.call.v1 import call_pb2
from procall.calls.forwarding import (
    DEFAULT_NO_ANSWER_TIMEOUT,
    ForwardingCondition,
    ForwardingRule,
)

__all__ = ["rule_from_proto", "rule_to_proto", "rules_from_proto", "rules_to_proto"]

_NANOS = 1_000_000_000
_KNOWN = {condition.value for condition in ForwardingCondition}


def _duration(seconds: float) -> duration_pb2.Duration:
    whole = math.floor(seconds)
    nanos = round((seconds - whole) * _NANOS)
    if nanos >= _NANOS:
        whole, nanos = whole + 1, nanos - _NANOS
    return duration_pb2.Duration(seconds=whole, nanos=nanos)


def rule_to_proto(rule: ForwardingRule) -> call_pb2.ForwardingRule:
    """The wire form of a rule."""
    return call_pb2.ForwardingRule(
        condition=call_pb2.ForwardingCondition.ValueType(int(rule.condition)),
        target_user_id=rule.target_user_id,
        no_answer_timeout=_duration(rule.no_answer_timeout),
        enabled=rule.enabled,
    )


def rule_from_proto(proto: call_pb2.ForwardingRule) -> ForwardingRule:
    """The domain form of a rule a client sent (checked by the domain, not here)."""
    timeout = DEFAULT_NO_ANSWER_TIMEOUT
    if proto.HasField("no_answer_timeout"):
        timeout = proto.no_answer_timeout.seconds + proto.no_answer_timeout.nanos / _NANOS
    condition = int(proto.condition)
    return ForwardingRule(
        condition=ForwardingCondition(condition if condition in _KNOWN else 0),
        target_user_id=proto.target_user_id,
        no_answer_timeout=timeout,
        enabled=proto.enabled,
    )


def rules_to_proto(rules: Iterable[ForwardingRule]) -> list[call_pb2.ForwardingRule]:
    """The wire form of a list of rules, in order."""
    return [rule_to_proto(rule) for rule in rules]


def rules_from_proto(protos: Iterable[call_pb2.ForwardingRule]) -> list[ForwardingRule]:
    """The domain form of the rules a client sent, in order."""
    return [rule_from_proto(proto) for proto in protos]
