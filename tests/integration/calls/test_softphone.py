"""The SDK softphone with real servers and real aiortc peers on loopback: two clients on two
UCServers hear each other's tone, record it to a WAV file, and follow their call by
themselves when the MediaServer carrying it stops."""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import io
import os
import signal
import sys
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from procall.client import (
    CallChanged,
    ClientEvent,
    ClientOptions,
    ForwardingRule,
    ProcallClient,
    ProcallClientError,
    Softphone,
    ToneSource,
)
from procall.client.cli import add_client_parser, run_client
from procall.media import LOOPBACK
from procall.servers.runtime.app import ServerApp
from tests.helpers.calls import ALICE_HZ, BOB_HZ
from tests.helpers.media import tone_power
from tests.helpers.topology import PASSWORD, System
from tests.integration.calls.conftest import HOMES

ROOT = Path(__file__).resolve().parents[3]
FAST = ClientOptions(backoff_initial=0.05, backoff_max=0.5, ack_interval=0.1)


class Party:
    """A logged-on SDK client whose events feed its softphone (when it has one)."""

    def __init__(self, client: ProcallClient) -> None:
        self.client = client
        self.phone: Softphone | None = None
        self.events: asyncio.Queue[ClientEvent] = asyncio.Queue()
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        async for event in self.client.events():
            if self.phone is not None:
                self.phone.on_event(event)
            self.events.put_nowait(event)

    async def call_state(self, state: str, call_id: str = "", timeout: float = 10) -> CallChanged:
        """The next CallChanged in ``state`` (of ``call_id`` when given)."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.events.get()
                if not isinstance(event, CallChanged) or call_id not in ("", event.call_id):
                    continue
                if event.state == state:
                    return event

    async def close(self) -> None:
        if self.phone is not None:
            await self.phone.stop()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.client.logout()


@pytest.fixture
async def parties(system: System) -> AsyncIterator[Callable[[str], Any]]:
    made: list[Party] = []

    async def party(name: str) -> Party:
        address = system.ucservers[dict(HOMES)[name]].address
        made.append(Party(await ProcallClient.login(address, name, PASSWORD, options=FAST)))
        return made[-1]

    yield party
    for each in made:
        await each.close()


def _hears(phone: Softphone, wanted: float, own: float) -> None:
    samples = phone.recent(0.8)
    assert len(samples) >= 0.7 * 48_000
    assert tone_power(samples, wanted) > 100 * tone_power(samples, own)


async def _connected_call(
    alice: Party, bob: Party, tmp: Path, system: System
) -> tuple[Softphone, Softphone]:
    call = await alice.client.place_call(system.users["bob"])
    assert call.caller_user_id == system.users["alice"] and call.state in ("initiating", "ringing")
    alice.phone = Softphone(
        alice.client, ToneSource(ALICE_HZ), record_to=tmp / "alice.wav", host_addresses=LOOPBACK
    )
    assert await alice.phone.start(call.call_id) == call.media_server_id  # while it rings
    ringing = await bob.call_state("ringing")
    answered = await bob.client.answer_call(ringing.call_id)
    assert answered.state == "connected" and answered.answered_by_user_id == system.users["bob"]
    bob.phone = Softphone(
        bob.client, ToneSource(BOB_HZ), record_to=tmp / "bob.wav", host_addresses=LOOPBACK
    )
    await bob.phone.start(call.call_id)
    await asyncio.gather(alice.phone.wait_for_audio(), bob.phone.wait_for_audio())
    await asyncio.sleep(1.2)
    return alice.phone, bob.phone


async def test_two_softphones_hear_each_other_and_record_a_wav_file(
    parties: Any, media_servers: dict[str, ServerApp], system: System, tmp_path: Path
) -> None:
    alice, bob = await parties("alice"), await parties("bob")
    alice_phone, bob_phone = await _connected_call(alice, bob, tmp_path, system)
    _hears(alice_phone, BOB_HZ, ALICE_HZ)
    _hears(bob_phone, ALICE_HZ, BOB_HZ)
    assert alice_phone.first_audio_at is not None and alice_phone.negotiations == 1

    active = await bob.client.list_active_calls()
    assert [c.call_id for c in active] == [alice_phone.call_id]
    assert active[0].media_server_id == alice_phone.media_server_id
    ended = await bob.client.hang_up(alice_phone.call_id)
    assert (ended.state, ended.end_reason) == ("ended", "hangup")
    await asyncio.wait_for(alice_phone.ended.wait(), 5)
    assert alice_phone.end_reason == "hangup"
    await bob_phone.stop()
    for _ in range(50):  # alice's softphone closes by itself on the ENDED event
        if alice_phone.audio_at is None:
            break
        await asyncio.sleep(0.05)
    with wave.open(str(tmp_path / "alice.wav"), "rb") as recorded:
        assert (recorded.getframerate(), recorded.getnchannels()) == (48_000, 1)
        assert recorded.getsampwidth() == 2
        assert recorded.getnframes() > 48_000  # more than a second of audio
        data = recorded.readframes(recorded.getnframes())
    assert (await alice.client.get_call(alice_phone.call_id)).end_reason == "hangup"
    samples = array.array("h", data)[-48_000:]
    assert tone_power(samples, BOB_HZ) > 100 * tone_power(samples, ALICE_HZ)


async def test_softphones_reanchor_by_themselves_when_the_media_server_stops(
    parties: Any, media_servers: dict[str, ServerApp], system: System, tmp_path: Path
) -> None:
    alice, bob = await parties("alice"), await parties("bob")
    alice_phone, bob_phone = await _connected_call(alice, bob, tmp_path, system)
    first = alice_phone.media_server_id
    await media_servers[first].stop(0)

    async def reanchored(phone: Softphone) -> None:
        while phone.negotiations < 2 or phone.audio_at is None:
            await asyncio.sleep(0.05)

    await asyncio.wait_for(asyncio.gather(reanchored(alice_phone), reanchored(bob_phone)), 15)
    for phone in (alice_phone, bob_phone):
        assert phone.media_server_id != first and phone.media_server_id in media_servers
        assert not phone.ended.is_set()
    await asyncio.sleep(1.2)
    _hears(alice_phone, BOB_HZ, ALICE_HZ)
    _hears(bob_phone, ALICE_HZ, BOB_HZ)
    await alice.client.hang_up(alice_phone.call_id)
    await asyncio.wait_for(bob_phone.ended.wait(), 5)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="procall")
    add_client_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["client", *argv])


async def _cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = await run_client(_parse(*argv), out)
    return code, out.getvalue()


async def test_cli_call_and_answer_play_and_record_for_two_seconds(
    media_servers: dict[str, ServerApp],
    system: System,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def login(name: str) -> list[str]:
        address = system.ucservers[dict(HOMES)[name]].address
        return ["--server", address, "login", name, "--password", PASSWORD]

    media = ["--seconds", "2", "--host-address", "127.0.0.1"]
    answering = asyncio.create_task(
        _cli(*login("bob"), "answer", "--tone", "880", "--record", str(tmp_path / "b.wav"), *media)
    )
    await asyncio.sleep(0.5)  # bob is waiting (a call that rang earlier would be found too)
    calling = await _cli(
        *login("alice"), "call", "bob", "--tone", "440", "--record", str(tmp_path / "a.wav"), *media
    )
    answered = await asyncio.wait_for(answering, 15)
    for code, out in (calling, answered):
        assert code == 0, out
        lines = out.splitlines()
        assert any(line.endswith(f"{system.users['bob']}") and " connected " in line
                   for line in lines), out  # fmt: skip
        assert any(" ended (hangup) " in line for line in lines), out
        assert any(line.startswith("ended: hangup; connected ") for line in lines), out
        assert any(line.startswith("heard: ") and "recorded to" in line for line in lines), out
        assert any(line.startswith("media on media-") for line in lines), out
    assert calling[1].splitlines()[0].startswith("calling bob: call ")
    assert "answered call " in answered[1]
    for name, wanted, own in (("a", BOB_HZ, ALICE_HZ), ("b", ALICE_HZ, BOB_HZ)):
        with wave.open(str(tmp_path / f"{name}.wav"), "rb") as recorded:
            assert (recorded.getframerate(), recorded.getnchannels()) == (48_000, 1)
            frames = recorded.readframes(recorded.getnframes())
        samples = array.array("h", frames)
        assert len(samples) > 48_000
        tail = samples[-24_000:]
        assert tone_power(tail, wanted) > 100 * tone_power(tail, own)
    assert capsys.readouterr().err == ""

    # bad input: one clear line
    assert await _cli(*login("alice"), "call", "bob", "--wav", str(tmp_path / "no.wav")) == (1, "")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"procall: error: cannot read {tmp_path / 'no.wav'} as a WAV file")
    assert await _cli(*login("alice"), "hangup", "no-such-call") == (1, "")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("procall: error: ")
    with pytest.raises(SystemExit) as exited:
        _parse(*login("alice"), "call", "bob", "--seconds", "0")
    assert exited.value.code == 2
    assert "--seconds: must be more than 0: 0" in capsys.readouterr().err


async def test_sdk_calls_api_place_idempotent_decline_forwarding(
    parties: Any,
    media_servers: dict[str, ServerApp],
    system: System,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    alice, bob = await parties("alice"), await parties("bob")
    users = system.users
    first = await alice.client.place_call(users["bob"], request_id="retry-1")
    again = await alice.client.place_call(users["bob"], request_id="retry-1")
    assert again.call_id == first.call_id
    await bob.call_state("ringing")
    declined = await bob.client.decline_call(first.call_id)
    assert (declined.state, declined.end_reason) == ("ended", "declined")
    assert (await alice.call_state("ended")).end_reason == "declined"
    assert await alice.client.list_active_calls() == []

    rules = [ForwardingRule("no_answer", users["carol"], no_answer_timeout=5.0)]
    assert await bob.client.set_forwarding(rules) == rules
    assert await bob.client.get_forwarding() == rules
    placed = await alice.client.place_call(users["bob"])
    assert placed.callee_user_id == users["bob"]
    assert await bob.client.set_forwarding([]) == []
    await alice.client.hang_up(placed.call_id)
    await bob.call_state("ended", placed.call_id)
    with pytest.raises(ProcallClientError) as failed:
        await alice.client.get_call("no-such-call")
    assert failed.value.code.name in ("NOT_FOUND", "INVALID_ARGUMENT")

    # the CLI: a declined call exits 1 with one line; `answer` with nothing ringing too
    address = system.ucservers[dict(HOMES)["alice"]].address
    login = ["--server", address, "login", "alice", "--password", PASSWORD]
    calling = asyncio.create_task(_cli(*login, "call", "bob", "--host-address", "127.0.0.1"))
    ringing = await bob.call_state("ringing")
    await bob.client.decline_call(ringing.call_id)
    code, out = await asyncio.wait_for(calling, 10)
    assert code == 1 and out.splitlines()[-1] == "ended: declined; never connected"
    (line,) = capsys.readouterr().err.splitlines()
    assert line == f"procall: error: call {ringing.call_id} was not connected (declined)"
    assert await _cli(*login, "answer", "--wait", "0.3") == (
        1, "waiting for a call ...\nno call rang within 0.3 s\n",
    )  # fmt: skip


async def test_cli_call_as_a_process_until_ctrl_c(
    parties: Any, media_servers: dict[str, ServerApp], system: System
) -> None:
    bob = await parties("bob")
    env = {**os.environ, "PROCALL_PASSWORD": PASSWORD, "PYTHONUNBUFFERED": "1"}
    address = system.ucservers[dict(HOMES)["alice"]].address
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "procall", "client", "--server", address, "login", "alice",
        "call", system.users["bob"], "--tone", "440", "--host-address", "127.0.0.1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        ringing = await bob.call_state("ringing", timeout=20)
        await bob.client.answer_call(ringing.call_id)
        bob.phone = Softphone(bob.client, ToneSource(BOB_HZ), host_addresses=LOOPBACK)
        await bob.phone.start(ringing.call_id)
        await bob.phone.wait_for_audio()
        await asyncio.sleep(1.0)
        process.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(process.communicate(), 15)
        assert process.returncode == 0, err.decode()
        assert b"Traceback" not in err
        lines = out.decode().splitlines()
        assert lines[0] == f"calling {system.users['bob']}: call {ringing.call_id}"
        assert any(" ended (hangup) " in line for line in lines), lines
        assert lines[-2].startswith("ended: hangup; connected ")
        heard = float(lines[-1].split()[1])
        assert lines[-1].startswith("heard: ") and heard > 0.5
        await asyncio.wait_for(bob.phone.ended.wait(), 5)
        assert bob.phone.end_reason == "hangup"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
