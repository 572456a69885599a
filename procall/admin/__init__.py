"""``procall admin``: administration commands that talk to the servers over gRPC.

``add_admin_parser(subparsers)`` adds
``admin users create|delete|password|import|list|show|set-home``,
``admin status|sessions|licenses|audit``, ``admin config list|get|set|edit`` and
``admin move|rebalance|drain`` to the ``procall`` command line; all but ``users`` call
the AdminService of a UCServer and need an administrator (``--user NAME``). Each command
finds the Directory through ``--directory HOST:PORT``,
``$PROCALL_DIRECTORY_ADDRESS`` or the ``endpoints.json`` of a running ``procall up``
(``--data-dir``), and proves who calls: an administrator (``--user NAME``, logged in at
a UCServer, password from ``$PROCALL_PASSWORD`` or a prompt) or the machine's operator
(the service credential in ``--data-dir``). The options may come after ``admin``, after
``users`` or after the command. Failures print one line and exit 1 (an import with
failed rows too); 2 is for usage errors only.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from procall.admin._config import add_config_parser
from procall.admin._moves import add_move_parsers
from procall.admin._system import add_system_parsers
from procall.admin._users import run_users_command

__all__ = ["add_admin_parser"]


def add_admin_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``admin`` command (with ``users ...``) to ``procall``'s subparsers."""
    admin: argparse.ArgumentParser = subparsers.add_parser(
        "admin", help="administer users and see the system (servers, sessions, licenses, audit)"
    )
    parser_class = type(admin)
    _add_where(admin, None)
    areas = admin.add_subparsers(dest="admin_area", required=True, parser_class=parser_class)
    users = areas.add_parser("users", help="list, show, import users; set home servers")
    _add_where(users, argparse.SUPPRESS)

    # after the command too; a position without them leaves what an earlier one set
    common = argparse.ArgumentParser(add_help=False)
    _add_where(common, argparse.SUPPRESS)
    add_system_parsers(areas, common)
    add_config_parser(areas, common)

    commands = users.add_subparsers(dest="users_command", required=True, parser_class=parser_class)
    listing = commands.add_parser("list", parents=[common], help="list users")
    listing.add_argument("--home-server", metavar="ID", help="only users homed on this UCServer")
    listing.add_argument("--search", metavar="TEXT", help="only users whose name, mail, ... match")
    listing.add_argument("--limit", type=int, default=0, help="show at most this many users")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")

    show = commands.add_parser("show", parents=[common], help="show one user")
    show.add_argument("user", help="username or user id")
    show.add_argument("--json", action="store_true", help="print JSON")

    set_home = commands.add_parser("set-home", parents=[common], help="set a user's home server")
    set_home.add_argument("user", help="username or user id")
    set_home.add_argument("server", help="UCServer id, e.g. ucserver-2 ('' to unassign)")

    importing = commands.add_parser(
        "import", parents=[common], help="create users from a CSV file (SQL directory)"
    )
    importing.add_argument("file", help="CSV file; first line names the columns")
    importing.add_argument(
        "--concurrency", type=int, default=4, help="requests in flight (default 4)"
    )
    create = commands.add_parser("create", parents=[common], help="create a user")
    create.add_argument("username")
    create.add_argument("--display-name", help="the name people see (default: the username)")
    create.add_argument("--home-server", metavar="ID", help="the user's home UCServer")
    create.add_argument("--mail")
    create.add_argument("--phone")
    create.add_argument("--admin", action="store_true", help="an administrator")
    create.add_argument(
        "--no-password", action="store_true", help="no password yet (cannot log in)"
    )
    delete = commands.add_parser("delete", parents=[common], help="delete a user")
    delete.add_argument("user", help="username or user id")
    delete.add_argument("--yes", action="store_true", help="do not ask")
    password = commands.add_parser(
        "password", parents=[common], help="set a user's password ($PROCALL_NEW_PASSWORD or asked)"
    )
    password.add_argument("user", help="username or user id")
    users.set_defaults(handler=run_users_command)
    add_move_parsers(areas, common)
    return admin


def _add_where(parser: argparse.ArgumentParser, default: Any) -> None:
    """``--directory``, ``--data-dir``, ``--user``, ``--ucserver`` and the TLS files, with the
    given default."""
    parser.add_argument(
        "--directory",
        metavar="HOST:PORT",
        default=default,
        help="Directory address (default: from --data-dir)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=default,
        help="data dir of a running `procall up` (default .procall/datacenter); without "
        "--user, the commands act as this machine's operator with its credential",
    )
    parser.add_argument(
        "--user",
        dest="admin_user",
        metavar="NAME",
        default=default,
        help="log in as this administrator (password from $PROCALL_PASSWORD or a prompt)",
    )
    parser.add_argument(
        "--ucserver",
        metavar="HOST:PORT",
        default=default,
        help="UCServer to log in at with --user (default: $PROCALL_UCSERVER_ADDRESS or "
        "from --data-dir)",
    )
    parser.add_argument(
        "--cacert",
        type=Path,
        default=default,
        help="CA certificate verifying --directory (TLS; default plaintext)",
    )
    parser.add_argument(
        "--cert", type=Path, default=default, help="client certificate for mutual TLS"
    )
    parser.add_argument("--key", type=Path, default=default, help="key of --cert")
