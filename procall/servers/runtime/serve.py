"""Running one server role until SIGTERM / SIGINT (``procall serve <role>``)."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
from pathlib import Path

from procall.servers.runtime.app import ServerApp
from procall.servers.runtime.roles import ROLES
from procall.settings import Settings

__all__ = ["run_role", "write_ready_file"]

_log = logging.getLogger(__name__)


def write_ready_file(path: str, app: ServerApp) -> None:
    """Write where the server listens, atomically, for ``procall up`` and scripts."""
    info = {
        "name": app.server_id,
        "role": app.role,
        "address": app.address,
        "pid": os.getpid(),
        "services": app.grpc.service_names,
    }
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(info) + "\n", encoding="utf-8")
    tmp.replace(target)


async def run_role(role: str, settings: Settings) -> None:
    """Build and start ``role``, serve until SIGTERM or SIGINT, then drain and stop."""
    app = await ROLES[role](settings)
    await app.start()
    # what start-up allocated lives as long as the process: keep it out of every collection,
    # and collect the young generation less often (per-message garbage of busy streams made
    # the collector the largest single cost of a UCServer at 5,000 sessions)
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    _log.info("%s %s serving on %s", role, app.server_id, app.address)
    if settings.server.ready_file:
        write_ready_file(settings.server.ready_file, app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        _log.info("%s %s shutting down", role, app.server_id)
        await app.stop()
