"""Who may do what to a call, races between answers and pick-ups, and the ways a call ends."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable
from typing import Any

import grpc
import pytest
from aiortc import RTCRtpSender

from procall.api.call.v1 import call_pb2
from procall.api.call.v1 import call_service_pb2 as call_pb
from procall.api.directory.v1 import directory_pb2
from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.api.journal.v1 import journal_pb2
from procall.api.journal.v1 import journal_service_pb2 as journal_pb
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.servers.runtime.app import ServerApp
from tests.helpers.calls import Phone
from tests.helpers.media import LoopbackPeer
from tests.helpers.topology import PASSWORD, System, error_info, wait_for
from tests.integration.calls.conftest import RING_SECONDS

RINGING = call_pb2.CALL_STATE_RINGING
CONNECTED = call_pb2.CALL_STATE_CONNECTED
ENDED = call_pb2.CALL_STATE_ENDED
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


async def _failure(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    return failure.value.code(), error_info(failure.value).reason


async def _active(phone: Phone) -> list[str]:
    reply = await phone.calls.ListActiveCalls(
        call_pb.ListActiveCallsRequest(), metadata=phone.metadata
    )
    return [c.call_id for c in reply.calls]


async def _journal_kinds(phone: Phone) -> list[int]:
    reply = await phone.journal.ListJournalEntries(
        journal_pb.ListJournalEntriesRequest(), metadata=phone.metadata
    )
    return [e.kind for e in reply.entries]


@pytest.mark.usefixtures("media_servers")
async def test_bad_calls_get_a_reason_and_leave_no_call(system: System, phones: Any) -> None:
    alice, bob, carol = await phones("alice"), await phones("bob"), await phones("carol")
    unknown = call_pb.PlaceCallRequest(callee_user_id="no-such-user")
    assert await _failure(alice.calls.PlaceCall(unknown, metadata=alice.metadata)) == (
        grpc.StatusCode.NOT_FOUND,
        "NOT_FOUND",
    )
    nobody = call_pb.PlaceCallRequest(callee_username="nobody-by-that-name")
    assert await _failure(alice.calls.PlaceCall(nobody, metadata=alice.metadata)) == (
        grpc.StatusCode.NOT_FOUND,
        "NOT_FOUND",
    )
    self_call = call_pb.PlaceCallRequest(callee_user_id=alice.user_id)
    code, _ = await _failure(alice.calls.PlaceCall(self_call, metadata=alice.metadata))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    offline = call_pb.PlaceCallRequest(callee_user_id=system.users["dave"])  # never logged on
    assert await _failure(alice.calls.PlaceCall(offline, metadata=alice.metadata)) == (
        FAILED_PRECONDITION,
        "CALLEE_OFFLINE",
    )
    assert await _active(alice) == []

    placed = await alice.place(bob)
    # busy: bob already has a call ringing
    assert await _failure(carol.place(bob)) == (FAILED_PRECONDITION, "CALLEE_BUSY")
    assert await _active(carol) == []
    # someone not in the call neither sees it nor negotiates nor hangs up
    peer = LoopbackPeer(440.0)
    try:
        outsider = call_pb.NegotiateMediaRequest(
            call_id=placed.call_id, sdp_offer=await peer.offer()
        )
        code, _ = await _failure(carol.calls.NegotiateMedia(outsider, metadata=carol.metadata))
        assert code == grpc.StatusCode.NOT_FOUND
    finally:
        await peer.close()
    code, _ = await _failure(
        carol.calls.HangUp(call_pb.HangUpRequest(call_id=placed.call_id), metadata=carol.metadata)
    )
    assert code == grpc.StatusCode.NOT_FOUND
    # the callee cannot negotiate before answering; an SDP that does not parse is refused
    code, _ = await _failure(
        bob.calls.NegotiateMedia(
            call_pb.NegotiateMediaRequest(call_id=placed.call_id, sdp_offer="v=0\r\n"),
            metadata=bob.metadata,
        )
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, _ = await _failure(
        alice.calls.NegotiateMedia(
            call_pb.NegotiateMediaRequest(call_id=placed.call_id, sdp_offer="not an sdp"),
            metadata=alice.metadata,
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    pcmu_only = LoopbackPeer(440.0)
    try:  # an offer without Opus has no codec in common with the MediaServer
        pcmu_only.transceiver.setCodecPreferences(
            [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/PCMU"]
        )
        code, _ = await _failure(
            alice.calls.NegotiateMedia(
                call_pb.NegotiateMediaRequest(
                    call_id=placed.call_id, sdp_offer=await pcmu_only.offer()
                ),
                metadata=alice.metadata,
            )
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await pcmu_only.close()
    # the call is still ringing after all that; the caller cancels it
    ended = await alice.calls.HangUp(
        call_pb.HangUpRequest(call_id=placed.call_id), metadata=alice.metadata
    )
    assert ended.call.end_reason == call_pb2.END_REASON_CANCELED
    assert (await bob.call_event(placed.call_id, ENDED)).end_reason == (
        call_pb2.END_REASON_CANCELED
    )
    # a hang-up of an ended call, an answer of it
    hang_up = call_pb.HangUpRequest(call_id=placed.call_id)
    assert await _failure(alice.calls.HangUp(hang_up, metadata=alice.metadata)) == (
        FAILED_PRECONDITION,
        "CALL_ENDED",
    )
    answer = call_pb.AnswerCallRequest(call_id=placed.call_id)
    assert await _failure(bob.calls.AnswerCall(answer, metadata=bob.metadata)) == (
        FAILED_PRECONDITION,
        "CALL_ENDED",
    )
    assert await _active(alice) == [] and await _active(bob) == []

    async def missed() -> bool:
        return await _journal_kinds(bob) == [journal_pb2.JOURNAL_ENTRY_KIND_CALL_MISSED]

    await wait_for(missed)


async def test_no_media_server_fails_the_call_with_media_unavailable(
    system: System, phones: Any
) -> None:
    alice, bob = await phones("alice"), await phones("bob")
    assert await _failure(alice.place(bob)) == (grpc.StatusCode.UNAVAILABLE, "MEDIA_UNAVAILABLE")
    assert await _active(alice) == [] and await _active(bob) == []


@pytest.mark.usefixtures("media_servers")
async def test_the_first_of_two_answers_wins_and_the_other_client_stops_ringing(
    phones: Any,
) -> None:
    alice, bob_desk, bob_laptop = await phones("alice"), await phones("bob"), await phones("bob")
    placed = await alice.place(bob_desk)
    await bob_desk.call_event(placed.call_id, RINGING)
    await bob_laptop.call_event(placed.call_id, RINGING)
    request = call_pb.AnswerCallRequest(call_id=placed.call_id)
    results = await asyncio.gather(
        bob_desk.calls.AnswerCall(request, metadata=bob_desk.metadata),
        bob_laptop.calls.AnswerCall(request, metadata=bob_laptop.metadata),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, call_pb.AnswerCallResponse)]
    lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(won) == 1 and len(lost) == 1
    assert lost[0].code() == FAILED_PRECONDITION
    assert error_info(lost[0]).reason == "CALL_NOT_RINGING"
    winner = won[0].call.answered_session_id
    assert winner in (bob_desk.session_id, bob_laptop.session_id)
    # both of bob's clients learn who took it (the other one stops ringing)
    for phone in (bob_desk, bob_laptop):
        seen = await phone.call_event(placed.call_id, CONNECTED)
        assert seen.answered_session_id == winner
    # only the answering client may negotiate the media
    other = bob_laptop if winner == bob_desk.session_id else bob_desk
    peer = LoopbackPeer(880.0)
    try:
        request_media = call_pb.NegotiateMediaRequest(
            call_id=placed.call_id, sdp_offer=await peer.offer()
        )
        code, _ = await _failure(other.calls.NegotiateMedia(request_media, metadata=other.metadata))
        assert code == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await peer.close()


@pytest.mark.usefixtures("media_servers")
async def test_decline_and_no_answer_end_the_call_and_are_journaled(phones: Any) -> None:
    alice, bob = await phones("alice"), await phones("bob")
    declined = await alice.place(bob)
    await bob.call_event(declined.call_id, RINGING)
    reply = await bob.calls.DeclineCall(
        call_pb.DeclineCallRequest(call_id=declined.call_id), metadata=bob.metadata
    )
    assert reply.call.end_reason == call_pb2.END_REASON_DECLINED
    assert (await alice.call_event(declined.call_id, ENDED)).end_reason == (
        call_pb2.END_REASON_DECLINED
    )

    unanswered = await alice.place(bob)
    ended = await alice.call_event(unanswered.call_id, ENDED, timeout=RING_SECONDS + 5)
    assert ended.end_reason == call_pb2.END_REASON_NO_ANSWER
    assert ended.end_time.ToSeconds() - ended.create_time.ToSeconds() >= RING_SECONDS - 1

    async def journaled() -> bool:
        return sorted(await _journal_kinds(bob)) == sorted(
            [
                journal_pb2.JOURNAL_ENTRY_KIND_CALL_DECLINED,
                journal_pb2.JOURNAL_ENTRY_KIND_CALL_MISSED,
            ]
        )

    await wait_for(journaled)
    placed = await _journal_kinds(alice)
    assert placed == [journal_pb2.JOURNAL_ENTRY_KIND_CALL_PLACED] * 2


@pytest.mark.usefixtures("media_servers")
async def test_a_pick_up_race_has_exactly_one_winner(system: System, phones: Any) -> None:
    async with system.operator_channel(system.directory) as channel:
        await directory_grpc.DirectoryServiceStub(channel).CreatePickupGroup(
            directory_pb.CreatePickupGroupRequest(
                pickup_group=directory_pb2.PickupGroup(
                    name="support",
                    member_user_ids=[system.users[n] for n in ("bob", "carol", "dave")],
                )
            )
        )
    alice, bob = await phones("alice"), await phones("bob")
    carol, dave, erin = await phones("carol"), await phones("dave"), await phones("erin")
    placed = await alice.place(bob)
    await bob.call_event(placed.call_id, RINGING)
    # erin is in no pick-up group with bob and has no delegation
    code, _ = await _failure(
        erin.calls.PickUpCall(
            call_pb.PickUpCallRequest(call_id=placed.call_id), metadata=erin.metadata
        )
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    request = call_pb.PickUpCallRequest(call_id=placed.call_id)
    results = await asyncio.gather(
        carol.calls.PickUpCall(request, metadata=carol.metadata),
        dave.calls.PickUpCall(request, metadata=dave.metadata),
        bob.calls.AnswerCall(
            call_pb.AnswerCallRequest(call_id=placed.call_id), metadata=bob.metadata
        ),
        return_exceptions=True,
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(won) == 1 and len(lost) == 2, results
    assert {(e.code(), error_info(e).reason) for e in lost} == {
        (FAILED_PRECONDITION, "CALL_NOT_RINGING")
    }
    answered_by = won[0].call.answered_by_user_id  # type: ignore[union-attr]
    assert (await alice.call_event(placed.call_id, CONNECTED)).answered_by_user_id == answered_by


@pytest.mark.usefixtures("media_servers")
async def test_logging_out_ends_the_users_calls(system: System, phones: Any) -> None:
    alice, bob = await phones("alice"), await phones("bob")
    placed = await alice.place(bob)
    await bob.calls.AnswerCall(
        call_pb.AnswerCallRequest(call_id=placed.call_id), metadata=bob.metadata
    )
    async with grpc.aio.insecure_channel(bob.address) as channel:
        await session_grpc.SessionServiceStub(channel).Logout(
            session_pb.LogoutRequest(), metadata=bob.metadata
        )
    ended = await alice.call_event(placed.call_id, ENDED)
    assert ended.end_reason == call_pb2.END_REASON_HANGUP
    assert await _active(alice) == []


async def test_concurrent_calls_are_spread_over_the_media_servers(
    phones: Any, media_servers: dict[str, ServerApp]
) -> None:
    alice, bob = await phones("alice"), await phones("bob")
    carol, dave = await phones("carol"), await phones("dave")
    first = await alice.place(bob)
    second = await carol.place(dave)
    # the Lookup weighs each server's calls (reserved ones included): one call on each
    assert {first.media_server_id, second.media_server_id} == set(media_servers)


async def test_a_hundred_set_ups_spread_over_the_media_servers(
    system: System, phones: Any, media_servers: dict[str, ServerApp]
) -> None:
    async with system.operator_channel(system.directory) as channel:
        stub = directory_grpc.DirectoryServiceStub(channel)
        for i in range(10):
            made = await stub.CreateUser(
                directory_pb.CreateUserRequest(
                    user=directory_pb2.User(
                        username=f"agent{i}", display_name=f"Agent {i}", home_server_id="uc-2"
                    ),
                    password=PASSWORD,
                )
            )
            system.users[f"agent{i}"] = made.user.user_id
    alice = await phones("alice")
    agents = [await phones(f"agent{i}", "uc-2") for i in range(10)]
    placed: list[call_pb2.Call] = []
    for i in range(100):
        if len(placed) >= 10:  # ten calls at a time: the oldest ends before the next
            oldest = placed[-10]
            await alice.calls.HangUp(
                call_pb.HangUpRequest(call_id=oldest.call_id), metadata=alice.metadata
            )
        placed.append(await alice.place(agents[i % 10]))
    counts = Counter(c.media_server_id for c in placed)
    assert set(counts) == set(media_servers)
    assert all(40 <= n <= 60 for n in counts.values()), counts
