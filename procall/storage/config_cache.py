"""The local cache file of a UCServer's configuration (JSON with a SHA-256 checksum).

The file holds every property value the server runs with (global ones and its own local
ones), so that a server that starts while the configuration database is unreachable runs
with the configuration it last knew. It is written atomically (a temporary file in the
same directory, flushed and fsynced, then renamed over the old one), so a crash leaves the
old file or the new one, never half of one. The checksum covers the canonical JSON of the
values: a file that does not parse, or whose checksum does not match, is refused
(``CacheFileError``) and fetched again from the database.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from procall.config.model import PropertyKey, PropertyValue, Scope

__all__ = ["CacheFileError", "ConfigCacheFile"]

_FORMAT = 1


class CacheFileError(Exception):
    """The cache file is missing, unreadable, not JSON or fails its checksum."""


def _entries(values: Sequence[PropertyValue]) -> list[dict[str, Any]]:
    return [
        {
            "scope": v.key.scope.value,
            "server_id": v.key.server_id,
            "name": v.key.name,
            "value": v.value,
            "version": v.version,
            "update_time": v.update_time,
            "updated_by": v.updated_by,
            "fencing": v.fencing,
        }
        for v in values
    ]


def _checksum(server_id: str, entries: list[dict[str, Any]]) -> str:
    canonical = json.dumps(
        {"server_id": server_id, "values": entries},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


class ConfigCacheFile:
    """One server's cache file at ``path``."""

    def __init__(self, path: str | Path, server_id: str) -> None:
        self.path = Path(path)
        self.server_id = server_id

    def write(self, values: Sequence[PropertyValue]) -> None:
        """Replace the file with ``values``, atomically."""
        entries = _entries(values)
        document = {
            "format": _FORMAT,
            "server_id": self.server_id,
            "values": entries,
            "sha256": _checksum(self.server_id, entries),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(document, out, indent=1, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def read(self) -> list[PropertyValue]:
        """The values in the file; ``CacheFileError`` when it is missing or corrupt."""
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CacheFileError(f"no configuration cache file at {self.path}") from None
        except (OSError, ValueError) as exc:
            raise CacheFileError(
                f"configuration cache file {self.path} is unreadable ({type(exc).__name__})"
            ) from None
        try:
            entries = document["values"]
            if document.get("format") != _FORMAT or document.get("server_id") != self.server_id:
                raise CacheFileError(
                    f"configuration cache file {self.path} is of another format or server"
                )
            if document.get("sha256") != _checksum(self.server_id, entries):
                raise CacheFileError(f"configuration cache file {self.path} fails its checksum")
            return [
                PropertyValue(
                    key=PropertyKey(Scope(e["scope"]), str(e["server_id"]), str(e["name"])),
                    value=str(e["value"]),
                    version=int(e["version"]),
                    update_time=float(e["update_time"]),
                    updated_by=str(e["updated_by"]),
                    fencing=int(e["fencing"]),
                )
                for e in entries
            ]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CacheFileError(
                f"configuration cache file {self.path} is malformed ({type(exc).__name__})"
            ) from None
