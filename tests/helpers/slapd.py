"""A throwaway OpenLDAP ``slapd`` with an Active-Directory-like schema, for tests.

See /work/shared/RECIPES.md ("OpenLDAP"). The server runs in the foreground as a child process
(``slapd -d 0``) with a ``slapd.conf`` written into a private temporary directory:

* schemas ``core``, ``cosine``, ``inetorgperson`` plus ``ad.schema`` written here, which defines
  ``sAMAccountName`` and ``userPrincipalName`` with their real AD OIDs and the AUXILIARY classes
  ``user`` and ``group`` (AD's OIDs), so entries look like ``inetOrgPerson`` + ``user`` and
  ``groupOfNames`` + ``group``;
* the ``memberof`` overlay, so a user's ``memberOf`` lists its groups as on AD. ``memberOf`` is
  operational: ask for it by name;
* passwords: users can bind with their own DN; ``userPassword`` is never readable.

OpenLDAP, unlike AD, does not accept ``user@domain`` or ``DOMAIN\\user`` as bind names: code
must search the user's DN (by ``sAMAccountName``) and bind with the DN.
"""

from __future__ import annotations

import base64
import hashlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import ldap3

from procall.launch.redis import free_port

__all__ = [
    "DEFAULT_GROUPS",
    "DEFAULT_USERS",
    "AdDirectory",
    "AdGroup",
    "AdUser",
    "SlapdError",
    "SlapdServer",
    "find_slapd",
    "reset_directory",
    "seed_ad_like",
    "ssha",
    "slapd_unavailable_reason",
]

SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")

AD_SCHEMA = """\
# Active-Directory-like attributes and classes (real AD OIDs), for tests only.
attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName'
    EQUALITY caseIgnoreMatch
    SUBSTR caseIgnoreSubstringsMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{256}
    SINGLE-VALUE )

attributetype ( 1.2.840.113556.1.4.656 NAME 'userPrincipalName'
    EQUALITY caseIgnoreMatch
    SUBSTR caseIgnoreSubstringsMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{1024}
    SINGLE-VALUE )

objectclass ( 1.2.840.113556.1.5.9 NAME 'user'
    SUP top AUXILIARY
    MAY ( sAMAccountName $ userPrincipalName $ displayName $ mail $
          telephoneNumber $ mobile $ description ) )

objectclass ( 1.2.840.113556.1.5.8 NAME 'group'
    SUP top AUXILIARY
    MAY ( sAMAccountName $ displayName $ mail $ description ) )
"""


class SlapdError(RuntimeError):
    """slapd did not start, or an LDAP operation of the helper failed."""


def find_slapd() -> str | None:
    """Path of the ``slapd`` binary (it lives in ``/usr/sbin``, often not on ``PATH``)."""
    found = shutil.which("slapd")
    if found:
        return found
    fallback = Path("/usr/sbin/slapd")
    return str(fallback) if os.access(fallback, os.X_OK) else None


def slapd_unavailable_reason() -> str | None:
    """Why a throwaway slapd cannot run here, or ``None`` if it can."""
    if find_slapd() is None:
        return "slapd not found (apt-get install slapd ldap-utils)"
    for schema in ("core", "cosine", "inetorgperson"):
        if not (SCHEMA_DIR / f"{schema}.schema").is_file():
            return f"OpenLDAP schema {SCHEMA_DIR / schema}.schema not found"
    for module in ("back_mdb", "memberof"):
        if not (MODULE_DIR / f"{module}.so").exists():
            return f"OpenLDAP module {MODULE_DIR / module}.so not found"
    return None


def _limit_open_files() -> None:  # runs in the child between fork and exec
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft > 1024:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))


class SlapdServer:
    """An OpenLDAP server with an empty AD-like directory under ``base_dn``.

    Args:
        base_dn: Suffix of the single ``mdb`` database.
        port: TCP port on 127.0.0.1; a free one is picked when omitted.
        admin_password: Password of the root DN ``cn=admin,<base_dn>``.

    :meth:`start` also creates the base entry (a ``dcObject``/``organization``). Use as a
    context manager or call :meth:`close` to stop it and delete its files.
    """

    def __init__(
        self,
        base_dn: str = "dc=example,dc=com",
        *,
        port: int | None = None,
        admin_password: str = "admin-secret",
        startup_timeout: float = 10.0,
    ) -> None:
        executable = find_slapd()
        if executable is None:
            raise SlapdError("slapd not found")
        self.executable = executable
        self.base_dn = base_dn
        self.admin_dn = f"cn=admin,{base_dn}"
        self.admin_password = admin_password
        self.host = "127.0.0.1"
        self.port = port if port is not None else free_port(self.host)
        self._startup_timeout = startup_timeout
        self._base: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``ldap://127.0.0.1:PORT``."""
        return f"ldap://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id while running."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the slapd process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def base_path(self) -> Path:
        """Private directory with ``slapd.conf``, ``ad.schema``, ``db/`` and ``slapd.log``."""
        if self._base is None:
            raise SlapdError("server has no files yet (call start())")
        return self._base

    def start(self) -> Self:
        """Start slapd, wait until it accepts connections, create the base entry."""
        if self.running:
            return self
        first = self._base is None
        if first:
            self._base = Path(tempfile.mkdtemp(prefix="procall-slapd-"))
            (self._base / "db").mkdir()
            (self._base / "ad.schema").write_text(AD_SCHEMA)
            (self._base / "slapd.conf").write_text(self._config())
        log_path = self.base_path / "slapd.log"
        with open(log_path, "ab") as log:
            self._process = subprocess.Popen(
                [self.executable, "-d", "0", "-h", f"{self.url}/",
                 "-f", str(self.base_path / "slapd.conf")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_limit_open_files,
            )  # fmt: skip
        try:
            self._wait_listening(log_path)
            if first:
                self.add_entry(
                    self.base_dn,
                    ["top", "dcObject", "organization"],
                    {"dc": self.base_dn.split(",")[0].split("=")[1], "o": "procall tests"},
                )
        except BaseException:
            self.kill()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop slapd gracefully (SIGTERM, SIGKILL after ``timeout``); keeps the data."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None

    def kill(self) -> None:
        """Kill slapd with SIGKILL (for fault tests); :meth:`start` brings it back."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(signal.SIGKILL)
            self._process.wait()
            self._process = None

    def close(self) -> None:
        """Stop slapd and delete its files."""
        try:
            self.stop()
        finally:
            if self._base is not None:
                shutil.rmtree(self._base, ignore_errors=True)
                self._base = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<SlapdServer {self.url} {self.base_dn} {state}>"

    # -- directory access ---------------------------------------------------------------

    def connect(self, user: str | None = None, password: str | None = None) -> ldap3.Connection:
        """A bound synchronous ldap3 connection (as the admin by default)."""
        server = ldap3.Server(self.host, port=self.port, get_info=ldap3.NONE, connect_timeout=5)
        return ldap3.Connection(
            server,
            user=user if user is not None else self.admin_dn,
            password=password if password is not None else self.admin_password,
            auto_bind=ldap3.AUTO_BIND_NO_TLS,
            raise_exceptions=True,
            receive_timeout=10,
        )

    def add_entry(
        self,
        dn: str,
        object_classes: Sequence[str],
        attributes: dict[str, str | list[str]],
        connection: ldap3.Connection | None = None,
    ) -> None:
        """Add one entry as the admin."""
        conn = connection or self.connect()
        try:
            conn.add(dn, list(object_classes), attributes)
        finally:
            if connection is None:
                conn.unbind()

    def add_ldif(self, text: str) -> None:
        """Add the entries of an LDIF text with ``ldapadd`` as the admin."""
        ldapadd = shutil.which("ldapadd")
        if ldapadd is None:
            raise SlapdError("ldapadd not found (apt-get install ldap-utils)")
        result = subprocess.run(
            [ldapadd, "-x", "-H", self.url, "-D", self.admin_dn, "-w", self.admin_password],
            input=text.encode(), capture_output=True, check=False, timeout=30,
        )  # fmt: skip
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace").strip()
            raise SlapdError(f"ldapadd failed (exit {result.returncode}): {output}")

    # -- internals ----------------------------------------------------------------------

    def _config(self) -> str:
        base = self.base_path
        includes = "\n".join(
            f"include {SCHEMA_DIR / name}.schema" for name in ("core", "cosine", "inetorgperson")
        )
        return f"""\
{includes}
include {base / "ad.schema"}

pidfile {base / "slapd.pid"}
argsfile {base / "slapd.args"}
modulepath {MODULE_DIR}
moduleload back_mdb
moduleload memberof

database mdb
maxsize 268435456
suffix "{self.base_dn}"
rootdn "{self.admin_dn}"
rootpw {self.admin_password}
directory {base / "db"}
index objectClass eq
index sAMAccountName,userPrincipalName,cn,mail eq
index member eq

overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE

access to attrs=userPassword
    by self write
    by anonymous auth
    by * none
access to *
    by * read
"""

    def _wait_listening(self, log_path: Path) -> None:
        process = self._process
        assert process is not None
        deadline = time.monotonic() + self._startup_timeout
        while True:
            code = process.poll()
            if code is not None:
                raise SlapdError(f"slapd exited with status {code}:\n{_tail(log_path)}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SlapdError(
                    f"slapd did not listen on {self.url} within {self._startup_timeout:g} s:\n"
                    f"{_tail(log_path)}"
                )
            time.sleep(0.01)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- AD-like content ------------------------------------------------------------------------


@dataclass(frozen=True)
class AdUser:
    """A user to seed: ``inetOrgPerson`` + AD ``user``, RDN ``cn=<display name>``."""

    sam: str
    password: str
    given_name: str
    surname: str
    telephone: str = ""
    mobile: str = ""

    @property
    def display_name(self) -> str:
        """``Given Surname``, also the entry's ``cn``."""
        return f"{self.given_name} {self.surname}"


@dataclass(frozen=True)
class AdGroup:
    """A group to seed: ``groupOfNames`` + AD ``group``, members given by ``sAMAccountName``."""

    name: str
    members: tuple[str, ...]
    description: str = ""


DEFAULT_USERS: tuple[AdUser, ...] = (
    AdUser("alice", "alice-pass", "Alice", "Anderson", "+1 555 0101", "+1 555 0201"),
    AdUser("bob", "bob-pass", "Bob", "Brown", "+1 555 0102"),
    AdUser("carol", "carol-pass", "Carol", "Clark", "+1 555 0103"),
    AdUser("dave", "dave-pass", "Dave", "Davis"),
)
DEFAULT_GROUPS: tuple[AdGroup, ...] = (
    AdGroup("sales", ("alice", "bob"), "Sales team"),
    AdGroup("support", ("carol",), "Support desk"),
    AdGroup("admins", ("alice",), "procall administrators"),
)


@dataclass
class AdDirectory:
    """What :func:`seed_ad_like` created, with the DNs code under test needs."""

    url: str
    base_dn: str
    users_dn: str
    groups_dn: str
    admin_dn: str
    admin_password: str
    domain: str
    users: dict[str, AdUser] = field(default_factory=dict)
    groups: dict[str, AdGroup] = field(default_factory=dict)

    def user_dn(self, sam: str) -> str:
        """DN of a seeded user."""
        return f"cn={self.users[sam].display_name},{self.users_dn}"

    def group_dn(self, name: str) -> str:
        """DN of a seeded group."""
        return f"cn={name},{self.groups_dn}"

    def upn(self, sam: str) -> str:
        """``userPrincipalName`` of a seeded user (``sam@domain``)."""
        return f"{sam}@{self.domain}"


def ssha(password: str) -> str:
    """``{SSHA}`` hash of ``password`` as slapd verifies it."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _domain(base_dn: str) -> str:
    return ".".join(
        rdn.split("=", 1)[1] for rdn in base_dn.split(",") if rdn.lower().startswith("dc=")
    )


def reset_directory(server: SlapdServer) -> None:
    """Delete every entry below the base entry (deepest first)."""
    conn = server.connect()
    try:
        conn.search(server.base_dn, "(objectClass=*)", ldap3.LEVEL, attributes=[])
        top = [entry["dn"] for entry in conn.response if entry.get("type") == "searchResEntry"]
        for dn in top:
            conn.search(dn, "(objectClass=*)", ldap3.SUBTREE, attributes=[])
            below = [e["dn"] for e in conn.response if e.get("type") == "searchResEntry"]
            for child in sorted(below, key=lambda d: d.count(","), reverse=True):
                conn.delete(child)
    finally:
        conn.unbind()


def seed_ad_like(
    server: SlapdServer,
    users: Iterable[AdUser] = DEFAULT_USERS,
    groups: Iterable[AdGroup] = DEFAULT_GROUPS,
) -> AdDirectory:
    """Create ``ou=users`` and ``ou=groups`` with AD-like users and groups.

    Users are ``inetOrgPerson`` + ``user`` with ``sAMAccountName``, ``userPrincipalName``
    (``sam@domain``), ``displayName``, ``mail``, ``telephoneNumber`` and an ``{SSHA}``
    ``userPassword``; groups are ``groupOfNames`` + ``group`` whose ``member`` values make the
    overlay compute each user's ``memberOf``.
    """
    directory = AdDirectory(
        url=server.url,
        base_dn=server.base_dn,
        users_dn=f"ou=users,{server.base_dn}",
        groups_dn=f"ou=groups,{server.base_dn}",
        admin_dn=server.admin_dn,
        admin_password=server.admin_password,
        domain=_domain(server.base_dn) or "example.com",
        users={user.sam: user for user in users},
        groups={group.name: group for group in groups},
    )
    conn = server.connect()
    try:
        for ou in ("users", "groups"):
            server.add_entry(f"ou={ou},{server.base_dn}", ["organizationalUnit"], {"ou": ou}, conn)
        for sam, user in directory.users.items():
            attributes: dict[str, str | list[str]] = {
                "cn": user.display_name,
                "sn": user.surname,
                "givenName": user.given_name,
                "displayName": user.display_name,
                "sAMAccountName": sam,
                "userPrincipalName": directory.upn(sam),
                "mail": f"{sam}@{directory.domain}",
                "uid": sam,
                "userPassword": ssha(user.password),
            }
            if user.telephone:
                attributes["telephoneNumber"] = user.telephone
            if user.mobile:
                attributes["mobile"] = user.mobile
            server.add_entry(
                directory.user_dn(sam), ["top", "inetOrgPerson", "user"], attributes, conn
            )
        for name, group in directory.groups.items():
            unknown = set(group.members) - directory.users.keys()
            if unknown:
                raise SlapdError(f"group {name!r} has unknown members {sorted(unknown)}")
            group_attributes: dict[str, str | list[str]] = {
                "cn": name,
                "sAMAccountName": name,
                "member": [directory.user_dn(sam) for sam in group.members],
            }
            if group.description:
                group_attributes["description"] = group.description
            server.add_entry(
                directory.group_dn(name), ["top", "groupOfNames", "group"], group_attributes, conn
            )
    finally:
        conn.unbind()
    return directory
