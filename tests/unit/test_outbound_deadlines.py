"""Every outbound call has a deadline: each unary RPC a procall process makes passes
``timeout=``, and each stream it opens is on the short list below, with what bounds it."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import procall
import procall.api
import procall.mesh

ROOT = Path(procall.__file__).resolve().parent
#: Where procall calls other processes.
CALLERS = ["servers", "admin", "client", "launch", "bench", "cli.py"]

#: Streams opened without a deadline (they live as long as the process wants them) and
#: what bounds them instead: keepalive pings with a ping timeout on their channel end a
#: dead or frozen peer within seconds, and the receiving server ends a stream whose
#: caller stays silent past ``[limits] stream_idle_seconds``.
STREAMS = {
    # the client SDK repeats its last ack as a keepalive; channel keepalive 5 s / 5 s
    ("client/_stream.py", "Connect"),
    # peer links send PeerKeepalive every 30 s; channel keepalive 10 s / 2 s
    ("servers/peering/links.py", "Exchange"),
    # the Lookup sends changes; channel keepalive 10 s / 2 s, rewatched on any break
    ("servers/upstream/lookup.py", "WatchTopology"),
    # the benchmarks' clients, for the length of a run
    ("bench/harness.py", "Connect"),
    ("bench/calls_loadgen.py", "Connect"),
}


def _rpc_names() -> set[str]:
    names = {"Check", "Watch"}  # grpc.health.v1
    for package in (procall.api, procall.mesh):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith("_service_pb2"):
                module = importlib.import_module(info.name)
                for service in module.DESCRIPTOR.services_by_name.values():
                    names |= {method.name for method in service.methods}
    return names


def _calls_without_deadline() -> set[tuple[str, str]]:
    names = _rpc_names()
    found: set[tuple[str, str]] = set()
    for entry in CALLERS:
        path = ROOT / entry
        files = [path] if path.suffix == ".py" else sorted(path.rglob("*.py"))
        for file in files:
            for node in ast.walk(ast.parse(file.read_text("utf-8"))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in names
                    and not any(k.arg == "timeout" for k in node.keywords)
                ):
                    found.add((file.relative_to(ROOT).as_posix(), node.func.attr))
    return found


def test_every_unary_call_has_a_deadline_and_every_stream_a_bound() -> None:
    missing = _calls_without_deadline()
    assert missing - STREAMS == set(), "calls without timeout=: add one (or a bounded stream)"


def test_the_scan_finds_the_streams_it_exempts() -> None:
    # the list stays honest: every exempted stream is still opened where it says
    assert _calls_without_deadline() >= STREAMS
