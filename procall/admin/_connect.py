"""Finding the Directory and proving who calls it from the admin commands.

Every command proves who calls. With ``--user NAME`` it logs in as that
administrator at a UCServer (password from ``$PROCALL_PASSWORD`` or a prompt) and
sends the session token to the Directory's client port. Otherwise it acts as the
machine's operator: with TLS (a ``procall up`` data dir with certificates, or
``--cacert``/``--cert``/``--key``) it presents the operator's certificate on the
Directory's mesh port; in plain mode each call carries a proof made with the
service credential in the data dir's ``secrets.json`` (readable only by whoever
may read the data dir's secrets).
"""

from __future__ import annotations

import getpass
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.servers.runtime.channels import calling_channel, proofs_for
from procall.servers.runtime.identity import ProofSigner, role_target
from procall.servers.runtime.policy import Roles

__all__ = [
    "DEFAULT_DATA_DIR",
    "AdminError",
    "AdminUsageError",
    "DirectoryTarget",
    "Metadata",
    "UCServerTarget",
    "admin_session",
    "admin_target",
    "directory_address",
    "error_text",
    "operator_signer",
    "ucserver_target",
    "ucserver_address",
]

Metadata = tuple[tuple[str, str], ...]

#: Where ``procall up`` keeps its data by default (``.procall/datacenter``).
DEFAULT_DATA_DIR = Path(".procall") / "datacenter"
_DETAILS_KEY = "grpc-status-details-bin"
#: The server id the admin commands prove as the operator in plain mode.
_OPERATOR_ID = "procall-admin"


class AdminError(Exception):
    """An admin command failed (exit 1); the message is one line for the user."""


class AdminUsageError(AdminError):
    """The command line does not say enough to run the command (exit 2)."""


@dataclass(frozen=True)
class DirectoryTarget:
    """Where the admin commands reach the Directory, and how they prove who calls."""

    address: str
    #: TLS credentials (the CA, and the operator's certificate on the mesh port).
    credentials: grpc.ChannelCredentials | None = None
    #: Sent with every call (an administrator's session token).
    metadata: Metadata = ()
    #: Signs a fresh plain-mode proof of the operator for every call.
    signer: ProofSigner | None = None

    def channel(self) -> grpc.aio.Channel:
        """A new channel to the Directory whose calls prove the caller."""
        extra = proofs_for(self.signer, role_target("directory")) if self.signer else None
        return calling_channel(
            self.address, credentials=self.credentials, metadata=self.metadata, extra=extra
        )


def directory_address(explicit: str | None, data_dir: Path | None) -> str:
    """The Directory's ``host:port`` for clients.

    In order: ``--directory``, ``$PROCALL_DIRECTORY_ADDRESS``, then the
    ``endpoints.json`` a running ``procall up`` wrote into ``--data-dir`` (default
    ``.procall/datacenter``).
    """
    if explicit:
        return explicit
    if env := os.environ.get("PROCALL_DIRECTORY_ADDRESS"):
        return env
    return str(_endpoint("directory", data_dir, "--directory HOST:PORT")["address"])


_LABELS = {"directory": "Directory", "ucserver": "UCServer"}


def _endpoint(role: str, data_dir: Path | None, option: str) -> dict[str, Any]:
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
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("role") == role and entry.get("address"):
            return entry
    raise AdminError(f"{path} lists no {label}")


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AdminError(f"cannot read the {what} {path}: {exc.strerror}") from None


def operator_signer(data_dir: Path | None) -> ProofSigner:
    """The operator's plain-mode proofs: the service credential of ``procall up``'s data dir."""
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
    return ProofSigner(str(credential), Roles.OPERATOR, _OPERATOR_ID)


def _ca_of(args: Any) -> bytes | None:
    """The CA certificate verifying servers: ``--cacert``, else the data dir's (TLS)."""
    if args.cacert is not None:
        return _read(Path(args.cacert), "CA certificate")
    if args.directory or os.environ.get("PROCALL_DIRECTORY_ADDRESS"):
        return None
    try:
        entry = _endpoint("directory", args.data_dir, "--directory HOST:PORT")
    except AdminUsageError:
        return None
    ca_file = str(entry.get("ca_file") or "")
    return _read(Path(ca_file), "CA certificate") if ca_file else None


def ucserver_address(args: Any) -> str:
    """The UCServer the admin commands log in at (``--ucserver``, the environment, or the
    data dir of a running ``procall up``)."""
    address = args.ucserver or os.environ.get("PROCALL_UCSERVER_ADDRESS") or ""
    if not address:
        address = str(_endpoint("ucserver", args.data_dir, "--ucserver HOST:PORT")["address"])
    return str(address)


async def admin_session(args: Any, timeout: float = 15.0) -> tuple[str, Metadata, bytes | None]:
    """Log in as the administrator ``--user`` at a UCServer: (its address, the call
    metadata with the session token, the CA certificate when TLS is used)."""
    if not args.admin_user:
        raise AdminUsageError("this command needs an administrator: pass --user NAME")
    ca = _ca_of(args)
    return ucserver_address(args), await _login(args, ca, timeout), ca


async def _login(args: Any, ca: bytes | None, timeout: float) -> Metadata:
    user = args.admin_user
    address = ucserver_address(args)
    password = os.environ.get("PROCALL_PASSWORD")
    if password is None:
        password = getpass.getpass(f"password of {user}: ")
    credentials = grpc.ssl_channel_credentials(root_certificates=ca) if ca else None
    async with calling_channel(address, credentials=credentials) as channel:
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


async def admin_target(args: Any, timeout: float = 15.0) -> DirectoryTarget:
    """The Directory the admin command calls, and the proof of its caller (module doc).

    ``args`` carries ``directory``, ``data_dir``, ``admin_user``, ``ucserver``,
    ``cacert``, ``cert`` and ``key`` (``None`` when not given).
    """
    ca = _ca_of(args)
    if args.admin_user:
        metadata = await _login(args, ca, timeout)
        credentials = grpc.ssl_channel_credentials(root_certificates=ca) if ca else None
        return DirectoryTarget(
            directory_address(args.directory, args.data_dir), credentials, metadata
        )
    if args.directory or os.environ.get("PROCALL_DIRECTORY_ADDRESS"):
        address = directory_address(args.directory, args.data_dir)
        if ca is None:
            return DirectoryTarget(address, signer=operator_signer(args.data_dir))
        if args.cert is None or args.key is None:
            raise AdminUsageError(
                "over TLS the operator proves itself with --cert and --key (an operator "
                "certificate from `procall certs`); or pass --user NAME"
            )
        return DirectoryTarget(
            address,
            grpc.ssl_channel_credentials(
                root_certificates=ca,
                private_key=_read(Path(args.key), "key"),
                certificate_chain=_read(Path(args.cert), "certificate"),
            ),
        )
    entry = _endpoint("directory", args.data_dir, "--directory HOST:PORT")
    if ca is None:
        return DirectoryTarget(str(entry["address"]), signer=operator_signer(args.data_dir))
    # a `procall up` with TLS: the local operator's certificate on the mesh port
    folder = Path(str(entry["ca_file"])).parent
    key = Path(args.key) if args.key else folder / "operator.local.key"
    cert = Path(args.cert) if args.cert else folder / "operator.local.pem"
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=_read(key, "operator key"),
        certificate_chain=_read(cert, "operator certificate"),
    )
    return DirectoryTarget(str(entry.get("mesh_address") or entry["address"]), credentials)


@dataclass(frozen=True)
class UCServerTarget:
    """Where the admin commands call the AdminService (a UCServer), as an administrator."""

    address: str
    credentials: grpc.ChannelCredentials | None
    #: An administrator's session token.
    metadata: Metadata

    def channel(self) -> grpc.aio.Channel:
        """A new channel to the UCServer whose calls carry the administrator's token."""
        return calling_channel(self.address, credentials=self.credentials, metadata=self.metadata)

    async def logout(self) -> None:
        """End the administrator's session (best effort: it expires anyway)."""
        async with self.channel() as channel:
            try:
                await session_grpc.SessionServiceStub(channel).Logout(
                    session_pb.LogoutRequest(), timeout=5
                )
            except grpc.aio.AioRpcError:
                pass


async def ucserver_target(args: Any, timeout: float = 15.0) -> UCServerTarget:
    """The UCServer the AdminService commands call, logged in as ``--user`` (the
    AdminService serves administrators' sessions only)."""
    if not args.admin_user:
        raise AdminUsageError(
            "this command calls the AdminService, which serves administrators: "
            "pass --user NAME (an administrator; password from $PROCALL_PASSWORD or a prompt)"
        )
    ca = _ca_of(args)
    metadata = await _login(args, ca, timeout)
    credentials = grpc.ssl_channel_credentials(root_certificates=ca) if ca else None
    return UCServerTarget(ucserver_address(args), credentials, metadata)


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
