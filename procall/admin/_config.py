"""``procall admin config list | get | set | edit``: configuration properties through the
AdminService, with versions (a stale write is refused, never overwrites) and edit leases
(``edit`` holds the property's lease while the administrator types)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import grpc
from google.protobuf import json_format

from procall.admin._connect import (
    AdminError,
    AdminUsageError,
    UCServerTarget,
    error_text,
    ucserver_target,
)
from procall.admin._system import table
from procall.api.admin.v1 import admin_pb2
from procall.api.admin.v1 import admin_service_pb2 as admin_pb
from procall.api.admin.v1 import admin_service_pb2_grpc as admin_grpc

__all__ = ["add_config_parser", "run_config_command"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
_TIMEOUT = 15.0
_SCOPES = {"global": admin_pb2.CONFIG_SCOPE_GLOBAL, "local": admin_pb2.CONFIG_SCOPE_LOCAL}


def _resource(name: str, server: str) -> str:
    return f"config/local/{server}/{name}" if server else f"config/global/{name}"


def _show(prop: admin_pb2.ConfigProperty, as_json: bool) -> None:
    if as_json:
        print(json.dumps(json_format.MessageToDict(prop, preserving_proto_field_name=True)))
        return
    where = f" on {prop.server_id}" if prop.server_id else ""
    by = f", by {prop.updated_by_user_id}" if prop.updated_by_user_id else " (default)"
    print(f"{prop.name}{where} = {prop.value}  (version {prop.version}{by})")


async def _get_one(
    stub: admin_grpc.AdminServiceAsyncStub, name: str, server: str
) -> admin_pb2.ConfigProperty:
    reply = await stub.GetConfigProperty(
        admin_pb.GetConfigPropertyRequest(
            name=name,
            scope=admin_pb2.CONFIG_SCOPE_LOCAL if server else admin_pb2.CONFIG_SCOPE_GLOBAL,
            server_id=server,
        ),
        timeout=_TIMEOUT,
    )
    return reply.property


async def _set_one(
    stub: admin_grpc.AdminServiceAsyncStub,
    current: admin_pb2.ConfigProperty,
    value: str,
    version: int,
    lease_id: str = "",
) -> admin_pb2.ConfigProperty:
    wanted = admin_pb2.ConfigProperty()
    wanted.CopyFrom(current)
    wanted.value = value
    reply = await stub.SetConfigProperty(
        admin_pb.SetConfigPropertyRequest(
            property=wanted, expected_version=version, lease_id=lease_id
        ),
        timeout=_TIMEOUT,
    )
    return reply.property


async def _list(args: argparse.Namespace, stub: admin_grpc.AdminServiceAsyncStub) -> int:
    found: list[admin_pb2.ConfigProperty] = []
    token = ""
    while True:
        reply = await stub.ListConfigProperties(
            admin_pb.ListConfigPropertiesRequest(
                scope=_SCOPES[args.scope], server_id=args.server or "", page_size=1000,
                page_token=token,
            ),
            timeout=_TIMEOUT,
        )  # fmt: skip
        found.extend(reply.properties)
        token = reply.next_page_token
        if not token:
            break
    if args.json:
        for prop in found:
            _show(prop, True)
        return EXIT_OK
    rows = [(p.name, p.value, p.version, p.updated_by_user_id or "(default)") for p in found]
    print(table(("PROPERTY", "VALUE", "VERSION", "CHANGED BY"), rows))
    return EXIT_OK


async def _get(args: argparse.Namespace, stub: admin_grpc.AdminServiceAsyncStub) -> int:
    _show(await _get_one(stub, args.name, args.server or ""), args.json)
    return EXIT_OK


async def _set(args: argparse.Namespace, stub: admin_grpc.AdminServiceAsyncStub) -> int:
    current = await _get_one(stub, args.name, args.server or "")
    # the version written over: the one named (a stale one is refused), else the one just read
    version = current.version if args.version is None else args.version
    _show(await _set_one(stub, current, args.value, version), args.json)
    return EXIT_OK


async def _edit(args: argparse.Namespace, stub: admin_grpc.AdminServiceAsyncStub) -> int:
    server = args.server or ""
    lease = (
        await stub.AcquireEditLease(
            admin_pb.AcquireEditLeaseRequest(
                resource=_resource(args.name, server), ttl_seconds=args.ttl
            ),
            timeout=_TIMEOUT,
        )
    ).lease
    try:
        current = await _get_one(stub, args.name, server)
        _show(current, False)
        value = args.value
        if value is None:
            value = (await asyncio.to_thread(input, f"new value of {args.name}: ")).strip()
        if not value or value == current.value:
            print("unchanged")
            return EXIT_OK
        _show(await _set_one(stub, current, value, current.version, lease.lease_id), args.json)
        return EXIT_OK
    finally:
        await stub.ReleaseEditLease(
            admin_pb.ReleaseEditLeaseRequest(lease_id=lease.lease_id), timeout=_TIMEOUT
        )


_COMMANDS: dict[str, Any] = {"list": _list, "get": _get, "set": _set, "edit": _edit}


def add_config_parser(areas: Any, common: argparse.ArgumentParser) -> None:
    """Add ``config list|get|set|edit`` to ``procall admin``."""
    parser_class = type(common)
    config = areas.add_parser("config", help="configuration properties (global or per server)")
    commands = config.add_subparsers(
        dest="config_command", required=True, parser_class=parser_class
    )
    listing = commands.add_parser("list", parents=[common], help="list properties")
    listing.add_argument("--scope", choices=sorted(_SCOPES), default="global")
    get = commands.add_parser("get", parents=[common], help="show one property")
    get.add_argument("name", help="dotted name, e.g. calls.ring_seconds")
    setting = commands.add_parser(
        "set", parents=[common], help="write a property over the version read (or --version)"
    )
    setting.add_argument("name")
    setting.add_argument("value")
    setting.add_argument(
        "--version", type=int, help="the version edited: a stale one is refused (ABORTED)"
    )
    edit = commands.add_parser(
        "edit", parents=[common], help="hold the property's edit lease, show it, ask the value"
    )
    edit.add_argument("name")
    edit.add_argument("--value", help="the new value (asked when not given)")
    edit.add_argument("--ttl", type=int, default=300, help="lease seconds (default 300)")
    for parser in (listing, get, setting, edit):
        parser.add_argument("--server", metavar="ID", help="a LOCAL property of this server")
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.set_defaults(handler=run_config_command)


async def _run(args: argparse.Namespace) -> int:
    target: UCServerTarget = await ucserver_target(args)
    try:
        async with target.channel() as channel:
            stub = admin_grpc.AdminServiceStub(channel)
            code: int = await _COMMANDS[args.config_command](args, stub)
            return code
    finally:
        await target.logout()


def run_config_command(args: argparse.Namespace) -> int:
    """Run ``procall admin config <command>``; returns the exit code."""
    try:
        return asyncio.run(_run(args))
    except AdminError as exc:
        print(f"procall: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, AdminUsageError) else EXIT_ERROR
    except grpc.aio.AioRpcError as exc:
        print(f"procall: error: {error_text(exc)}", file=sys.stderr)
        return EXIT_ERROR
