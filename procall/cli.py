"""The ``procall`` command line: ``up``, ``serve``, ``certs``, ``admin``, ``client``, ``bench``.

Every user-facing failure prints one line ``procall: error: ...``: runtime
failures (port in use, Redis not answering, no such user) exit 1, usage errors
(bad arguments, unknown role or benchmark, an unreadable config file) exit 2;
tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from procall.admin import add_admin_parser
from procall.client.cli import add_client_parser

__all__ = ["main"]

#: A runtime failure.
EXIT_ERROR = 1
#: A usage error (argparse uses 2 as well).
EXIT_USAGE = 2


class CliError(Exception):
    """A user-facing runtime failure with a one-line message (exit 1)."""


class UsageError(CliError):
    """The command line is wrong (exit 2)."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other procall error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"procall: error: {message} (see `{self.prog} --help`)\n")


#: The server roles of ``procall serve`` (their composition roots load only when served).
ROLE_NAMES = ("directory", "lookup", "ucserver", "media")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="procall", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    up = commands.add_parser("up", help="run a whole DataCenter on this machine")
    up.add_argument("--data-dir", type=Path, help="where data and logs go (default ./.procall)")
    up.add_argument("--database-url", help="SQLAlchemy async URL (default: SQLite in data dir)")
    up.add_argument("--ucservers", type=int, default=2, help="number of UCServers (default 2)")
    up.add_argument("--media-servers", type=int, default=2, help="number of MediaServers")
    up.add_argument(
        "--insecure",
        action="store_true",
        help="no TLS: plaintext ports, servers prove themselves with a shared secret",
    )
    _add_trace_options(up)

    certs = commands.add_parser(
        "certs", help="create a private CA and certificates for procall servers"
    )
    certs.add_argument("--dir", type=Path, required=True, help="folder of the CA and certificates")
    certs.add_argument(
        "identities",
        nargs="*",
        metavar="ROLE/ID",
        help="certificates to issue, e.g. ucserver/uc-1 lookup/lookup-1 operator/local",
    )
    certs.add_argument(
        "--host", action="append", default=[], help="extra DNS name or IP in each certificate"
    )

    serve = commands.add_parser("serve", help="run one server role")
    serve.add_argument("role", help=f"one of: {', '.join(ROLE_NAMES)}")
    serve.add_argument("--config", type=Path, help="TOML settings file")
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (0 picks a free one)")
    serve.add_argument("--server-id", help="stable id of this server in the system")
    serve.add_argument("--ready-file", help="write the bound address as JSON here once serving")

    add_admin_parser(commands)
    add_client_parser(commands)

    bench = commands.add_parser("bench", help="run a benchmark and print its figures")
    bench.add_argument("name", nargs="?", help=f"benchmark to run: {', '.join(BENCHMARKS)}")
    bench.add_argument(
        "--clients", type=int, action="append", help="simulated clients (repeatable)"
    )
    bench.add_argument(
        "--seconds",
        "--duration",
        type=float,
        help="measurement time per run (media: per step; presence, chat: the main window; "
        "default 5)",
    )
    bench.add_argument(
        "--rate",
        type=float,
        help="offered load per second of the main window (presence: deliveries, default "
        "5000; chat: messages, default 500)",
    )
    bench.add_argument(
        "--ramp",
        type=float,
        help="presence, chat: seconds of each step of the knee search (default 3; 0: none)",
    )
    bench.add_argument(
        "--ramp-start",
        type=float,
        help="presence, chat: the knee search's first rate (default 2000 deliveries/s, 250 msg/s)",
    )
    bench.add_argument(
        "--fanout",
        action="store_true",
        help="presence: every client watches one user, who changes 5 times a second (--rate: "
        "deliveries/s), beside a bare fan-out to as many streams",
    )
    bench.add_argument(
        "--conversations", type=int, default=100, help="chat: 1:1 conversations across servers"
    )
    bench.add_argument(
        "--database",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="chat: where the chat database lives (postgres: a throwaway server)",
    )
    bench.add_argument(
        "--profile",
        type=Path,
        help="chat, calls: sample the UCServers with py-spy; profiles (chat: and logs) go here; "
        "connections: the restarted UCServer and the clients during the reconnect",
    )
    bench.add_argument(
        "--max-calls", type=int, default=80, help="media: concurrent calls of the last step"
    )
    bench.add_argument(
        "--relays",
        default="procall,forwarding,transcoding",
        help="media: relays to measure, comma-separated (procall, forwarding, transcoding)",
    )
    bench.add_argument(
        "--calls", type=int, default=50, help="calls: calls with media, one at a time"
    )
    bench.add_argument(
        "--setups", type=int, default=200, help="calls: set-ups without media (for set-ups/s)"
    )
    bench.add_argument(
        "--concurrency", type=int, default=8, help="calls: set-ups without media at once"
    )
    bench.add_argument(
        "--max",
        type=int,
        help="connections: ramp on past --clients until logins or streams fail or this many",
    )
    bench.add_argument(
        "--step",
        type=int,
        default=None,
        help="media: calls added per step (default 10); "
        "connections: clients added per ramp step (default 1000)",
    )
    bench.add_argument("--json", action="store_true", help="print one JSON object per run")
    _add_trace_options(bench)
    return parser


def _add_trace_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--trace",
        choices=("none", "console", "otlp"),
        default="none",
        help="the servers' [telemetry] exporter: none (default), console (up: spans printed "
        "here, one line each; bench: into the servers' logs), otlp (OTEL_EXPORTER_OTLP_ENDPOINT "
        "or localhost:4317)",
    )
    command.add_argument(
        "--sampling-ratio",
        type=float,
        default=1.0,
        help="share of the traces recorded with --trace (0 to 1, default 1)",
    )


def _run_serve(args: argparse.Namespace) -> int:
    from procall.servers.runtime.app import StartupError
    from procall.servers.runtime.grpc_server import BindError
    from procall.servers.runtime.serve import run_role
    from procall.settings import ConfigError, load_settings

    if args.role not in ROLE_NAMES:
        raise UsageError(f"unknown role {args.role!r} (choose from {', '.join(ROLE_NAMES)})")
    try:
        settings = load_settings(args.config, os.environ)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if args.host is not None:
        settings.server.host = args.host
    if args.port is not None:
        settings.server.port = args.port
    if args.server_id is not None:
        settings.server.server_id = args.server_id
    if args.ready_file is not None:
        settings.server.ready_file = args.ready_file
    try:
        _run_async(run_role(args.role, settings, args.config))
    except (StartupError, BindError) as exc:
        raise CliError(str(exc)) from None
    return 0


def _run_async(coro: object) -> None:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coro)  # type: ignore[arg-type]


def _run_up(args: argparse.Namespace) -> int:
    from procall.launch.datacenter import DataCenterError, run_datacenter

    if not 0.0 <= args.sampling_ratio <= 1.0:
        raise UsageError("--sampling-ratio must be between 0 and 1")
    try:
        return run_datacenter(
            data_dir=args.data_dir,
            database_url=args.database_url,
            ucservers=args.ucservers,
            media_servers=args.media_servers,
            tls=not args.insecure,
            trace=args.trace,
            sampling_ratio=args.sampling_ratio,
        )
    except DataCenterError as exc:
        raise CliError(str(exc)) from None


def _run_certs(args: argparse.Namespace) -> int:
    from procall.security import ensure_ca, issue, spiffe_id

    wanted = []
    for text in args.identities:
        role, _, server_id = text.partition("/")
        try:
            spiffe_id(role, server_id)
        except ValueError as exc:  # an unknown role or a malformed id
            raise UsageError(str(exc)) from None
        wanted.append((role, server_id))
    try:
        ca = ensure_ca(args.dir)
        print(f"CA          {ca.cert_file}")
        for role, server_id in wanted:
            issued = issue(ca, role, server_id, hosts=tuple(args.host))
            print(f"{role}/{server_id}  {issued.cert_file}  {issued.key_file}")
    except ValueError as exc:  # an unusable CA in the folder
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot write in {args.dir}: {exc.strerror}") from None
    return 0


#: Benchmarks by name, with what they measure.
BENCHMARKS: dict[str, str] = {
    "presence": "cross-server presence change-to-watcher latency, CPU per delivery and knee, "
    "beside a same-pattern bare grpc.aio baseline",
    "chat": "cross-server chat send-to-deliver latency, CPU per message and knee (SQLite or "
    "PostgreSQL), beside a same-pattern bare grpc.aio baseline",
    "media": "2-party calls per core through one MediaServer, beside bare aiortc relays",
    "calls": "call set-up across UCServers (ringing, first audio frame) and set-ups/s",
    "connections": "clients held, server RSS per client, and a UCServer restart's reconnect",
    "overload": "presence offered past the servers' capacity (servers and load generator on "
    "cores of their own), without load shedding and with it",
}


def _run_bench(args: argparse.Namespace) -> int:
    if args.name is None:
        for name, what in BENCHMARKS.items():
            print(f"{name}: {what}")
        return 0
    if args.name not in BENCHMARKS:
        raise UsageError(f"unknown benchmark {args.name!r} (available: {', '.join(BENCHMARKS)})")
    if args.seconds is None:
        args.seconds = 5.0
    if not 0.0 <= args.sampling_ratio <= 1.0:
        raise UsageError("--sampling-ratio must be between 0 and 1")
    # the benchmark's servers are child processes: they read these from the environment
    os.environ["PROCALL_TELEMETRY_EXPORTER"] = args.trace
    os.environ["PROCALL_TELEMETRY_SAMPLING_RATIO"] = str(args.sampling_ratio)
    if args.name == "chat":
        return _run_bench_chat(args)
    if args.name == "media":
        return _run_bench_media(args)
    if args.name == "calls":
        return _run_bench_calls(args)
    if args.name == "connections":
        return _run_bench_connections(args)
    if args.name == "overload":
        return _run_bench_overload(args)
    from procall.bench.presence import PresencePlan, format_result, run_presence_bench
    from procall.launch.datacenter import DataCenterError

    for clients in args.clients or [1000]:
        if clients < 2:
            raise UsageError("--clients must be at least 2")
        # a fan-out run: 5 changes a second of the one watched user, no knee search
        rate = args.rate or (5.0 * (clients - 1) if args.fanout else PresencePlan.deliveries_per_s)
        ramp = PresencePlan.ramp_seconds if not args.fanout else 0.0
        plan = PresencePlan(
            clients=clients,
            deliveries_per_s=rate,
            seconds=args.seconds,
            ramp_seconds=ramp if args.ramp is None else args.ramp,
            ramp_start=args.ramp_start or PresencePlan.ramp_start,
            fanout=args.fanout,
            progress=not args.json,
        )
        try:
            result = run_presence_bench(plan)
        except DataCenterError as exc:
            raise CliError(str(exc)) from None
        print(json.dumps(result) if args.json else format_result(result), flush=True)
    return 0


def _run_bench_overload(args: argparse.Namespace) -> int:
    from procall.bench.overload import format_result, run_overload_bench
    from procall.bench.presence import PresencePlan
    from procall.launch.datacenter import DataCenterError

    clients = (args.clients or [1000])[-1]
    if clients < 2:
        raise UsageError("--clients must be at least 2")
    plan = PresencePlan(
        clients=clients,
        deliveries_per_s=args.rate or 20_000.0,
        seconds=args.seconds,
        progress=not args.json,
    )
    try:
        result = run_overload_bench(plan)
    except DataCenterError as exc:
        raise CliError(str(exc)) from None
    print(json.dumps(result) if args.json else format_result(result), flush=True)
    return 0


def _run_bench_chat(args: argparse.Namespace) -> int:
    from procall.bench.chat import format_result, run_chat_bench
    from procall.launch.datacenter import DataCenterError

    try:
        result = run_chat_bench(
            rate=args.rate or 500.0,
            ramp_seconds=3.0 if args.ramp is None else args.ramp,
            ramp_start=args.ramp_start or 250.0,
            seconds=args.seconds,
            conversations=args.conversations,
            database=args.database,
            profile_dir=args.profile,
            progress=not args.json,
        )
    except DataCenterError as exc:
        raise CliError(str(exc)) from None
    print(json.dumps(result) if args.json else format_result(result), flush=True)
    return 0


def _run_bench_media(args: argparse.Namespace) -> int:
    from procall.bench.media import RELAYS, format_result, run_media_bench
    from procall.launch.datacenter import DataCenterError

    if args.step is None:
        args.step = 10
    relays = tuple(name.strip() for name in args.relays.split(",") if name.strip())
    unknown = [name for name in relays if name not in RELAYS]
    if unknown or not relays:
        raise UsageError(f"--relays takes some of {', '.join(RELAYS)}, not {args.relays!r}")
    if args.max_calls < 1 or args.step < 1 or args.seconds <= 0:
        raise UsageError("--max-calls and --step must be at least 1, --seconds positive")
    try:
        result = run_media_bench(
            max_calls=args.max_calls,
            step=args.step,
            seconds=args.seconds,
            relays=relays,
            progress=not args.json,
        )
    except DataCenterError as exc:
        raise CliError(str(exc)) from None
    print(json.dumps(result) if args.json else format_result(result), flush=True)
    return 0


def _run_bench_calls(args: argparse.Namespace) -> int:
    from procall.bench.calls import format_result, run_calls_bench
    from procall.launch.datacenter import DataCenterError

    if args.calls < 1 or args.setups < 1 or args.concurrency < 1:
        raise UsageError("--calls, --setups and --concurrency must be at least 1")
    try:
        result = run_calls_bench(
            calls=args.calls,
            setups=args.setups,
            concurrency=args.concurrency,
            profile_dir=args.profile,
            progress=not args.json,
        )
    except DataCenterError as exc:
        raise CliError(str(exc)) from None
    print(json.dumps(result) if args.json else format_result(result), flush=True)
    return 0


def _run_bench_connections(args: argparse.Namespace) -> int:
    from procall.bench.connections import format_result, run_connections_bench
    from procall.launch.datacenter import DataCenterError

    step = 1000 if args.step is None else args.step
    for clients in args.clients or [2000]:
        if clients < 4 or step < 1 or (args.max is not None and args.max < clients):
            raise UsageError("--clients must be at least 4, --step at least 1, --max >= --clients")
        try:
            result = run_connections_bench(
                clients,
                most=args.max,
                step=step,
                profile_dir=args.profile,
                progress=not args.json,
            )
        except DataCenterError as exc:
            raise CliError(str(exc)) from None
        print(json.dumps(result) if args.json else format_result(result), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handlers = {"serve": _run_serve, "up": _run_up, "bench": _run_bench, "certs": _run_certs}
    handler = handlers.get(args.command) or getattr(args, "handler", None)
    try:
        if handler is None:
            raise UsageError(f"unknown command {args.command!r}")
        result: int = handler(args)
        return result
    except CliError as exc:
        print(f"procall: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_ERROR
    except KeyboardInterrupt:
        return 130
