"""``procall admin move | rebalance | drain``: moving users between UCServers live.

The commands log in as an administrator (``--user``) at a UCServer and call its
AdminService: ``move USER... --to SERVER`` moves users now (their clients are
redirected and resume at the new home); ``rebalance`` and ``drain SERVER`` start a
background operation and follow its progress with a bar on stderr until it is done
(``--no-wait`` returns at once; ``--json`` prints the final operation as JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, TextIO

import grpc

from procall.admin._connect import AdminError, AdminUsageError, admin_session, error_text
from procall.api.admin.v1 import admin_service_pb2 as admin_pb
from procall.api.admin.v1 import admin_service_pb2_grpc as admin_grpc

__all__ = ["add_move_parsers", "run_move_command"]

_TIMEOUT = 30.0
_BAR = 30
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def add_move_parsers(areas: Any, common: argparse.ArgumentParser) -> None:
    """Add ``move``, ``rebalance`` and ``drain`` to the ``admin`` subcommands."""
    move = areas.add_parser("move", parents=[common], help="move users to another UCServer live")
    move.add_argument("users", nargs="+", help="usernames or user ids")
    move.add_argument("--to", required=True, metavar="SERVER", help="the new home UCServer")
    move.add_argument("--json", action="store_true", help="print JSON")
    rebalance = areas.add_parser(
        "rebalance", parents=[common], help="spread users evenly over the live UCServers"
    )
    drain = areas.add_parser(
        "drain", parents=[common], help="move every user off a UCServer; it takes no logins"
    )
    drain.add_argument("server", help="the UCServer to drain")
    drain.add_argument(
        "--stop", action="store_true", help="end draining: the server takes logins again"
    )
    for parser in (rebalance, drain):
        parser.add_argument("--rate", type=int, default=0, help="moves per second (default 50)")
        parser.add_argument("--no-wait", action="store_true", help="return once started")
        parser.add_argument("--json", action="store_true", help="print JSON")
    for parser in (move, rebalance, drain):
        parser.set_defaults(handler=run_move_command)


def _operation_dict(operation: admin_pb.MoveOperation) -> dict[str, Any]:
    return {
        "operation_id": operation.operation_id,
        "description": operation.description,
        "server_id": operation.server_id,
        "total": operation.total,
        "moved": operation.moved,
        "failed": operation.failed,
        "redirected_sessions": operation.redirected_sessions,
        "done": operation.done,
    }


def progress_bar(operation: admin_pb.MoveOperation) -> str:
    """``[#####.....] 30/67 moved, 0 failed`` for an operation."""
    total = max(1, operation.total)
    filled = round(_BAR * (operation.moved + operation.failed) / total)
    return (
        f"[{'#' * filled}{'.' * (_BAR - filled)}] {operation.moved}/{operation.total} moved, "
        f"{operation.failed} failed"
    )


async def _follow(
    stub: admin_grpc.AdminServiceAsyncStub,
    metadata: Any,
    operation: admin_pb.MoveOperation,
    err: TextIO,
) -> admin_pb.MoveOperation:
    while not operation.done:
        err.write("\r" + progress_bar(operation))
        err.flush()
        await asyncio.sleep(0.2)
        reply = await stub.GetMoveOperation(
            admin_pb.GetMoveOperationRequest(operation_id=operation.operation_id),
            metadata=metadata,
            timeout=_TIMEOUT,
        )
        operation = reply.operation
    err.write("\r" + progress_bar(operation) + "\n")
    return operation


async def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    address, metadata, ca = await admin_session(args)
    credentials = grpc.ssl_channel_credentials(root_certificates=ca) if ca else None
    channel = (
        grpc.aio.secure_channel(address, credentials)
        if credentials is not None
        else grpc.aio.insecure_channel(address)
    )
    async with channel:
        stub = admin_grpc.AdminServiceStub(channel)
        command = args.admin_area
        if command == "move":
            reply = await stub.MoveUser(  # the server takes usernames as well as ids
                admin_pb.MoveUserRequest(user_ids=args.users, target_server_id=args.to),
                metadata=metadata,
                timeout=_TIMEOUT,
            )
            if args.json:
                result = {
                    "moved_users": reply.moved_users,
                    "redirected_sessions": reply.redirected_sessions,
                }
                out.write(json.dumps(result) + "\n")
            else:
                out.write(
                    f"moved {reply.moved_users} users to {args.to}; "
                    f"{reply.redirected_sessions} live sessions redirected\n"
                )
            return EXIT_OK
        if command == "rebalance":
            started = await stub.Rebalance(
                admin_pb.RebalanceRequest(moves_per_second=args.rate),
                metadata=metadata,
                timeout=_TIMEOUT,
            )
            operation = started.operation
        else:
            drained = await stub.DrainServer(
                admin_pb.DrainServerRequest(
                    server_id=args.server, moves_per_second=args.rate, stop_draining=args.stop
                ),
                metadata=metadata,
                timeout=_TIMEOUT,
            )
            operation = drained.operation
        if not args.no_wait:
            operation = await _follow(stub, metadata, operation, err)
        if args.json:
            out.write(json.dumps(_operation_dict(operation)) + "\n")
        else:
            out.write(
                f"{operation.description}: {operation.moved} of {operation.total} users moved, "
                f"{operation.failed} failed, {operation.redirected_sessions} live sessions "
                f"redirected{'' if operation.done else ' so far (running)'}\n"
            )
        return EXIT_ERROR if operation.failed else EXIT_OK


def run_move_command(
    args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> int:
    """Run ``procall admin move|rebalance|drain``; returns the exit code."""
    try:
        return asyncio.run(_run(args, out, err))
    except AdminError as exc:
        print(f"procall: error: {exc}", file=err)
        return EXIT_USAGE if isinstance(exc, AdminUsageError) else EXIT_ERROR
    except grpc.aio.AioRpcError as exc:
        print(f"procall: error: {error_text(exc)}", file=err)
        return EXIT_ERROR
