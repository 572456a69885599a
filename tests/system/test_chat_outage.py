"""Fault test with real processes (issue #5): the chat database crashes under a steady stream
of messages across servers, one UCServer is killed (SIGKILL) and restarted during the outage,
then the database returns.

Expected: every acknowledged message is stored exactly once, in order per conversation, with
no gaps; every recipient with a live stream on the UCServer that stays up gets each message
of its conversations exactly once; recipients on the killed server find everything in their
history once the database is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from procall.api.chat.v1 import chat_pb2
from procall.api.chat.v1 import chat_service_pb2 as chat_pb
from procall.api.chat.v1 import chat_service_pb2_grpc as chat_grpc
from procall.api.directory.v1 import directory_pb2
from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.launch.datacenter import DataCenter
from tests.helpers.postgres import PostgresCluster
from tests.helpers.streams import EventStream
from tests.helpers.topology import PASSWORD, auth, login

pytestmark = [pytest.mark.system, pytest.mark.slow]

STEADY = "ucserver-1"  # stays up: its users are the live recipients
KILLED = "ucserver-2"  # killed with SIGKILL and restarted while the database is down
HOMES = {"alice": STEADY, "carol": STEADY, "erin": STEADY, "bob": KILLED, "dave": KILLED}
# label -> (kind, members); the first member creates it
CONVERSATIONS: dict[str, tuple[chat_pb2.ConversationKind.ValueType, tuple[str, ...]]] = {
    "ab": (chat_pb2.CONVERSATION_KIND_DIRECT, ("alice", "bob")),
    "cd": (chat_pb2.CONVERSATION_KIND_DIRECT, ("carol", "dave")),
    "all": (chat_pb2.CONVERSATION_KIND_GROUP, ("erin", "alice", "bob", "carol", "dave")),
    "mix": (chat_pb2.CONVERSATION_KIND_GROUP, ("carol", "bob", "erin", "dave")),
}
SENDERS = [  # (user, conversation): both directions across servers, both servers in groups
    ("alice", "ab"), ("bob", "ab"), ("carol", "cd"), ("dave", "cd"), ("erin", "all"),
    ("bob", "all"), ("dave", "mix"),
]  # fmt: skip
PAUSE = (0.02, 0.05)  # seconds between two sends of one sender
BEFORE, OUTAGE_BEFORE_RESTART, OUTAGE_AFTER_RESTART, AFTER = 3.0, 5.0, 5.0, 3.0
ACK_DEADLINE = 30.0  # one send may take this long (retries included) to be acknowledged
# codes a client retries (same request id) rather than treat as a refusal
RETRIED = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.CANCELLED,
}

Key = tuple[str, int]  # (conversation id, message id)
if TYPE_CHECKING:
    ChatStub = chat_grpc.ChatServiceAsyncStub  # exists for type checkers only


@pytest.fixture
def cluster(postgres_available: None) -> Iterator[PostgresCluster]:
    """A PostgreSQL of this test's own, which it crashes."""
    with PostgresCluster() as made:
        yield made


@pytest.fixture
def center(tmp_path: Path, cluster: PostgresCluster) -> Iterator[DataCenter]:
    """The DataCenter with PostgreSQL as its chat database (users stay in SQLite)."""
    dc = DataCenter(
        tmp_path / "dc",
        tls=False,  # plaintext clients, as before TLS became the default
        ucservers=2,
        media_servers=1,
        on_line=lambda _: None,
        seed_demo=False,
        extra_config={
            "database": {"chat_url": cluster.create_database()},
            "server": {"grace_seconds": 1.0},  # a quicker teardown
            "lookup": {"heartbeat_interval": 0.3, "heartbeat_ttl": 1.5},
            "directory": {
                "argon2_time_cost": 1,
                "argon2_memory_kib": 1024,
                "argon2_parallelism": 1,
            },
        },
    )
    dc.start()
    time.sleep(1.0)  # the UCServers' peer meshes learn each other (refresh every 0.3 s)
    try:
        yield dc
    finally:
        dc.stop()


def _address(dc: DataCenter, name: str) -> str:
    return next(e.address for e in dc.endpoints if e.name == name)


@dataclass
class Stats:
    """What the clients did, for the printed summary."""

    sent: int = 0
    attempts: int = 0
    logins: int = 0
    errors: Counter[str] = field(default_factory=Counter)


class Account:
    """A user's session on its home server, logged in again when the home moved."""

    def __init__(
        self, name: str, user_id: str, home: str, addresses: dict[str, str], stats: Stats
    ) -> None:
        self.name = name
        self.user_id = user_id
        self.home = home
        self.addresses = addresses
        self._stats = stats
        self._lock = asyncio.Lock()
        self.address = ""
        self.token = ""
        self._channel: grpc.aio.Channel | None = None
        self._chat: ChatStub | None = None

    async def session(self) -> tuple[ChatStub, tuple[tuple[str, str]]]:
        """The chat stub and call metadata; logs in (again) when needed."""
        async with self._lock:
            address = self.addresses[self.home]
            if self._chat is None or self.address != address or not self.token:
                self._stats.logins += 1
                reply = await login(address, self.name)
                if self._channel is not None:
                    await self._channel.close()
                self._channel = grpc.aio.insecure_channel(address)
                self._chat = chat_grpc.ChatServiceStub(self._channel)
                self.address, self.token = address, reply.session_token
            return self._chat, auth(self.token)

    def forget(self, token: str) -> None:
        """The session ``token`` was refused: log in again on the next call."""
        if self.token == token:
            self.token = ""

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()


@dataclass(frozen=True)
class Ack:
    """One acknowledged send."""

    key: Key
    text: str
    request_id: str
    sender: str
    sender_name: str
    attempts: int
    first_try: float  # monotonic time the first attempt began
    time: float  # monotonic time of the acknowledgement


class Sender:
    """Sends a steady stream into one conversation; retries each send with its request id."""

    def __init__(self, account: Account, label: str, conversation_id: str, stats: Stats) -> None:
        self.account = account
        self.label = label
        self.conversation_id = conversation_id
        self.acks: list[Ack] = []
        self._stats = stats

    async def run(self, stop: asyncio.Event) -> None:
        number = 0
        while not stop.is_set():  # a send under way is retried until acknowledged
            number += 1
            self._stats.sent += 1
            text = f"{self.account.name} in {self.label} #{number} ✓"
            self.acks.append(await self._until_acknowledged(text, uuid.uuid4().hex))
            await asyncio.sleep(random.uniform(*PAUSE))

    async def _until_acknowledged(self, text: str, request_id: str) -> Ack:
        request = chat_pb.SendMessageRequest(
            conversation_id=self.conversation_id, text=text, request_id=request_id
        )
        first_try = time.monotonic()
        deadline = first_try + ACK_DEADLINE
        attempts = 0
        while True:
            attempts += 1
            self._stats.attempts += 1
            token = self.account.token
            try:
                stub, metadata = await self.account.session()
                token = self.account.token
                reply = await stub.SendMessage(request, metadata=metadata, timeout=5)
            except grpc.aio.AioRpcError as error:
                self._stats.errors[error.code().name] += 1
                if error.code() not in RETRIED:
                    raise
                if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                    self.account.forget(token)
                assert time.monotonic() < deadline, (
                    f"{text!r} not acknowledged in {ACK_DEADLINE:.0f} s: {error.code().name} "
                    f"{error.details()}"
                )
                await asyncio.sleep(0.1)
                continue
            message = reply.message
            assert message.conversation_id == self.conversation_id and message.text == text
            return Ack(
                (message.conversation_id, message.message_id),
                text,
                request_id,
                self.account.user_id,
                self.account.name,
                attempts,
                first_try,
                time.monotonic(),
            )


class Receiver:
    """A user's Connect stream(s), recording every message_created received."""

    def __init__(self, account: Account) -> None:
        self.account = account
        # one list per stream: a stream broken by the kill is replaced by a new one
        self.runs: list[list[tuple[Key, str]]] = []
        self.errors: list[grpc.aio.AioRpcError] = []
        self._stream: EventStream | None = None
        self._pump: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self.close()
        await self.account.session()
        stream = EventStream(self.account.address, self.account.token)
        await stream.open()
        received: list[tuple[Key, str]] = []
        self.runs.append(received)
        self._stream = stream
        self._pump = asyncio.create_task(self._read(stream, received))

    async def _read(self, stream: EventStream, received: list[tuple[Key, str]]) -> None:
        while True:
            item = await stream.events.get()
            if isinstance(item, grpc.aio.AioRpcError):
                self.errors.append(item)
                return
            if item.WhichOneof("payload") == "message_created":
                message = item.message_created.message
                received.append(((message.conversation_id, message.message_id), message.text))

    def keys(self) -> list[Key]:
        return [key for run in self.runs for key, _ in run]

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None
        if self._stream is not None:
            await self._stream.close()
            self._stream = None


async def _create_users(center: DataCenter, directory: str) -> dict[str, str]:
    ids = {}
    async with center.operator_channel() as channel:
        stub = directory_grpc.DirectoryServiceStub(channel)
        for name, home in HOMES.items():
            reply = await stub.CreateUser(
                directory_pb.CreateUserRequest(
                    user=directory_pb2.User(
                        username=name, display_name=name.title(), home_server_id=home
                    ),
                    password=PASSWORD,
                )
            )
            ids[name] = reply.user.user_id
    return ids


async def _create_conversations(accounts: dict[str, Account]) -> dict[str, str]:
    made = {}
    for label, (kind, members) in CONVERSATIONS.items():
        stub, metadata = await accounts[members[0]].session()
        reply = await stub.CreateConversation(
            chat_pb.CreateConversationRequest(
                kind=kind,
                title=label if kind == chat_pb2.CONVERSATION_KIND_GROUP else "",
                member_user_ids=[accounts[m].user_id for m in members[1:]],
                request_id=uuid.uuid4().hex,
            ),
            metadata=metadata,
            timeout=10,
        )
        made[label] = reply.conversation.conversation_id
    return made


async def _history(account: Account, conversation_id: str) -> list[chat_pb2.Message]:
    """All stored messages of a conversation, oldest first (FORWARD pages)."""
    stub, metadata = await account.session()
    found: list[chat_pb2.Message] = []
    token = ""
    while True:
        reply = await stub.ListMessages(
            chat_pb.ListMessagesRequest(
                conversation_id=conversation_id,
                direction=chat_pb.LIST_DIRECTION_FORWARD,
                page_size=500,
                page_token=token,
            ),
            metadata=metadata,
            timeout=10,
        )
        found.extend(reply.messages)
        token = reply.next_page_token
        if not token:
            return found


async def _complete_history(
    readers: dict[str, Account], expected: dict[str, set[Key]], timeout: float
) -> dict[str, list[chat_pb2.Message]]:
    """Each conversation's history once it holds every acknowledged message."""
    deadline = time.monotonic() + timeout
    histories: dict[str, list[chat_pb2.Message]] = {}
    while True:
        missing = 0
        for conversation_id, reader in readers.items():
            try:
                histories[conversation_id] = await _history(reader, conversation_id)
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE, error
                missing = -1
                break
            stored = {(m.conversation_id, m.message_id) for m in histories[conversation_id]}
            missing += len(expected[conversation_id] - stored)
        if missing == 0:
            return histories
        assert time.monotonic() < deadline, (
            f"acknowledged messages still missing from the history after {timeout:.0f} s "
            f"({'database unavailable' if missing < 0 else f'{missing} missing'})"
        )
        await asyncio.sleep(0.25)


async def _settle(receivers: list[Receiver], expected: dict[str, set[Key]], timeout: float) -> None:
    """Wait (bounded) until the live receivers have at least what they should get."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(expected[r.account.name] <= set(r.keys()) for r in receivers):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)  # late duplicates would arrive now


_FLUSH_LINE = re.compile(
    r"^(\S+ \S+) .*?(?:reachable again \(outbox depth (\d+)\)|(outbox flushed to the chat))",
    re.MULTILINE,
)


def _flush_report(log: Path, since: datetime) -> str:
    """How many records a UCServer's outbox held when the database returned, and how long
    after ``since`` (local time, as in the log) it was flushed, from the server's log."""
    depth, flushed = "?", None
    for match in _FLUSH_LINE.finditer(log.read_text("utf-8", "replace")):
        at = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f")
        if at < since:
            continue
        if match[2] is not None and depth == "?":
            depth = match[2]
        elif match[3] is not None and flushed is None:
            flushed = at
    if flushed is None:
        return f"{depth} records, not flushed"
    return f"{depth} records flushed in {(flushed - since).total_seconds():.2f} s"


def _outbox_restart_depth(log: Path) -> str:
    found = re.findall(r"outbox holds (\d+) writes from before", log.read_text("utf-8", "replace"))
    return found[-1] if found else "?"


def _describe(ack: Ack, label_of: dict[str, str], marks: dict[str, float]) -> str:
    """A message with its sender and when it was sent, relative to the nearest fault."""

    def when(at: float) -> str:
        mark, moment = min(marks.items(), key=lambda item: abs(at - item[1]))
        return f"{at - moment:+.3f} s from {mark}"

    return (
        f"{label_of[ack.key[0]]}#{ack.key[1]} by {ack.sender_name} (first try "
        f"{when(ack.first_try)}, acknowledged {when(ack.time)}, {ack.attempts} attempts)"
    )


@dataclass
class World:
    """The users of the test, their streams and what the clients did."""

    addresses: dict[str, str]  # server id -> current address (the killed one changes)
    users: dict[str, Account]
    receivers: dict[str, Receiver]
    stats: Stats


@pytest.fixture
async def world(center: DataCenter) -> AsyncIterator[World]:
    stats = Stats()
    addresses = {name: _address(center, name) for name in (STEADY, KILLED)}
    ids = await _create_users(center, _address(center, "directory"))
    users = {name: Account(name, ids[name], HOMES[name], addresses, stats) for name in HOMES}
    # each user's receiving client is a session of its own: the sending session gets its
    # messages in the replies, not as events, while the user's other sessions get them all
    receivers = {
        name: Receiver(Account(name, ids[name], HOMES[name], addresses, stats)) for name in HOMES
    }
    made = World(addresses, users, receivers, stats)
    yield made
    for receiver in made.receivers.values():
        await receiver.close()
        await receiver.account.close()
    for account in users.values():
        await account.close()


def _check_stored(
    histories: dict[str, list[chat_pb2.Message]],
    expected: dict[str, set[Key]],
    by_key: dict[Key, Ack],
    label_of: dict[str, str],
) -> None:
    for cid, history in histories.items():
        label = label_of[cid]
        ids = [m.message_id for m in history]
        # stored exactly once, in order, without gaps: a send is retried with its request id
        # until acknowledged, so every id handed out belongs to an acknowledged message
        assert ids == list(range(1, len(ids) + 1)), f"ids of {label} are not 1..n: {ids}"
        # nothing stored that was not acknowledged (a send stored by an attempt whose answer
        # was lost has the id its acknowledged retry got, so it is no exception here)
        assert {(cid, i) for i in ids} == expected[cid], f"stored != acknowledged in {label}"
        for message in history:
            ack = by_key[(cid, message.message_id)]
            assert (message.text, message.request_id, message.sender_user_id) == (
                ack.text,
                ack.request_id,
                ack.sender,
            ), f"message {message.message_id} of {label} is not what was acknowledged"


def _check_live(
    live: list[Receiver],
    wanted: dict[str, set[Key]],
    by_key: dict[Key, Ack],
    describe: Callable[[Ack], str],
) -> None:
    """Live recipients (homed on the server that stayed up, one stream throughout): each
    acknowledged message of their conversations exactly once, with its text."""
    problems = []
    for receiver in live:
        name = receiver.account.name
        assert not receiver.errors, f"{name}'s stream broke: {receiver.errors[0]}"
        counts = Counter(receiver.keys())
        # a send retried after its server died is announced again (its first attempt may
        # or may not have left the server); each session takes a message id once
        problems += [
            f"{name} got twice: {describe(by_key[k])}" for k, n in sorted(counts.items()) if n > 1
        ]
        problems += [
            f"{name} missed: {describe(by_key[k])}" for k in sorted(wanted[name] - counts.keys())
        ]
        assert counts.keys() <= wanted[name], f"{name} got messages never acknowledged"
        for run in receiver.runs:
            assert all(by_key[key].text == text for key, text in run)
    assert not problems, "live delivery not exactly once:\n" + "\n".join(problems)


async def test_acknowledged_messages_survive_a_database_crash_and_a_killed_ucserver(
    center: DataCenter, cluster: PostgresCluster, world: World
) -> None:
    users, stats = world.users, world.stats
    conversations = await _create_conversations(users)
    label_of = {cid: label for label, cid in conversations.items()}
    members_of = {conversations[label]: members for label, (_, members) in CONVERSATIONS.items()}
    for receiver in world.receivers.values():
        await receiver.open()
    live = [r for r in world.receivers.values() if r.account.home == STEADY]
    restarted = [r for r in world.receivers.values() if r.account.home == KILLED]
    senders = [Sender(users[name], label, conversations[label], stats) for name, label in SENDERS]
    stop = asyncio.Event()
    started = time.monotonic()
    tasks = [asyncio.create_task(s.run(stop)) for s in senders]
    try:
        await asyncio.sleep(BEFORE)
        await asyncio.to_thread(cluster.stop, "immediate")
        outage = time.monotonic()
        await asyncio.sleep(OUTAGE_BEFORE_RESTART)
        await asyncio.to_thread(center.kill, KILLED)  # SIGKILL
        killed = time.monotonic()
        world.addresses[KILLED] = await asyncio.to_thread(center.restart, KILLED, "ucserver")
        back_up = time.monotonic()
        for receiver in restarted:  # their streams ended with the kill
            await receiver.open()
        await asyncio.sleep(OUTAGE_AFTER_RESTART)
        starting = datetime.now()  # naive local time, like the servers' log lines
        await asyncio.to_thread(cluster.start)
        database_back = time.monotonic()
        await asyncio.sleep(AFTER)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), ACK_DEADLINE + 5)
        stopped = time.monotonic()
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    acks = [ack for sender in senders for ack in sender.acks]
    by_key = {ack.key: ack for ack in acks}
    assert len(by_key) == len(acks), "two acknowledged sends got the same message id"
    expected = {cid: {k for k in by_key if k[0] == cid} for cid in conversations.values()}
    # every conversation is read by a member homed on the server that stayed up
    readers = {
        cid: next(users[m] for m in members if HOMES[m] == STEADY)
        for cid, members in members_of.items()
    }
    histories = await _complete_history(readers, expected, timeout=60)
    complete = time.monotonic()
    wanted = {
        name: {k for cid, keys in expected.items() if name in members_of[cid] for k in keys}
        for name in users
    }
    await _settle(live, wanted, timeout=10)
    # the kill's victims (bob, dave): once the database is back their own history has no gaps
    # either; what they got live (before the kill, after their reconnect) is checked below
    for receiver in restarted:
        for cid, members in members_of.items():
            if receiver.account.name in members:
                own = await _history(receiver.account, cid)
                assert [(m.message_id, m.text) for m in own] == [
                    (m.message_id, m.text) for m in histories[cid]
                ], f"{receiver.account.name} sees another history of {label_of[cid]}"

    logs = center.data_dir / "logs"
    flushes = ", ".join(
        f"{n}: {_flush_report(logs / f'{n}.log', starting)}" for n in (STEADY, KILLED)
    )
    print(
        f"\nsent={stats.sent}, acknowledged={len(acks)}, "
        f"stored={sum(len(h) for h in histories.values())}, "
        f"delivered={sum(len(run) for r in live for run in r.runs)} (live recipients on "
        f"{STEADY}; {sum(len(run) for r in restarted for run in r.runs)} more on {KILLED})\n"
        f"acknowledged during the outage="
        f"{sum(1 for ack in acks if outage <= ack.time < database_back)}, "
        f"attempts={stats.attempts}, retries={stats.attempts - stats.sent}, retried sends="
        f"{sum(1 for ack in acks if ack.attempts > 1)}, logins={stats.logins}, "
        f"errors={dict(stats.errors)}\n"
        f"outbox of {KILLED} at its restart="
        f"{_outbox_restart_depth(logs / f'{KILLED}.log')} records, "
        f"{KILLED} down {back_up - killed:.2f} s, "
        f"outboxes after PostgreSQL started: {flushes}; "
        f"history complete {complete - database_back:.2f} s after it "
        f"(senders stopped {stopped - database_back:.2f} s after it), "
        f"total {time.monotonic() - started:.1f} s"
    )

    _check_stored(histories, expected, by_key, label_of)
    for sender in senders:  # each sender's messages in the order it sent them
        ids = [ack.key[1] for ack in sender.acks]
        assert ids == sorted(ids), f"{sender.account.name} in {sender.label}: out of order"
    marks = {"outage": outage, "kill": killed, "restart": back_up, "DB back": database_back}
    _check_live(live, wanted, by_key, lambda ack: _describe(ack, label_of, marks))
    # recipients on the killed server (streams before the kill and after the restart): no
    # duplicates within a stream, nothing that was not acknowledged
    for receiver in restarted:
        for run in receiver.runs:
            keys = [key for key, _ in run]
            assert len(keys) == len(set(keys)), f"{receiver.account.name} got duplicates"
            assert all(by_key[key].text == text for key, text in run)
