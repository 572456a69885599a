"""``procall admin users list | show | set-home | import``: user administration over gRPC."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from procall.admin._connect import (
    AdminError,
    AdminUsageError,
    DirectoryTarget,
    admin_target,
    directory_address,
    error_text,
)
from procall.admin._import import import_users, read_rows
from procall.api.directory.v1 import directory_pb2 as pb
from procall.api.directory.v1 import directory_service_pb2 as svc
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc

__all__ = ["run_users_command"]

EXIT_OK = 0
EXIT_ROWS_FAILED = 1
#: Runtime failures (no such user, the Directory does not answer, an unreadable file).
EXIT_ERROR = 1
#: The command line does not say enough (argparse uses 2 for bad arguments too).
EXIT_USAGE = 2
_TIMEOUT = 15.0


def _stub(channel: grpc.aio.Channel) -> directory_grpc.DirectoryServiceAsyncStub:
    return directory_grpc.DirectoryServiceStub(channel)


async def _find_user(stub: directory_grpc.DirectoryServiceAsyncStub, who: str) -> pb.User:
    """A user by id (when ``who`` is one) or by username."""
    try:
        uuid.UUID(who)
    except ValueError:
        pass
    else:
        try:
            reply = await stub.GetUser(svc.GetUserRequest(user_id=who), timeout=_TIMEOUT)
            return reply.user
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
    try:
        reply = await stub.GetUser(svc.GetUserRequest(username=who), timeout=_TIMEOUT)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            raise AdminError(f"no user {who!r}") from None
        raise
    return reply.user


def _as_dict(user: pb.User) -> dict[str, Any]:
    return json_format.MessageToDict(user, preserving_proto_field_name=True)


def _table(users: list[pb.User]) -> str:
    rows = [("USERNAME", "DISPLAY NAME", "MAIL", "PHONE", "HOME SERVER", "USER ID")]
    rows += [
        (u.username, u.display_name, u.mail, u.phone_number, u.home_server_id or "-", u.user_id)
        for u in users
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


async def _list(args: argparse.Namespace, target: DirectoryTarget) -> int:
    users: list[pb.User] = []
    token = ""
    async with target.channel() as channel:
        stub = _stub(channel)
        while True:
            if args.search:
                reply: Any = await stub.SearchUsers(
                    svc.SearchUsersRequest(query=args.search, page_size=500, page_token=token),
                    timeout=_TIMEOUT,
                )
            else:
                reply = await stub.ListUsers(
                    svc.ListUsersRequest(
                        page_size=500, page_token=token, home_server_id=args.home_server or ""
                    ),
                    timeout=_TIMEOUT,
                )
            users.extend(reply.users)
            token = reply.next_page_token
            if not token or (args.limit and len(users) >= args.limit):
                break
    if args.limit:
        users = users[: args.limit]
    if args.home_server and args.search:
        users = [u for u in users if u.home_server_id == args.home_server]
    if args.json:
        for user in users:
            print(json.dumps(_as_dict(user), ensure_ascii=False))
    else:
        print(_table(users))
        print(f"{len(users)} user{'s' if len(users) != 1 else ''}", file=sys.stderr)
    return EXIT_OK


async def _show(args: argparse.Namespace, target: DirectoryTarget) -> int:
    async with target.channel() as channel:
        user = await _find_user(_stub(channel), args.user)
    data = _as_dict(user)
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
    else:
        width = max(len(key) for key in data)
        for key, value in data.items():
            shown = ", ".join(value) if isinstance(value, list) else value
            print(f"{key.ljust(width)}  {shown}")
    return EXIT_OK


async def _set_home(args: argparse.Namespace, target: DirectoryTarget) -> int:
    async with target.channel() as channel:
        stub = _stub(channel)
        user = await _find_user(stub, args.user)
        reply = await stub.SetHomeServer(
            svc.SetHomeServerRequest(user_id=user.user_id, home_server_id=args.server),
            timeout=_TIMEOUT,
        )
    before = user.home_server_id or "(none)"
    print(f"{reply.user.username}: home server {before} -> {reply.user.home_server_id or '(none)'}")
    return EXIT_OK


async def _import(args: argparse.Namespace, target: DirectoryTarget) -> int:
    rows, problems = read_rows(Path(args.file))
    summary = await import_users(target, rows, concurrency=args.concurrency)
    failures = sorted(problems + summary.failures)
    print(
        f"created {summary.created}, skipped {summary.skipped} (already exist), "
        f"failed {len(failures)}"
    )
    for line, reason in failures:
        print(f"  line {line}: {reason}")
    return EXIT_ROWS_FAILED if failures else EXIT_OK


def _new_password(who: str) -> str:
    """The new password: ``$PROCALL_NEW_PASSWORD``, else asked twice."""
    password = os.environ.get("PROCALL_NEW_PASSWORD")
    if password is not None:
        return password
    first = getpass.getpass(f"new password of {who}: ")
    if first != getpass.getpass(f"new password of {who} again: "):
        raise AdminError("the two passwords differ")
    return first


async def _create(args: argparse.Namespace, target: DirectoryTarget) -> int:
    user = pb.User(
        username=args.username,
        display_name=args.display_name or args.username,
        home_server_id=args.home_server or "",
        mail=args.mail or "",
        phone_number=args.phone or "",
        admin=args.admin,
    )
    password = "" if args.no_password else _new_password(args.username)
    async with target.channel() as channel:
        reply = await _stub(channel).CreateUser(
            svc.CreateUserRequest(user=user, password=password), timeout=_TIMEOUT
        )
    print(f"created {reply.user.username} ({reply.user.user_id})")
    return EXIT_OK


async def _delete(args: argparse.Namespace, target: DirectoryTarget) -> int:
    async with target.channel() as channel:
        stub = _stub(channel)
        user = await _find_user(stub, args.user)
        if not args.yes:
            answer = await asyncio.to_thread(input, f"delete {user.username}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("not deleted")
                return EXIT_ERROR
        await stub.DeleteUser(svc.DeleteUserRequest(user_id=user.user_id), timeout=_TIMEOUT)
    print(f"deleted {user.username}")
    return EXIT_OK


async def _password(args: argparse.Namespace, target: DirectoryTarget) -> int:
    async with target.channel() as channel:
        stub = _stub(channel)
        user = await _find_user(stub, args.user)
        await stub.SetPassword(
            svc.SetPasswordRequest(user_id=user.user_id, password=_new_password(user.username)),
            timeout=_TIMEOUT,
        )
    print(f"password of {user.username} set")
    return EXIT_OK


_COMMANDS: dict[str, Callable[[argparse.Namespace, DirectoryTarget], Coroutine[Any, Any, int]]] = {
    "create": _create,
    "delete": _delete,
    "password": _password,
    "list": _list,
    "show": _show,
    "set-home": _set_home,
    "import": _import,
}


async def _run(args: argparse.Namespace) -> int:
    return await _COMMANDS[args.users_command](args, await admin_target(args))


def run_users_command(args: argparse.Namespace) -> int:
    """Run ``procall admin users <command>``; returns the exit code."""
    try:
        address = directory_address(args.directory, args.data_dir)
        return asyncio.run(_run(args))
    except AdminError as exc:
        print(f"procall: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, AdminUsageError) else EXIT_ERROR
    except grpc.aio.AioRpcError as exc:
        if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            message = f"the Directory at {address} does not answer ({error_text(exc)})"
        else:
            message = error_text(exc)
        print(f"procall: error: {message}", file=sys.stderr)
        return EXIT_ERROR
