"""Finding the Directory and talking to it from the admin commands."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "DEFAULT_DATA_DIR",
    "AdminError",
    "AdminUsageError",
    "DirectoryTarget",
    "directory_address",
    "directory_target",
    "error_text",
]

#: Where ``procall up`` keeps its data by default (``.procall/datacenter``).
DEFAULT_DATA_DIR = Path(".procall") / "datacenter"
_DETAILS_KEY = "grpc-status-details-bin"


class AdminError(Exception):
    """An admin command failed (exit 1); the message is one line for the user."""


class AdminUsageError(AdminError):
    """The command line does not say enough to run the command (exit 2)."""


def directory_address(explicit: str | None, data_dir: Path | None) -> str:
    """The Directory's ``host:port``.

    In order: ``--directory``, ``$PROCALL_DIRECTORY_ADDRESS``, then the
    ``endpoints.json`` a running ``procall up`` wrote into ``--data-dir`` (default
    ``.procall/datacenter``).
    """
    if explicit:
        return explicit
    if env := os.environ.get("PROCALL_DIRECTORY_ADDRESS"):
        return env
    folder = data_dir or DEFAULT_DATA_DIR
    path = folder / "endpoints.json"
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AdminUsageError(
            f"no Directory address: pass --directory HOST:PORT, or --data-dir of a running "
            f"`procall up` ({path} does not exist)"
        ) from None
    except (OSError, ValueError) as exc:
        raise AdminError(f"cannot read {path}: {exc.__class__.__name__}") from None
    if isinstance(entries, list):
        for entry in entries:
            if (
                isinstance(entry, dict)
                and entry.get("role") == "directory"
                and entry.get("address")
            ):
                return str(entry["address"])
    raise AdminError(f"{path} lists no Directory")


@dataclass(frozen=True)
class DirectoryTarget:
    """Where the admin commands reach the Directory, and with which TLS credentials."""

    address: str
    credentials: grpc.ChannelCredentials | None = None

    def channel(self) -> grpc.aio.Channel:
        """A new channel to the Directory (TLS when there are credentials)."""
        if self.credentials is None:
            return grpc.aio.insecure_channel(self.address)
        return grpc.aio.secure_channel(self.address, self.credentials)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AdminError(f"cannot read the {what} {path}: {exc.strerror}") from None


def directory_target(
    explicit: str | None,
    data_dir: Path | None,
    cacert: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
) -> DirectoryTarget:
    """The Directory and how to reach it.

    ``--directory`` (or ``$PROCALL_DIRECTORY_ADDRESS``) is used as given: TLS when
    ``--cacert`` names the CA (with ``--cert``/``--key`` for a client certificate).
    Otherwise the ``endpoints.json`` of a running ``procall up``: with TLS on, the
    command connects to the Directory's mesh address with the local operator's
    certificate from ``<data dir>/tls``.
    """
    if explicit or (os.environ.get("PROCALL_DIRECTORY_ADDRESS") and data_dir is None):
        address = directory_address(explicit, data_dir)
        if cacert is None:
            return DirectoryTarget(address)
        ca = _read(cacert, "CA certificate")
        if cert is None or key is None:
            return DirectoryTarget(address, grpc.ssl_channel_credentials(root_certificates=ca))
        return DirectoryTarget(
            address,
            grpc.ssl_channel_credentials(
                root_certificates=ca,
                private_key=_read(key, "key"),
                certificate_chain=_read(cert, "certificate"),
            ),
        )
    entry = _endpoint(data_dir, "directory")
    ca_file = str(entry.get("ca_file") or "")
    if not ca_file:
        return DirectoryTarget(str(entry["address"]))
    folder = Path(ca_file).parent
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(Path(ca_file), "CA certificate"),
        private_key=_read(key or folder / "operator.local.key", "operator key"),
        certificate_chain=_read(cert or folder / "operator.local.pem", "operator certificate"),
    )
    return DirectoryTarget(str(entry.get("mesh_address") or entry["address"]), credentials)


def _endpoint(data_dir: Path | None, role: str) -> dict[str, Any]:
    folder = data_dir or DEFAULT_DATA_DIR
    path = folder / "endpoints.json"
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AdminUsageError(
            f"no Directory address: pass --directory HOST:PORT, or --data-dir of a running "
            f"`procall up` ({path} does not exist)"
        ) from None
    except (OSError, ValueError) as exc:
        raise AdminError(f"cannot read {path}: {exc.__class__.__name__}") from None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("role") == role and entry.get("address"):
            return entry
    raise AdminError(f"{path} lists no Directory")


def error_text(error: grpc.RpcError) -> str:
    """A one-line description of a failed call: the status, and field errors when given."""
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else ""
    name = code.name if isinstance(code, grpc.StatusCode) else "ERROR"
    text = f"{name}: {details}" if details else name
    trailing: Any = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailing or ():
        if key != _DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            bad = error_details_pb2.BadRequest()
            retry = error_details_pb2.RetryInfo()
            if detail.Unpack(bad) and bad.field_violations:
                fields = "; ".join(f"{v.field}: {v.description}" for v in bad.field_violations)
                if fields not in text:
                    text = f"{text} ({fields})"
            elif detail.Unpack(retry) and retry.retry_delay.ToNanoseconds() > 0:
                seconds = max(1, round(retry.retry_delay.ToNanoseconds() / 1e9))
                at = time.strftime("%H:%M:%S", time.localtime(time.time() + seconds))
                text = f"{text} (try again in {seconds} s, at {at})"
    return text
