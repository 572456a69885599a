"""``procall admin status | sessions | licenses | audit``: the system as one, over the
AdminService of any UCServer (as an administrator: ``--user NAME``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from procall.admin._connect import (
    AdminError,
    AdminUsageError,
    UCServerTarget,
    error_text,
    ucserver_target,
)
from procall.api.admin.v1 import admin_pb2
from procall.api.admin.v1 import admin_service_pb2 as admin_pb
from procall.api.admin.v1 import admin_service_pb2_grpc as admin_grpc

__all__ = ["add_system_parsers", "run_system_command", "table"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
_TIMEOUT = 15.0


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns aligned for people (the last column is not padded)."""
    cells = [list(header)] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def _as_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _print_json(messages: Sequence[Message]) -> None:
    for message in messages:
        print(json.dumps(_as_dict(message), ensure_ascii=False))


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def _dependencies(server: admin_pb2.ServerStatus) -> str:
    """The backends a server does not reach (and what it does meanwhile), or "ok"."""
    down = [
        f"{d.name} unreachable" + (f" ({d.detail})" if d.detail else "")
        for d in server.dependencies
        if not d.available
    ]
    if down:
        return "; ".join(down)
    return "ok" if server.dependencies else "-"


def _stub(channel: grpc.aio.Channel) -> admin_grpc.AdminServiceAsyncStub:
    return admin_grpc.AdminServiceStub(channel)


async def _status(args: argparse.Namespace, target: UCServerTarget) -> int:
    async with target.channel() as channel:
        reply = await _stub(channel).ListServers(admin_pb.ListServersRequest(), timeout=_TIMEOUT)
    servers = sorted(reply.servers, key=lambda s: (s.role, s.server_id))
    if args.json:
        _print_json(servers)
        return EXIT_OK
    now = time.time()
    rows = [
        (
            s.server_id,
            admin_pb2.ServerRole.Name(s.role).removeprefix("SERVER_ROLE_").lower(),
            admin_pb2.ServerState.Name(s.state).removeprefix("SERVER_STATE_").lower(),
            s.address,
            _ago(now - s.start_time.ToSeconds()) if s.HasField("start_time") else "-",
            f"{s.load}/{s.capacity}",
            s.outbox_depth,
            _ago(now - s.heartbeat_time.ToSeconds()) if s.HasField("heartbeat_time") else "-",
            _dependencies(s),
        )
        for s in servers
    ]
    header = (
        "SERVER", "ROLE", "STATE", "ADDRESS", "UP", "LOAD", "OUTBOX", "HEARTBEAT", "BACKENDS"
    )  # fmt: skip
    print(table(header, rows))
    return EXIT_OK


async def _sessions(args: argparse.Namespace, target: UCServerTarget) -> int:
    sessions: list[admin_pb2.LoggedOnSession] = []
    token = ""
    async with target.channel() as channel:
        while True:
            reply = await _stub(channel).ListSessions(
                admin_pb.ListSessionsRequest(
                    server_id=args.server or "",
                    admins_only=args.admins,
                    page_size=1000,
                    page_token=token,
                ),
                timeout=_TIMEOUT,
            )
            sessions.extend(reply.sessions)
            token = reply.next_page_token
            if not token:
                break
    if args.json:
        _print_json(sessions)
        return EXIT_OK
    now = time.time()
    rows = [
        (
            s.username,
            s.server_id,
            s.client_name or "-",
            _ago(now - s.login_time.ToSeconds()),
            "admin" if s.admin else "",
            s.session_id,
        )
        for s in sessions
    ]
    print(table(("USER", "SERVER", "CLIENT", "FOR", "ROLE", "SESSION"), rows))
    print(f"{len(sessions)} session{'s' if len(sessions) != 1 else ''}", file=sys.stderr)
    return EXIT_OK


async def _licenses(args: argparse.Namespace, target: UCServerTarget) -> int:
    async with target.channel() as channel:
        reply = await _stub(channel).GetLicensePool(
            admin_pb.GetLicensePoolRequest(), timeout=_TIMEOUT
        )
    pool = reply.pool
    if args.json:
        _print_json([pool])
        return EXIT_OK
    print(f"licenses: {pool.in_use} of {pool.total} in use")
    rows = sorted(pool.in_use_by_server.items())
    if rows:
        print(table(("SERVER", "IN USE"), rows))
    return EXIT_OK


async def _audit(args: argparse.Namespace, target: UCServerTarget) -> int:
    events: list[admin_pb2.AuditEvent] = []
    token = ""
    async with target.channel() as channel:
        while len(events) < args.limit:
            reply = await _stub(channel).ListAuditEvents(
                admin_pb.ListAuditEventsRequest(
                    page_size=min(1000, args.limit - len(events)),
                    page_token=token,
                    actor_user_id=args.actor or "",
                    subject_user_id=args.subject or "",
                    action=args.action or "",
                ),
                timeout=_TIMEOUT,
            )
            events.extend(reply.events)
            token = reply.next_page_token
            if not token:
                break
    if args.json:
        _print_json(events)
        return EXIT_OK
    rows = [
        (
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.event_time.ToSeconds())),
            e.actor_user_id,
            e.action,
            admin_pb2.AuditOutcome.Name(e.outcome).removeprefix("AUDIT_OUTCOME_").lower(),
            e.subject_user_id or e.resource or "-",
        )
        for e in events
    ]
    print(table(("WHEN", "ACTOR", "ACTION", "OUTCOME", "SUBJECT"), rows))
    return EXIT_OK


_Command = Callable[[argparse.Namespace, UCServerTarget], Coroutine[Any, Any, int]]
_COMMANDS: dict[str, _Command] = {
    "status": _status,
    "sessions": _sessions,
    "licenses": _licenses,
    "audit": _audit,
}


def add_system_parsers(areas: Any, common: argparse.ArgumentParser) -> None:
    """Add ``status``, ``sessions``, ``licenses`` and ``audit`` to ``procall admin``."""
    status = areas.add_parser(
        "status", parents=[common], help="every live server: role, state, load, uptime"
    )
    status.add_argument("--json", action="store_true", help="one JSON object per line")
    sessions = areas.add_parser("sessions", parents=[common], help="logged-on sessions")
    sessions.add_argument("--server", metavar="ID", help="only sessions on this UCServer")
    sessions.add_argument("--admins", action="store_true", help="only administrators")
    sessions.add_argument("--json", action="store_true", help="one JSON object per line")
    licenses = areas.add_parser("licenses", parents=[common], help="the license pool")
    licenses.add_argument("--json", action="store_true", help="print JSON")
    audit = areas.add_parser("audit", parents=[common], help="the audit log, newest first")
    audit.add_argument("--actor", metavar="USER_ID", help="only actions of this actor")
    audit.add_argument("--subject", metavar="USER_ID", help="only actions for this user")
    audit.add_argument("--action", help="an action, or a prefix ending in a dot")
    audit.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    for parser in (status, sessions, licenses, audit):
        parser.set_defaults(handler=run_system_command)


async def _run(args: argparse.Namespace) -> int:
    target = await ucserver_target(args)
    try:
        return await _COMMANDS[args.admin_area](args, target)
    finally:
        await target.logout()


def run_system_command(args: argparse.Namespace) -> int:
    """Run ``procall admin status|sessions|licenses|audit``; returns the exit code."""
    if getattr(args, "limit", 1) < 1:
        print("procall: error: --limit must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(_run(args))
    except AdminError as exc:
        print(f"procall: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, AdminUsageError) else EXIT_ERROR
    except grpc.aio.AioRpcError as exc:
        print(f"procall: error: {error_text(exc)}", file=sys.stderr)
        return EXIT_ERROR
