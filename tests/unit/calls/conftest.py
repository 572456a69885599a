"""Call unit tests: pure domain code over fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest


@pytest.fixture(autouse=True)
async def _collect_grpc_garbage() -> AsyncIterator[None]:
    """No gRPC object is made here: skip the suite's full ``gc.collect()`` after each test
    (close to a second per test on a busy machine)."""
    yield
