"""The server roles ``procall serve`` knows, by name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from procall.servers.directory.root import build_directory
from procall.servers.lookup.root import build_lookup
from procall.servers.media.root import build_media
from procall.servers.runtime.app import ServerApp
from procall.servers.ucserver.root import build_ucserver
from procall.settings import Settings

__all__ = ["ROLES", "RoleBuilder"]

RoleBuilder = Callable[[Settings], Awaitable[ServerApp]]

#: Role name -> composition root.
ROLES: dict[str, RoleBuilder] = {
    "directory": build_directory,
    "lookup": build_lookup,
    "ucserver": build_ucserver,
    "media": build_media,
}
