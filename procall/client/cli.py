"""``procall client``: log in as a user and set presence, manage contacts, watch events.

::

    procall client [--server HOST:PORT | --data-dir DIR] login USER [--password P] COMMAND
        presence set AVAILABILITY [--note TEXT] [--for USER_ID]
        presence get USER_ID...
        contacts add USER... | contacts remove USER_ID... | contacts list
        watch
        call USER [--tone HZ | --wav FILE] [--record FILE] [--seconds N] [--host-address A]
        answer [--call-id ID] [--wait N] [--tone HZ | --wav FILE] [--record FILE] [--seconds N]
        hangup CALL_ID

``--server`` and ``--data-dir`` may also come after ``login USER`` or at the end;
``contacts add`` takes usernames (what a person types) or user ids.

Each invocation logs in (through any UCServer; the client goes on to the home
server), runs its command and logs out; ``watch`` prints the contacts'
presence, then one line per event until Ctrl-C, reconnecting and resuming by
itself. ``call`` and ``answer`` carry a call's audio with a softphone (see
``procall.client._cli_calls``). Logging out ends a session: when it was the user's only one, the
server shows the user offline again, so keep a ``watch`` (or another client)
running to hold a presence set with ``presence set``.

The server is ``--server``, else ``$PROCALL_SERVER``, else a UCServer from
the ``endpoints.json`` of a running ``procall up`` (``--data-dir``, default
``.procall/datacenter``). TLS: ``--cacert`` (or ``$PROCALL_CACERT``) names the CA
that verifies the server; from ``endpoints.json`` the CA it lists is used. The
password comes from ``--password``,
``$PROCALL_PASSWORD`` or a prompt. Failures print one line
``procall: error: ...`` and exit 1; 2 is for usage errors only (bad arguments,
no server or password given). When the server says when to try again (a
locked account, a busy server), the line says when.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from procall.client._cli_calls import (
    CALL_ACTIONS,
    add_call_parsers,
    audio_source,
    run_call_action,
)
from procall.client._client import ProcallClient
from procall.client._errors import ProcallClientError
from procall.client._events import SessionClosed
from procall.client._format import format_event, format_presence
from procall.client._models import Availability
from procall.client._options import tls_channels

__all__ = [
    "CLIENT_NAME",
    "ClientCliError",
    "add_client_parser",
    "run_client",
    "run_client_command",
    "server_ca_file",
]

#: ``client_name`` of sessions the command line opens.
CLIENT_NAME = "procall-cli/0.1"
#: Where ``procall up`` keeps its data by default.
DEFAULT_DATA_DIR = Path(".procall") / "datacenter"
EXIT_FAILED = 1
EXIT_USAGE = 2


class ClientCliError(Exception):
    """A problem before logging in; the message is one line for the user. ``usage``: the
    command line does not say enough (exit 2), else what it names is unusable (exit 1)."""

    def __init__(self, message: str, *, usage: bool = True) -> None:
        super().__init__(message)
        self.usage = usage


def _availability(text: str) -> Availability:
    try:
        return Availability.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_where(parser: argparse.ArgumentParser, *, first: bool) -> None:
    """``--server`` and ``--data-dir``; on the parsers after the first, an option that is not
    given leaves what an earlier position set (``SUPPRESS``)."""
    default: Any = None if first else argparse.SUPPRESS
    parser.add_argument(
        "--server",
        metavar="HOST:PORT",
        default=default,
        help="any UCServer (default: from --data-dir)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=default,
        help="data dir of a running `procall up` (default .procall/datacenter)",
    )
    parser.add_argument(
        "--cacert",
        type=Path,
        default=default,
        help="CA certificate verifying the server (TLS; default: the one endpoints.json names)",
    )


def add_client_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``client`` command to ``procall``'s subparsers; its handler is set as default."""
    client: argparse.ArgumentParser = subparsers.add_parser(
        "client",
        help="log in as a user: presence, contacts, watch events",
        description="Log in as a user, then set presence, manage contacts or watch events.",
    )
    parser_class = type(client)
    _add_where(client, first=True)
    steps = client.add_subparsers(dest="client_step", required=True, parser_class=parser_class)
    login = steps.add_parser("login", help="log in as USER, then run one command")
    login.add_argument("user", help="username")
    login.add_argument("--password", help="password (default: $PROCALL_PASSWORD, else a prompt)")
    _add_where(login, first=False)
    actions = login.add_subparsers(dest="client_action", required=True, parser_class=parser_class)

    presence = actions.add_parser("presence", help="set or show presence")
    presence_actions = presence.add_subparsers(
        dest="presence_action", required=True, parser_class=parser_class
    )
    setting = presence_actions.add_parser("set", help="set your availability (and note)")
    setting.add_argument(
        "availability",
        type=_availability,
        help="available, away, busy, do-not-disturb (dnd), be-right-back (brb) or offline",
    )
    setting.add_argument("--note", help="free text shown with your presence")
    setting.add_argument("--for", dest="for_user", metavar="USER_ID", help="set a delegator's")
    getting = presence_actions.add_parser("get", help="show users' presence")
    getting.add_argument("user_ids", nargs="+", metavar="USER_ID")

    contacts = actions.add_parser("contacts", help="add, remove or list contacts")
    contact_actions = contacts.add_subparsers(
        dest="contacts_action", required=True, parser_class=parser_class
    )
    contact_actions.add_parser("add", help="watch users (usernames or user ids)").add_argument(
        "user_ids", nargs="+", metavar="USER"
    )
    contact_actions.add_parser("remove", help="stop watching users").add_argument(
        "user_ids", nargs="+", metavar="USER_ID"
    )
    contact_actions.add_parser("list", help="show contacts with their presence")

    watch = actions.add_parser("watch", help="print events as they come, until Ctrl-C")
    calls = add_call_parsers(actions)
    for leaf in (setting, getting, watch, *calls, *contact_actions.choices.values()):
        _add_where(leaf, first=False)  # also at the end of the command line
    client.set_defaults(handler=run_client_command)
    return client


def _split_users(values: list[str]) -> tuple[list[str], list[str]]:
    """(user ids, usernames): what parses as a UUID is a user id, the rest usernames."""
    ids: list[str] = []
    names: list[str] = []
    for value in values:
        try:
            uuid.UUID(value)
        except ValueError:
            names.append(value)
        else:
            ids.append(value)
    return ids, names


def server_address(explicit: str | None, data_dir: Path | None) -> str:
    """The UCServer to log in through: ``--server``, ``$PROCALL_SERVER`` or endpoints.json."""
    if explicit:
        return explicit
    if data_dir is None and (env := os.environ.get("PROCALL_SERVER")):
        return env
    folder = data_dir or DEFAULT_DATA_DIR
    path = folder / "endpoints.json"
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClientCliError(
            f"no server: pass --server HOST:PORT, or --data-dir of a running `procall up` "
            f"({path} does not exist)"
        ) from None
    except (OSError, ValueError) as exc:
        raise ClientCliError(f"cannot read {path}: {exc.__class__.__name__}", usage=False) from None
    found = [
        str(entry["address"])
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, dict) and entry.get("role") == "ucserver" and entry.get("address")
    ]
    if not found:
        raise ClientCliError(f"{path} lists no UCServer", usage=False)
    return random.choice(found)  # any one will do: the client goes on to the home server


def server_ca_file(cacert: Path | None, server: str | None, data_dir: Path | None) -> str:
    """The CA file verifying the server; "" for plaintext.

    ``--cacert``, else ``$PROCALL_CACERT``, else (when the server comes from
    ``endpoints.json``) the ``ca_file`` that file lists.
    """
    if cacert is not None:
        return str(cacert)
    if env := os.environ.get("PROCALL_CACERT"):
        return env
    if server or (data_dir is None and os.environ.get("PROCALL_SERVER")):
        return ""
    path = (data_dir or DEFAULT_DATA_DIR) / "endpoints.json"
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("role") == "ucserver" and entry.get("ca_file"):
            return str(entry["ca_file"])
    return ""


def password_for(args: argparse.Namespace, prompt: Callable[[str], str] = getpass.getpass) -> str:
    """``--password``, else ``$PROCALL_PASSWORD``, else a prompt on a terminal."""
    if args.password is not None:
        return str(args.password)
    if (env := os.environ.get("PROCALL_PASSWORD")) is not None:
        return env
    if not sys.stdin.isatty():
        raise ClientCliError("no password: pass --password or set PROCALL_PASSWORD")
    try:
        return prompt(f"password for {args.user}: ")
    except EOFError:
        raise ClientCliError("no password given") from None


def _error_line(error: ProcallClientError, now: Callable[[], float] = time.time) -> str:
    text = f"{error.code.name}: {error.message}" if error.message else error.code.name
    if error.field_violations:
        fields = "; ".join(f"{f}: {d}" for f, d in error.field_violations)
        if fields not in text:
            text += f" ({fields})"
    if error.retry_after is not None and error.retry_after > 0:
        seconds = max(1, round(error.retry_after))
        at = time.strftime("%H:%M:%S", time.localtime(now() + seconds))
        text += f" (try again in {seconds} s, at {at})"
    return " ".join(text.split())


async def run_client(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run a parsed ``procall client`` command; returns the exit code (errors go to stderr)."""
    out = out or sys.stdout
    try:
        address = server_address(args.server, args.data_dir)
        ca_file = server_ca_file(getattr(args, "cacert", None), args.server, args.data_dir)
        factory = tls_channels(ca_file) if ca_file else None
        password = password_for(args)
        source = audio_source(args)
    except ValueError as exc:  # an unusable --wav or --record
        print(f"procall: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ClientCliError as exc:
        print(f"procall: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if exc.usage else EXIT_FAILED
    except OSError as exc:
        print(f"procall: error: cannot read the CA certificate: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    watching = args.client_action in ("watch", "call", "answer")
    try:
        client = await ProcallClient.login(
            address,
            args.user,
            password,
            client_name=CLIENT_NAME,
            connect=watching,
            channel_factory=factory,
        )
    except ProcallClientError as error:
        print(f"procall: error: login at {address} failed: {_error_line(error)}", file=sys.stderr)
        return EXIT_FAILED
    try:
        if args.client_action in CALL_ACTIONS:
            return await run_call_action(client, args, out, source)
        if watching:
            return await _watch(client, out)
        await _run_action(client, args, out)
        return 0
    except ProcallClientError as error:
        print(f"procall: error: {_error_line(error)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        try:
            await asyncio.wait_for(client.logout(), client.options.call_timeout)
        except (ProcallClientError, TimeoutError):
            await client.close()


async def _run_action(client: ProcallClient, args: argparse.Namespace, out: TextIO) -> None:
    action = args.client_action
    if action == "presence" and args.presence_action == "set":
        presence = await client.set_presence(
            args.availability, note=args.note, user_id=args.for_user or ""
        )
        print(format_presence(presence), file=out)
    elif action == "presence":
        for presence in await client.get_presence(args.user_ids):
            print(format_presence(presence), file=out)
    elif args.contacts_action == "add":
        ids, names = _split_users(args.user_ids)
        for presence in await client.add_contacts(ids, usernames=names):
            print(format_presence(presence), file=out)
    elif args.contacts_action == "remove":
        await client.remove_contacts(args.user_ids)
        print(f"removed {len(args.user_ids)} contact(s)", file=out)
    else:
        for presence in await client.contacts():
            print(format_presence(presence), file=out)


async def _watch(client: ProcallClient, out: TextIO) -> int:
    """Print the contacts, then every event, until Ctrl-C (0) or the server ends the session (1)."""
    for presence in await client.contacts():
        print(f"contact   {format_presence(presence)}", file=out, flush=True)
    try:
        async for event in client.events():
            print(format_event(event), file=out, flush=True)
            if isinstance(event, SessionClosed):
                print(f"procall: error: the server closed the session: {event.reason}",
                      file=sys.stderr)  # fmt: skip
                return EXIT_FAILED
    except asyncio.CancelledError:  # Ctrl-C under asyncio.run: stop watching, log out
        current = asyncio.current_task()
        if current is not None:
            current.uncancel()
    return 0


def run_client_command(args: argparse.Namespace) -> int:
    """The ``handler`` of ``procall client``: runs ``run_client`` on a fresh event loop."""
    try:
        return asyncio.run(run_client(args))
    except KeyboardInterrupt:  # Ctrl-C before or after the watch loop ran
        return 130
