"""``procall client`` against real servers: in-process (argparse + handler) and as a
subprocess (``python -m procall client ...``), including ``watch`` and Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from procall.client import Availability, ProcallClient
from procall.client.cli import add_client_parser, run_client
from tests.integration.client.conftest import PASSWORD, Center

pytestmark = pytest.mark.asyncio(loop_scope="module")
ROOT = Path(__file__).resolve().parents[3]


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="procall")
    add_client_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["client", *argv])


async def _run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = await run_client(_parse(*argv), out)
    return code, out.getvalue()


async def test_commands_in_process(
    center: Center, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    alice = await center.new_user("uc-1")
    bob = await center.new_user("uc-2")
    login = ["--server", center.address("uc-2"), "login", alice.username, "--password", PASSWORD]

    code, out = await _run(*login, "presence", "set", "dnd", "--note", "focus time")
    assert code == 0
    assert out.startswith(f'{alice.user_id}  do_not_disturb  "focus time"  v')
    code, out = await _run(*login, "contacts", "add", bob.user_id)
    assert (code, out.split()[:2]) == (0, [bob.user_id, "offline"])  # never logged in
    code, out = await _run(*login, "contacts", "list")
    assert [line.split()[0] for line in out.splitlines()] == [bob.user_id]
    code, out = await _run(*login, "presence", "get", bob.user_id, alice.user_id)
    assert [line.split()[0] for line in out.splitlines()] == [bob.user_id, alice.user_id]
    code, out = await _run(*login, "contacts", "remove", bob.user_id)
    assert (code, out) == (0, "removed 1 contact(s)\n")
    assert await _run(*login, "contacts", "list") == (0, "")

    endpoints = [{"name": "ucserver-1", "role": "ucserver", "address": center.address("uc-1")}]
    (tmp_path / "endpoints.json").write_text(json.dumps(endpoints))
    data_dir = ["--data-dir", str(tmp_path), "login", bob.username, "--password", PASSWORD]
    code, out = await _run(*data_dir, "presence", "set", "away")
    assert (code, out.split()[:2]) == (0, [bob.user_id, "away"])
    assert capsys.readouterr().err == ""

    code, out = await _run(*login, "presence", "set", "busy", "--for", bob.user_id)
    assert (code, out) == (1, "")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("procall: error: PERMISSION_DENIED: ")
    code, out = await _run(*login, "presence", "get", "x" * 70)
    (line,) = capsys.readouterr().err.splitlines()
    assert code == 1 and line.startswith("procall: error: INVALID_ARGUMENT: ")
    wrong = ["--server", center.address("uc-1"), "login", alice.username, "--password", "nope"]
    assert await _run(*wrong, "contacts", "list") == (1, "")
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        f"procall: error: login at {center.address('uc-1')} failed: "
        "UNAUTHENTICATED: wrong username or password"
    )


async def _spawn(*argv: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PROCALL_PASSWORD": PASSWORD, "PYTHONUNBUFFERED": "1"}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "procall", "client", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL, env=env, cwd=ROOT,
    )  # fmt: skip


async def _line_with(process: asyncio.subprocess.Process, text: str, timeout: float = 15) -> str:
    assert process.stdout is not None

    async def find() -> str:
        while True:
            raw = await process.stdout.readline()  # type: ignore[union-attr]
            assert raw, "the watch ended early"
            if text in raw.decode():
                return raw.decode()

    return await asyncio.wait_for(find(), timeout)


async def test_watch_as_a_process_until_ctrl_c(center: Center) -> None:
    alice = await center.new_user("uc-1")
    bob = await center.new_user("uc-2")
    async with await ProcallClient.login(
        center.address("uc-1"), alice.username, PASSWORD, connect=False
    ) as setup:
        await setup.add_contacts([bob.user_id])

    watch = await _spawn("--server", center.address("uc-2"), "login", alice.username, "watch")
    one_shot = await _spawn(
        "--server", center.address("uc-1"), "login", bob.username, "presence", "set", "brb"
    )
    try:
        contact = await _line_with(watch, "contact ")
        assert bob.user_id in contact
        await _line_with(watch, "connected to uc-1")
        out, err = await asyncio.wait_for(one_shot.communicate(), 15)
        assert (one_shot.returncode, err) == (0, b"")
        assert out.decode().split()[:2] == [bob.user_id, "be_right_back"]

        async with await ProcallClient.login(
            center.address("uc-2"), bob.username, PASSWORD, connect=False
        ) as b:
            await b.set_presence(Availability.BUSY, note="from the test")
            line = await _line_with(watch, "from the test")
        assert f'presence  {bob.user_id}  busy  "from the test"' in line

        watch.send_signal(signal.SIGINT)
        rest, err = await asyncio.wait_for(watch.communicate(), 15)
        assert watch.returncode == 0, err.decode()
        assert b"Traceback" not in err
    finally:
        for process in (watch, one_shot):
            if process.returncode is None:
                process.kill()
                await process.wait()
    async with await ProcallClient.login(
        center.address("uc-2"), bob.username, PASSWORD, connect=False
    ) as b:
        (seen,) = await b.get_presence(alice.user_id)
    assert seen.availability == Availability.OFFLINE  # the watch logged out on Ctrl-C
