"""``procall admin`` as an administrator would run it, against real servers: status, sessions,
licenses, audit, configuration (with versions and leases) and user management."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable

import pytest

from procall.settings import Settings
from tests.helpers.center import Center, start_center
from tests.helpers.topology import PASSWORD, StartApp
from tests.helpers.topology import login as log_in


@pytest.fixture
async def center(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> Center:
    return await start_center(redis_url, make_settings, start_app)


async def _admin(center: Center, *args: str, user: str = "root") -> tuple[int, str, str]:
    where = ["--directory", center.directory.address, "--ucserver", center.uc1.address]
    if user:
        where += ["--user", user]
    env = {**os.environ, "PROCALL_PASSWORD": PASSWORD, "PROCALL_NEW_PASSWORD": "n3w-Passw0rd!"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "procall", "admin", *args, *where,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_status_sessions_licenses_and_audit(center: Center) -> None:
    code, out, err = await _admin(center, "status", "--json")
    assert code == 0, err
    servers = {json.loads(line)["server_id"] for line in out.splitlines()}
    assert {"uc-1", "uc-2"} <= servers
    code, out, _ = await _admin(center, "status")
    assert out.splitlines()[0].split()[:3] == ["SERVER", "ROLE", "STATE"]
    await log_in(center.uc2.address, "root")  # root's own client, on its home server
    code, out, err = await _admin(center, "sessions", "--admins")
    assert code == 0 and "root" in out, err
    assert len(out.splitlines()) == 2  # the commands' own sessions ended with them
    code, out, err = await _admin(center, "licenses")
    assert code == 0 and out.startswith("licenses: "), err
    code, out, err = await _admin(center, "audit", "--limit", "5", "--json")
    assert code == 0, err
    assert all("action" in json.loads(line) for line in out.splitlines())
    # the AdminService serves administrators: without --user the command says so
    code, _, err = await _admin(center, "status", user="")
    assert code == 2 and "--user NAME" in err


async def test_config_with_versions_and_leases(center: Center) -> None:
    code, out, err = await _admin(center, "config", "set", "calls.ring_seconds", "25", "--json")
    assert code == 0, err
    assert json.loads(out)["version"] == "1"
    # a write over a stale version is refused, never overwrites
    code, _, err = await _admin(
        center, "config", "set", "calls.ring_seconds", "30", "--version", "0"
    )
    assert code == 1 and "ABORTED" in err
    code, out, err = await _admin(
        center, "config", "edit", "calls.ring_seconds", "--value", "40", "--json"
    )
    assert code == 0, err
    edited = json.loads(out.splitlines()[-1])
    assert edited["version"] == "2" and float(edited["value"]) == 40
    code, out, err = await _admin(center, "config", "list")
    assert code == 0 and "calls.ring_seconds" in out, err
    code, _, err = await _admin(center, "config", "set", "no.such.property", "1")
    assert code == 1 and "INVALID_ARGUMENT" in err


async def test_users_create_password_and_delete(center: Center) -> None:
    code, out, err = await _admin(
        center, "users", "create", "carl", "--display-name", "Carl", "--home-server", "uc-1"
    )
    assert code == 0 and out.startswith("created carl"), err
    code, out, err = await _admin(center, "users", "password", "carl")
    assert code == 0 and "password of carl set" in out, err
    code, out, err = await _admin(center, "users", "delete", "carl", "--yes")
    assert code == 0 and "deleted carl" in out, err
    code, _, err = await _admin(center, "users", "show", "carl")
    assert code == 1 and "no user" in err
