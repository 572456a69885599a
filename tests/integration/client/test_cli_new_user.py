"""``procall client`` as a new user meets it: contacts by username, ``--data-dir`` after
the subcommand, NOT_FOUND for users that do not exist (exit 1), the time to wait after
too many wrong passwords, and a presence set through any server that ends at logout."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
import uuid
from pathlib import Path

import pytest

from procall.client import Availability, ProcallClient
from procall.client._events import PresenceChanged
from procall.client.cli import add_client_parser, run_client
from tests.integration.client.conftest import PASSWORD, Center

pytestmark = pytest.mark.asyncio(loop_scope="module")


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="procall")
    add_client_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["client", *argv])


async def _run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = await run_client(_parse(*argv), out)
    return code, out.getvalue()


async def test_contacts_add_takes_usernames(
    center: Center, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = await center.new_user("uc-1")
    bob = await center.new_user("uc-2")
    carol = await center.new_user("uc-1")
    login = ["--server", center.address("uc-1"), "login", alice.username, "--password", PASSWORD]
    code, out = await _run(*login, "contacts", "add", bob.username, carol.user_id)
    assert code == 0, capsys.readouterr().err
    assert [line.split()[0] for line in out.splitlines()] == [carol.user_id, bob.user_id]
    code, out = await _run(*login, "contacts", "add", "nobody-by-that-name")
    assert (code, out) == (1, "")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("procall: error: NOT_FOUND: ") and "nobody-by-that-name" in line


async def test_unknown_users_are_not_found_and_exit_1(
    center: Center, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = await center.new_user("uc-1")
    nobody = str(uuid.uuid4())
    login = ["--server", center.address("uc-2"), "login", alice.username, "--password", PASSWORD]
    assert await _run(*login, "presence", "get", nobody) == (1, "")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("procall: error: NOT_FOUND: ") and nobody in line
    assert await _run(*login, "contacts", "add", nobody) == (1, "")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("procall: error: NOT_FOUND: ") and nobody in line
    assert await _run(*login, "contacts", "list") == (0, "")


async def test_data_dir_is_accepted_after_the_subcommand(
    center: Center, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bob = await center.new_user("uc-2")
    endpoints = [{"name": "ucserver-1", "role": "ucserver", "address": center.address("uc-1")}]
    (tmp_path / "endpoints.json").write_text(json.dumps(endpoints))
    where = ["--data-dir", str(tmp_path)]
    login = ["login", bob.username, "--password", PASSWORD]
    for argv in (
        [*where, *login, "presence", "set", "away"],
        [*login, *where, "presence", "set", "away"],
        [*login, "presence", "set", "away", *where],
        [*login, "contacts", "list", *where],
    ):
        code, out = await _run(*argv)
        assert code == 0, (argv, capsys.readouterr().err)
        assert out.split()[:2] in ([bob.user_id, "away"], [])


async def test_a_locked_account_says_when_to_try_again(
    center: Center, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = await center.new_user("uc-1")
    wrong = ["--server", center.address("uc-2"), "login", alice.username, "--password", "nope"]
    for _ in range(center.settings[0].directory.max_failed_logins):
        assert await _run(*wrong, "contacts", "list") == (1, "")
    capsys.readouterr()
    assert await _run(*wrong, "contacts", "list") == (1, "")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("procall: error: login at ")
    assert "RESOURCE_EXHAUSTED: too many failed logins" in line
    found = re.search(r"\(try again in (\d+) s, at \d\d:\d\d:\d\d\)$", line)
    assert found, line
    lockout = center.settings[0].directory.lockout_seconds
    assert lockout - 5 <= int(found.group(1)) <= lockout  # the Directory's time, not a guess


@pytest.mark.parametrize("through", ["uc-1", "uc-2"])
async def test_presence_set_through_either_server_ends_at_logout(
    center: Center, through: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``presence set`` logs in through whichever server it is given (``--data-dir``
    picks one at random), sets presence and logs out: the presence ends with it."""
    alice = await center.new_user("uc-1")
    bob = await center.new_user("uc-2")
    async with await ProcallClient.login(center.address("uc-1"), alice.username, PASSWORD) as a:
        await a.add_contacts([bob.user_id])
        events = a.events()

        async def next_of_bob() -> PresenceChanged:
            async for event in events:
                if isinstance(event, PresenceChanged) and event.user_id == bob.user_id:
                    return event
            raise AssertionError("the stream ended")

        login = ["--server", center.address(through), "login", bob.username]
        code, out = await _run(*login, "--password", PASSWORD, "presence", "set", "busy")
        assert code == 0, capsys.readouterr().err
        seen = await asyncio.wait_for(next_of_bob(), 10)
        while seen.availability is not Availability.OFFLINE:
            assert seen.availability in (Availability.AVAILABLE, Availability.BUSY)
            seen = await asyncio.wait_for(next_of_bob(), 10)
        (now,) = await a.get_presence([bob.user_id])
        assert now.availability is Availability.OFFLINE
