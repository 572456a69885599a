"""A raw Connect-stream client that follows Redirect events like the SDK does, and counts
the chat messages it receives (tests of moving users live)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter

import grpc

from procall.api.admin.v1 import admin_service_pb2 as admin_pb
from procall.api.admin.v1 import admin_service_pb2_grpc as admin_grpc
from procall.api.chat.v1 import chat_pb2
from procall.api.chat.v1 import chat_service_pb2 as chat_pb
from procall.api.chat.v1 import chat_service_pb2_grpc as chat_grpc
from procall.servers.runtime.app import ServerApp
from tests.helpers.streams import EventStream
from tests.helpers.topology import ChannelFor, auth, mint_token

__all__ = ["FollowingClient", "admin_stub", "group_chat", "wait_operation"]


class FollowingClient:
    """One session's event stream: follows redirects (new home, new token) and resumes
    after its last event; records every chat message and every sequence it saw."""

    def __init__(
        self, address: str, token: str, channel_for: ChannelFor = grpc.aio.insecure_channel
    ) -> None:
        """``channel_for`` makes the channels (``system.channel`` for a TLS system)."""
        self._channel_for = channel_for
        self.address = address
        self.token = token
        self.texts: Counter[str] = Counter()
        self.sequences: list[int] = []
        self.redirects = 0
        self.resumed = 0
        self._resume = ""
        self._stream: EventStream | None = None
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    async def start(self) -> None:
        """Open the first stream and follow it in the background."""
        self._stream = EventStream(self.address, self.token, self._channel_for)
        await self._stream.open()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            while True:
                assert self._stream is not None
                event = await self._stream.next(timeout=60)
                kind = event.WhichOneof("payload")
                if kind == "redirect":
                    self.redirects += 1
                    self.address = event.redirect.server.address
                    self.token = event.redirect.session_token or self.token
                    await self._stream.close()
                    self._stream = EventStream(
                        self.address, self.token, self._channel_for, resume_token=self._resume
                    )
                    welcome = await self._stream.open()
                    assert welcome.welcome.resumed, "the new home did not resume the session"
                    self.resumed += 1
                    continue
                if event.sequence:
                    self.sequences.append(event.sequence)
                    self._resume = event.resume_token
                if kind == "message_created":
                    self.texts[event.message_created.message.text] += 1
                    if len(self.sequences) % 16 == 0:
                        await self._stream.ack(event.sequence)
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # the test reports it
            self.error = error

    async def wait_for(self, texts: set[str], timeout: float = 30) -> None:
        """Until every text of ``texts`` arrived (or fail with what is missing)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not texts <= set(self.texts):
            assert self.error is None, f"the stream failed: {self.error!r}"
            assert asyncio.get_running_loop().time() < deadline, (
                f"missing {sorted(texts - set(self.texts))[:5]}"
            )
            await asyncio.sleep(0.02)

    def check_exactly_once(self, texts: set[str]) -> None:
        """Each text arrived once, nothing else did, and the sequence has no gap or repeat."""
        assert set(self.texts) == texts
        doubled = {t: n for t, n in self.texts.items() if n != 1}
        assert not doubled, f"received more than once: {doubled}"
        first = self.sequences[0]
        assert self.sequences == list(range(first, first + len(self.sequences)))

    async def close(self) -> None:
        """Stop following."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._stream is not None:
            await self._stream.close()


def admin_stub(
    server: ServerApp, channel_for: ChannelFor = grpc.aio.insecure_channel
) -> tuple[admin_grpc.AdminServiceStub, grpc.aio.Channel, str]:
    """An AdminService stub on ``server`` with an administrator's token."""
    channel = channel_for(server.address)
    token = mint_token(server, user_id="u-admin", username="admin", admin=True)
    return admin_grpc.AdminServiceStub(channel), channel, token


async def wait_operation(
    stub: admin_grpc.AdminServiceStub, token: str, operation_id: str, timeout: float = 60
) -> admin_pb.GetMoveOperationResponse:
    """Poll the operation until it is done."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        reply = await stub.GetMoveOperation(
            admin_pb.GetMoveOperationRequest(operation_id=operation_id), metadata=auth(token)
        )
        if reply.operation.done:
            return reply
        assert asyncio.get_running_loop().time() < deadline, "the operation did not finish"
        await asyncio.sleep(0.1)


async def group_chat(
    address: str,
    token: str,
    member_ids: list[str],
    channel_for: ChannelFor = grpc.aio.insecure_channel,
) -> str:
    """A group conversation of the caller with ``member_ids``; its id."""
    async with channel_for(address) as channel:
        reply = await chat_grpc.ChatServiceStub(channel).CreateConversation(
            chat_pb.CreateConversationRequest(
                kind=chat_pb2.CONVERSATION_KIND_GROUP,
                title="moves",
                member_user_ids=member_ids,
                request_id=uuid.uuid4().hex,
            ),
            metadata=auth(token),
        )
    return reply.conversation.conversation_id


async def send(
    stub: chat_grpc.ChatServiceStub, token: str, conversation_id: str, text: str
) -> None:
    """Post ``text``."""
    await stub.SendMessage(
        chat_pb.SendMessageRequest(
            conversation_id=conversation_id, text=text, request_id=uuid.uuid4().hex
        ),
        metadata=auth(token),
    )
