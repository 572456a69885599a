"""Running one server role until SIGTERM / SIGINT (``procall serve <role>``).

Before anything is built, a settings file that holds a secret (the token secret, the
service credential, the LDAP service account's password, a database or Redis URL
with a password) must be private to the server's user: one that its group or others
can access stops the start with a one-line error (see ``procall.security.files`` for
why refusing beats warning). The server then runs with umask ``077``, so that the
files it creates (SQLite databases, the outbox, WAL files) are private from the start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from procall.security.files import InsecureFileError, require_private
from procall.servers.runtime.app import ServerApp, StartupError
from procall.servers.runtime.collector import tune_collector
from procall.servers.runtime.roles import ROLES
from procall.settings import ConfigError, Settings
from procall.telemetry.logs import configure_logging
from procall.telemetry.tracing import setup_tracing, shutdown_tracing

__all__ = [
    "SECRET_SETTINGS",
    "SERVER_UMASK",
    "URL_SETTINGS",
    "require_private_settings",
    "run_role",
    "secrets_of",
    "write_ready_file",
]

#: ``(section, key)`` of the settings whose value is a secret.
SECRET_SETTINGS: tuple[tuple[str, str], ...] = (
    ("auth", "service_credential"),
    ("ldap", "bind_password"),
)
#: ``(section, key)`` of the settings holding URLs, secret when they carry a password.
URL_SETTINGS: tuple[tuple[str, str], ...] = (
    ("database", "url"),
    ("database", "users_url"),
    ("database", "chat_url"),
    ("database", "config_url"),
    ("redis", "url"),
)
#: The umask a server runs with: what it creates is its owner's only.
SERVER_UMASK = 0o077

_log = logging.getLogger(__name__)


def write_ready_file(path: str, app: ServerApp) -> None:
    """Write where the server listens, atomically, for ``procall up`` and scripts."""
    info = {
        "name": app.server_id,
        "role": app.role,
        "address": app.address,
        "mesh_address": app.mesh_address,
        "metrics_address": app.metrics.address,
        "pid": os.getpid(),
        "services": app.grpc.service_names,
    }
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(info) + "\n", encoding="utf-8")
    tmp.replace(target)


def _has_password(url: object) -> bool:
    if not isinstance(url, str):
        return False
    try:
        return bool(urlsplit(url).password)
    except ValueError:  # not a URL at all; load_settings or the server reports that
        return False


def _secrets_in(data: Mapping[str, Any]) -> list[str]:
    found = []
    for section, key in SECRET_SETTINGS:
        values = data.get(section)
        if isinstance(values, dict) and values.get(key):
            found.append(f"[{section}] {key}")
    for section, key in URL_SETTINGS:
        values = data.get(section)
        if isinstance(values, dict) and _has_password(values.get(key)):
            found.append(f"[{section}] {key}")
    return found


def secrets_of(settings: Settings) -> list[str]:
    """The secret values of ``settings`` that no log line may show (URL passwords and
    tokens are recognised by their form: ``procall.telemetry.logs.redact``)."""
    found = [settings.auth.service_credential, settings.ldap.bind_password]
    for section, key in URL_SETTINGS:
        url = getattr(getattr(settings, section), key)
        try:
            password = urlsplit(url).password if isinstance(url, str) else None
        except ValueError:
            password = None
        if password:
            found.append(password)
    return [secret for secret in found if secret]


def require_private_settings(path: str | os.PathLike[str]) -> None:
    """Refuse the settings file ``path`` when it holds a secret and others can access it.

    Raises ``StartupError`` with a one-line message naming the file, its mode, the
    secret settings in it and the fix. A file without secrets may be shared.
    """
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # load_settings has read it already; it reports these problems itself
    found = _secrets_in(data)
    if not found:
        return
    try:
        require_private(path, what=f"it holds secrets ({', '.join(found)})")
    except InsecureFileError as exc:
        raise StartupError(str(exc)) from None


async def run_role(
    role: str, settings: Settings, config_path: str | os.PathLike[str] | None = None
) -> None:
    """Build and start ``role``, serve until SIGTERM or SIGINT, then drain and stop.

    ``config_path`` is the settings file ``settings`` were read from, checked with
    ``require_private_settings`` before anything starts.
    """
    if config_path is not None:
        require_private_settings(config_path)
    configure_logging(settings.logging.format, secrets=secrets_of(settings))
    os.umask(SERVER_UMASK)
    try:
        # before the role builds anything: the instrumentation wraps the constructors
        setup_tracing(settings.telemetry, f"procall-{role}", instance_id=settings.server.server_id)
    except ConfigError as exc:
        raise StartupError(str(exc)) from None
    app = await ROLES[role](settings)
    await app.start()
    # short collector pauses: the start-up heap frozen, small young collections
    tune_collector()
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
        shutdown_tracing()  # exports the spans still pending
