"""Finding the Directory and talking to it from the admin commands.

Every command proves who calls: with ``--user NAME`` it logs in as that
administrator at a UCServer (password from ``$PROCALL_PASSWORD`` or a prompt) and
sends the session token; otherwise it acts as the machine's operator with the
service credential in the data dir of a running ``procall up`` (readable only by
whoever may read the data dir's secrets).
"""

from __future__ import annotations

import getpass
import json
import os
import time
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.servers.runtime.identity import service_metadata
from procall.servers.runtime.policy import Roles

__all__ = [
    "DEFAULT_DATA_DIR",
    "AdminError",
    "AdminUsageError",
    "Metadata",
    "caller_metadata",
    "directory_address",
    "error_text",
    "operator_metadata",
]

Metadata = tuple[tuple[str, str], ...]

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
    return _endpoint("directory", data_dir, "--directory HOST:PORT")


_LABELS = {"directory": "Directory", "ucserver": "UCServer"}


def _endpoint(role: str, data_dir: Path | None, option: str) -> str:
    label = _LABELS.get(role, role)
    folder = data_dir or DEFAULT_DATA_DIR
    path = folder / "endpoints.json"
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AdminUsageError(
            f"no {label} address: pass {option}, or --data-dir of a running "
            f"`procall up` ({path} does not exist)"
        ) from None
    except (OSError, ValueError) as exc:
        raise AdminError(f"cannot read {path}: {exc.__class__.__name__}") from None
    if isinstance(entries, list):
        for entry in entries:
            if isinstance(entry, dict) and entry.get("role") == role and entry.get("address"):
                return str(entry["address"])
    raise AdminError(f"{path} lists no {label}")


def operator_metadata(data_dir: Path | None) -> Metadata:
    """The operator's proof: the service credential of ``procall up``'s data dir."""
    folder = data_dir or DEFAULT_DATA_DIR
    path = folder / "secrets.json"
    try:
        credential = json.loads(path.read_text(encoding="utf-8"))["service"]
    except FileNotFoundError:
        raise AdminUsageError(
            f"no credentials: pass --user NAME (an administrator), or --data-dir of a "
            f"running `procall up` ({path} does not exist)"
        ) from None
    except PermissionError:
        raise AdminError(f"{path} is not readable by you: only its operator may use it") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AdminError(f"cannot read {path}: {exc.__class__.__name__}") from None
    return service_metadata(Roles.OPERATOR, "procall-admin", str(credential))


async def caller_metadata(
    user: str | None, ucserver: str | None, data_dir: Path | None, timeout: float = 15.0
) -> Metadata:
    """What the admin commands send to prove who calls (see the module doc)."""
    if not user:
        return operator_metadata(data_dir)
    address = ucserver or os.environ.get("PROCALL_UCSERVER_ADDRESS") or ""
    if not address:
        address = _endpoint("ucserver", data_dir, "--ucserver HOST:PORT")
    password = os.environ.get("PROCALL_PASSWORD")
    if password is None:
        password = getpass.getpass(f"password of {user}: ")
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            reply = await session_grpc.SessionServiceStub(channel).Login(
                session_pb.LoginRequest(
                    username=user, password=password, client_name="procall admin"
                ),
                timeout=timeout,
            )
        except grpc.aio.AioRpcError as exc:
            raise AdminError(f"login as {user} at {address} failed: {error_text(exc)}") from None
    return (("authorization", f"Bearer {reply.session_token}"),)


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
