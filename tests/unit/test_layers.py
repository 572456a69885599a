"""The layers keep to their imports: servicers and roots hold no store client, codecs no
servicer, domain packages no transport or store, and chat and the journal reach the
durable writer only through their own narrow ports."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import procall
from tests.unit.test_public_surface import FACES

ROOT = Path(procall.__file__).parent


def _imports(package: str) -> Iterator[tuple[str, str]]:
    """(file, imported module) for every import under ``procall/<package>``."""
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                yield str(path.relative_to(ROOT)), node.module
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    yield str(path.relative_to(ROOT)), alias.name


def _offending(package: str, banned: tuple[str, ...]) -> list[str]:
    return [
        f"{file} imports {module}"
        for file, module in _imports(package)
        if any(module == b or module.startswith(b + ".") for b in banned)
    ]


@pytest.mark.parametrize(
    ("package", "banned"),
    [
        # store clients stay inside procall.storage: roots get stores from its factories
        ("servers", ("redis", "sqlalchemy", "aiortc")),
        ("servers/codecs", ("procall.servers.ucserver", "procall.servers.peering")),
        ("admin_views", ("grpc", "redis", "sqlalchemy", "procall.servers", "procall.storage")),
        ("presence", ("grpc", "redis", "sqlalchemy", "procall.servers", "procall.storage")),
        ("chat", ("procall.outbox", "procall.journal", "procall.servers", "procall.storage")),
        ("journal", ("procall.outbox", "procall.chat", "procall.servers", "procall.storage")),
        (
            "policies",
            ("grpc", "redis", "sqlalchemy", "procall.api", "procall.servers", "procall.storage"),
        ),
        (
            "config",
            ("grpc", "redis", "sqlalchemy", "procall.api", "procall.servers", "procall.storage"),
        ),
        (
            "calls",
            ("grpc", "redis", "sqlalchemy", "procall.api", "procall.servers", "procall.storage"),
        ),
        (
            "leases",
            ("grpc", "redis", "sqlalchemy", "procall.api", "procall.servers", "procall.storage"),
        ),
        # the media core: aiortc, but no transport of the mesh, no store, no server
        (
            "media",
            ("grpc", "redis", "sqlalchemy", "procall.api", "procall.servers", "procall.storage"),
        ),
    ],
)
def test_package_keeps_to_its_layer(package: str, banned: tuple[str, ...]) -> None:
    assert _offending(package, banned) == []


#: What no domain package imports: transports, stores, contracts, servers (merged here from
#: the near-copies that the Directory's and the routing surface tests each had).
_TRANSPORTS_AND_STORES = (
    "grpc",
    "redis",
    "sqlalchemy",
    "ldap3",
    "aiortc",
    "procall.api",
    "procall.mesh",
    "procall.servers",
    "procall.storage",
)


@pytest.mark.parametrize("package", sorted(p.removeprefix("procall.") for p in FACES))
def test_domain_package_imports_no_transport_or_store(package: str) -> None:
    assert _offending(package, _TRANSPORTS_AND_STORES) == []


def test_the_check_sees_imports() -> None:
    """The test above can fail: the outbox does import chat's model."""
    assert _offending("outbox", ("procall.chat",))
