"""Skip-or-fail policy for tests whose backend (Redis, PostgreSQL, OpenLDAP) is missing.

By default a test whose backend binary is missing is skipped with the reason. CI sets
``PROCALL_REQUIRE=all`` (or a comma list such as ``redis,postgres``) so that a missing backend
fails those tests instead of silently skipping them.
"""

from __future__ import annotations

import os
from typing import Literal

import pytest

__all__ = ["BACKENDS", "ENV_VAR", "decide", "require_backend", "required_backends"]

ENV_VAR = "PROCALL_REQUIRE"
BACKENDS: tuple[str, ...] = ("redis", "postgres", "ldap")

Decision = Literal["run", "skip", "fail"]


def required_backends(value: str | None) -> frozenset[str]:
    """Parse a ``PROCALL_REQUIRE`` value: ``""``/``None``, ``all``, or a comma list.

    Raises:
        ValueError: For a name that is not a known backend (so typos do not go unnoticed).
    """
    names = {part.strip().lower() for part in (value or "").split(",") if part.strip()}
    if "all" in names:
        return frozenset(BACKENDS)
    unknown = names - set(BACKENDS)
    if unknown:
        raise ValueError(
            f"{ENV_VAR} names unknown backends {sorted(unknown)}; "
            f"use 'all' or a comma list of {', '.join(BACKENDS)}"
        )
    return frozenset(names)


def decide(backend: str, unavailable_reason: str | None, require: str | None) -> Decision:
    """What to do with a test needing ``backend``: ``run``, ``skip`` or ``fail``.

    ``unavailable_reason`` is ``None`` when the backend can run; ``require`` is the raw value
    of ``PROCALL_REQUIRE``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}")
    required = required_backends(require)
    if unavailable_reason is None:
        return "run"
    return "fail" if backend in required else "skip"


def require_backend(backend: str, unavailable_reason: str | None) -> None:
    """Skip (or fail, if ``PROCALL_REQUIRE`` names it) unless ``backend`` is available."""
    decision = decide(backend, unavailable_reason, os.environ.get(ENV_VAR))
    if decision == "skip":
        pytest.skip(f"{backend}: {unavailable_reason}")
    if decision == "fail":
        pytest.fail(f"{backend} is required ({ENV_VAR}) but {unavailable_reason}", pytrace=False)
