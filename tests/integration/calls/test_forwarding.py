"""Forwarding of each kind through real UCServers, loops, and delegates setting rules."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from procall.api.call.v1 import call_pb2
from procall.api.call.v1 import call_service_pb2 as call_pb
from procall.api.directory.v1 import directory_pb2
from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.api.journal.v1 import journal_pb2
from procall.api.journal.v1 import journal_service_pb2 as journal_pb
from tests.helpers.calls import Phone
from tests.helpers.topology import System, error_info, wait_for

pytestmark = pytest.mark.usefixtures("media_servers")

RINGING = call_pb2.CALL_STATE_RINGING
ENDED = call_pb2.CALL_STATE_ENDED


def _rule(
    condition: call_pb2.ForwardingCondition.ValueType, target: Phone | str, seconds: int = 0
) -> call_pb2.ForwardingRule:
    return call_pb2.ForwardingRule(
        condition=condition,
        target_user_id=target if isinstance(target, str) else target.user_id,
        enabled=True,
        no_answer_timeout=duration_pb2.Duration(seconds=seconds) if seconds else None,
    )


async def _forward(phone: Phone, *rules: call_pb2.ForwardingRule, user_id: str = "") -> None:
    await phone.calls.SetForwarding(
        call_pb.SetForwardingRequest(user_id=user_id, rules=list(rules)), metadata=phone.metadata
    )


async def test_unconditional_forwarding_rings_the_target_and_journals_it(phones: Any) -> None:
    alice, bob, carol = await phones("alice"), await phones("bob"), await phones("carol")
    await _forward(bob, _rule(call_pb2.FORWARDING_CONDITION_ALWAYS, carol))
    placed = await alice.place(bob)
    assert placed.target_user_id == carol.user_id
    assert list(placed.forwarded_from_user_ids) == [bob.user_id]
    await carol.call_event(placed.call_id, RINGING)
    await carol.calls.AnswerCall(
        call_pb.AnswerCallRequest(call_id=placed.call_id), metadata=carol.metadata
    )
    await alice.calls.HangUp(call_pb.HangUpRequest(call_id=placed.call_id), metadata=alice.metadata)

    async def forwarded() -> bool:
        reply = await bob.journal.ListJournalEntries(
            journal_pb.ListJournalEntriesRequest(), metadata=bob.metadata
        )
        return [e.kind for e in reply.entries] == [journal_pb2.JOURNAL_ENTRY_KIND_CALL_FORWARDED]

    await wait_for(forwarded)


async def test_busy_and_offline_forwarding(system: System, phones: Any) -> None:
    alice, bob, carol, erin = (
        await phones("alice"),
        await phones("bob"),
        await phones("carol"),
        await phones("erin"),
    )
    # dave never logs on: his OFFLINE rule sends calls to erin
    dave_id = system.users["dave"]
    await _forward(bob, _rule(call_pb2.FORWARDING_CONDITION_BUSY, erin))
    first = await alice.place(bob)
    second = await carol.place(bob)  # bob is busy (his first call still rings)
    assert first.target_user_id == bob.user_id
    assert second.target_user_id == erin.user_id
    await carol.calls.HangUp(call_pb.HangUpRequest(call_id=second.call_id), metadata=carol.metadata)
    await alice.calls.HangUp(call_pb.HangUpRequest(call_id=first.call_id), metadata=alice.metadata)

    async with system.operator_channel(system.directory) as channel:
        await directory_grpc.DirectoryServiceStub(channel).CreateDelegation(
            directory_pb.CreateDelegationRequest(
                delegation=directory_pb2.Delegation(
                    principal_user_id=dave_id,
                    delegate_user_id=erin.user_id,
                    scopes=[directory_pb2.DELEGATION_SCOPE_CALLS_FORWARD],
                )
            )
        )
    # erin, dave's delegate, sets his rule; alice may not
    await _forward(erin, _rule(call_pb2.FORWARDING_CONDITION_OFFLINE, erin), user_id=dave_id)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _forward(alice, _rule(call_pb2.FORWARDING_CONDITION_OFFLINE, alice), user_id=dave_id)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    reply = await alice.calls.PlaceCall(
        call_pb.PlaceCallRequest(callee_user_id=dave_id), metadata=alice.metadata
    )
    assert reply.call.target_user_id == erin.user_id
    assert (await erin.call_event(reply.call.call_id, RINGING)).callee_user_id == dave_id


async def test_no_answer_forwarding_moves_the_ringing_call(phones: Any) -> None:
    alice, bob, carol = await phones("alice"), await phones("bob"), await phones("carol")
    await _forward(bob, _rule(call_pb2.FORWARDING_CONDITION_NO_ANSWER, carol, seconds=5))
    placed = await alice.place(bob)
    assert placed.target_user_id == bob.user_id
    moved = await carol.call_event(placed.call_id, RINGING, timeout=10)
    assert moved.target_user_id == carol.user_id
    assert list(moved.forwarded_from_user_ids) == [bob.user_id]
    # bob's client learns the call moved on (it stops ringing there)
    seen = await bob.call_event(placed.call_id, RINGING, timeout=10)
    while seen.target_user_id != carol.user_id:
        seen = await bob.call_event(placed.call_id, RINGING, timeout=10)
    answer = call_pb.AnswerCallRequest(call_id=placed.call_id)
    with pytest.raises(grpc.aio.AioRpcError) as late:
        await bob.calls.AnswerCall(answer, metadata=bob.metadata)
    assert late.value.code() == grpc.StatusCode.NOT_FOUND  # no longer his call
    reply = await carol.calls.AnswerCall(answer, metadata=carol.metadata)
    assert reply.call.answered_by_user_id == carol.user_id


async def test_forwarding_loops_are_refused_or_stopped(phones: Any) -> None:
    alice, bob, carol = await phones("alice"), await phones("bob"), await phones("carol")
    await _forward(bob, _rule(call_pb2.FORWARDING_CONDITION_ALWAYS, carol))
    with pytest.raises(grpc.aio.AioRpcError) as loop:
        await _forward(carol, _rule(call_pb2.FORWARDING_CONDITION_ALWAYS, bob))
    assert loop.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # a loop through a conditional rule is cut at call time: the call rings where it stops
    await _forward(carol, _rule(call_pb2.FORWARDING_CONDITION_BUSY, bob))
    first = await alice.place(carol)  # carol now has a ringing call: busy
    assert first.target_user_id == carol.user_id
    await alice.calls.HangUp(call_pb.HangUpRequest(call_id=first.call_id), metadata=alice.metadata)
    placed = await alice.place(bob)  # bob -> carol (always); carol is free: rings there
    assert placed.target_user_id == carol.user_id
    # forwarding back to the caller never happens
    await _forward(carol, _rule(call_pb2.FORWARDING_CONDITION_ALWAYS, alice))
    await alice.calls.HangUp(call_pb.HangUpRequest(call_id=placed.call_id), metadata=alice.metadata)
    again = await alice.place(bob)
    assert again.target_user_id == carol.user_id
    rules = await bob.calls.GetForwarding(call_pb.GetForwardingRequest(), metadata=bob.metadata)
    assert [r.target_user_id for r in rules.rules] == [carol.user_id]
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await _forward(bob, _rule(call_pb2.FORWARDING_CONDITION_UNSPECIFIED, carol))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(bad.value).reason == "INVALID_FIELD"
