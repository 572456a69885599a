"""Talking to the LDAP server: connections, threads, timeouts and failures.

ldap3 is synchronous, so every operation runs in a small dedicated thread pool
and the event loop never blocks. Each wait is bounded twice: by ldap3's own
``connect_timeout`` / ``receive_timeout`` and by an ``asyncio`` deadline around the
thread. Service-account connections are pooled; a pooled connection that turns
out dead (the server restarted) is replaced once, transparently, so the Directory
recovers without a restart. Anything that means "the server does not answer"
becomes ``Unavailable.backend("LDAP directory")``. Password checks bind on a
fresh connection that is closed right after.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import ssl
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import ldap3
from ldap3.core.exceptions import LDAPException, LDAPExceptionError

from procall.errors import Unavailable
from procall.storage.ldap.config import LdapConfig, LdapConfigError

__all__ = ["BACKEND_NAME", "LdapGateway", "LdapSession", "SearchPage"]

BACKEND_NAME = "LDAP directory"
T = TypeVar("T")
_log = logging.getLogger(__name__)

_PAGED_RESULTS = "1.2.840.113556.1.4.319"
_OK_CODES = {0, 4, 32}  # success, sizeLimitExceeded (partial), noSuchObject (empty)
_INVALID_CREDENTIALS = 49

#: Entries of one search page (attribute dicts with "dn") and the paging cookie.
SearchPage = tuple[list[dict[str, Any]], bytes]


class _Broken(Exception):
    """An LDAP operation failed for a reason that means the server is not usable."""


def _unavailable() -> Unavailable:
    return Unavailable.backend(BACKEND_NAME)


class LdapSession:
    """One service connection, borrowed from the pool for several operations."""

    def __init__(self, gateway: LdapGateway, connection: ldap3.Connection, *, reused: bool) -> None:
        self._gateway = gateway
        self.connection = connection
        #: taken from the pool and not yet used: it may predate a server restart
        self.untried = reused
        self.broken = False

    async def search_page(
        self,
        base: str,
        search_filter: str,
        attributes: list[str],
        *,
        page_size: int,
        cookie: bytes | None,
    ) -> SearchPage:
        """One page of a paged subtree search."""
        return await self._gateway.run(
            self,
            lambda conn: _search_page(conn, base, search_filter, attributes, page_size, cookie),
        )

    async def abandon(self, base: str, search_filter: str, cookie: bytes) -> None:
        """End a paged search early so the server frees its state."""
        if cookie and not self.broken:
            await self._gateway.run(
                self, lambda conn: _search_page(conn, base, search_filter, [], 0, cookie)
            )


def _search_page(
    conn: ldap3.Connection,
    base: str,
    search_filter: str,
    attributes: list[str],
    page_size: int,
    cookie: bytes | None,
) -> SearchPage:
    conn.search(
        base,
        search_filter,
        search_scope=ldap3.SUBTREE,
        attributes=attributes or [ldap3.NO_ATTRIBUTES],
        paged_size=page_size,
        paged_cookie=cookie,
    )
    code = conn.result.get("result", 0)
    if code not in _OK_CODES:
        raise _Broken(f"search answered {conn.result.get('description')} ({code})")
    entries = [
        {"dn": item["dn"], **item["attributes"], "_raw": item["raw_attributes"]}
        for item in conn.response or []
        if item.get("type") == "searchResEntry"
    ]
    control = (conn.result.get("controls") or {}).get(_PAGED_RESULTS) or {}
    next_cookie: bytes = (control.get("value") or {}).get("cookie") or b""
    return entries, next_cookie


class LdapGateway:
    """Pooled, bounded access to the configured LDAP server(s)."""

    def __init__(self, config: LdapConfig, *, max_connections: int = 8) -> None:
        self.config = config
        self._max = max_connections
        self._idle: list[ldap3.Connection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._executor = ThreadPoolExecutor(
            max_workers=max_connections + 2, thread_name_prefix="procall-ldap"
        )
        try:
            self._make_server()  # TLS settings are checked now, not at the first login
        except LDAPExceptionError as exc:
            raise LdapConfigError(f"[ldap] TLS settings cannot work: {_reason(exc)}") from None
        # longest a thread may take: connect, StartTLS, bind, one answer
        self._deadline = 2 * config.connect_timeout + 2 * config.receive_timeout + 1.0

    def _make_server(self) -> ldap3.Server | ldap3.ServerPool:
        cfg = self.config
        tls = None
        if cfg.start_tls or any(u.lower().startswith("ldaps://") for u in cfg.urls):
            tls = ldap3.Tls(
                validate=ssl.CERT_REQUIRED,
                ca_certs_file=cfg.ca_file or None,
                version=ssl.PROTOCOL_TLS_CLIENT,
            )
        servers = [
            ldap3.Server(url, get_info=ldap3.NONE, connect_timeout=cfg.connect_timeout, tls=tls)
            for url in cfg.urls
        ]
        if len(servers) == 1:
            return servers[0]
        # one pass over the servers per attempt: never loop forever on a dead site
        return ldap3.ServerPool(servers, ldap3.FIRST, active=1, exhaust=30)

    # -- threads and deadlines ------------------------------------------------------------

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, fn)
        try:
            async with asyncio.timeout(self._deadline):
                return await future
        except TimeoutError:
            _log.warning("LDAP server did not answer within %.1f s", self._deadline)
            raise _Broken("timeout") from None

    def _open(self, user: str | None, password: str | None) -> ldap3.Connection:
        """Connect, StartTLS if configured, bind; raises ``_Broken`` / returns unbound."""
        cfg = self.config
        # a fresh Server each time: ldap3 remembers a refused address as dead for 5 minutes,
        # which would keep the Directory failing long after the server came back
        conn = ldap3.Connection(
            self._make_server(),
            user=user or None,
            password=password or None,
            auto_bind=ldap3.AUTO_BIND_NONE,
            # ldap3 packs it into SO_RCVTIMEO: whole seconds only
            receive_timeout=max(1, math.ceil(cfg.receive_timeout)),
            raise_exceptions=False,
            read_only=True,
            return_empty_attributes=True,
        )
        conn.open()
        if cfg.start_tls and not any(u.lower().startswith("ldaps://") for u in cfg.urls):
            if not conn.start_tls():
                conn.unbind()
                raise _Broken("StartTLS failed")
        return conn

    def _open_service(self) -> ldap3.Connection:
        cfg = self.config
        conn = self._open(cfg.bind_dn, cfg.bind_password)
        if not conn.bind():
            description = conn.result.get("description") if conn.result else "no answer"
            conn.unbind()
            raise _Broken(f"service account bind failed: {description}")
        return conn

    async def _borrow(self) -> tuple[ldap3.Connection, bool]:
        if self._idle:
            return self._idle.pop(), True
        return await self._in_thread(self._open_service), False

    def _discard(self, conn: ldap3.Connection) -> None:
        def close() -> None:
            try:
                conn.unbind()
            except (LDAPException, OSError):
                pass

        self._executor.submit(close)

    def _give_back(self, conn: ldap3.Connection) -> None:
        if len(self._idle) < self._max:
            self._idle.append(conn)
        else:
            self._discard(conn)

    # -- public ---------------------------------------------------------------------------

    @asynccontextmanager
    async def session(self) -> AsyncIterator[LdapSession]:
        """A service connection for one or several operations (a paged scan)."""
        async with self._slots:
            try:
                conn, reused = await self._borrow()
            except (_Broken, LDAPExceptionError, OSError) as exc:
                _log.warning("LDAP directory unavailable: %s", _reason(exc))
                raise _unavailable() from None
            session = LdapSession(self, conn, reused=reused)
            try:
                yield session
            finally:
                if session.broken:
                    self._discard(session.connection)
                else:
                    self._give_back(session.connection)

    async def run(self, session: LdapSession, fn: Callable[[ldap3.Connection], T]) -> T:
        """Run ``fn`` on the session's connection in a thread.

        The first operation on a pooled connection that fails is retried once on a new
        connection: after a server restart every pooled connection is dead.
        """
        while True:
            try:
                result = await self._in_thread(functools.partial(fn, session.connection))
            except (_Broken, LDAPExceptionError, OSError) as exc:
                failure: BaseException = exc
                if session.untried:
                    session.untried = False
                    self._discard(session.connection)
                    try:
                        session.connection = await self._in_thread(self._open_service)
                    except (_Broken, LDAPExceptionError, OSError) as again:
                        failure = again
                    else:
                        continue
                session.broken = True
                _log.warning("LDAP directory unavailable: %s", _reason(failure))
                raise _unavailable() from None
            session.untried = False
            return result

    async def check_password(self, dn: str, password: str) -> bool:
        """Whether binding as ``dn`` with ``password`` succeeds (a fresh connection)."""
        if not password:
            return False  # an empty password would be an anonymous bind: never a login

        def bind() -> bool:
            conn = self._open(dn, password)
            try:
                if conn.bind():
                    return True
                code = conn.result.get("result") if conn.result else None
                if code == _INVALID_CREDENTIALS:
                    return False
                description = conn.result.get("description") if conn.result else "no answer"
                raise _Broken(f"bind answered {description}")
            finally:
                try:
                    conn.unbind()
                except (LDAPException, OSError):
                    pass

        try:
            return await self._in_thread(bind)
        except (_Broken, LDAPExceptionError, OSError) as exc:
            _log.warning("LDAP directory unavailable during a login: %s", _reason(exc))
            raise _unavailable() from None

    async def close(self) -> None:
        """Close pooled connections and stop the threads."""
        idle, self._idle = self._idle, []
        for conn in idle:
            self._discard(conn)
        self._executor.shutdown(wait=False, cancel_futures=False)


def _reason(exc: BaseException) -> str:
    # class name and ldap3's own text: never a password (ldap3 does not put it in messages)
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200]
