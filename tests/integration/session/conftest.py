"""The Center of the session integration tests (``tests/helpers/center.py``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from procall.settings import Settings
from tests.helpers.center import Center, start_center
from tests.helpers.topology import StartApp


@pytest.fixture
async def center(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> Center:
    """Directory, Lookup, UCServers uc-1 and uc-2 and six users, over a real Redis."""
    return await start_center(redis_url, make_settings, start_app)
