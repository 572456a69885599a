"""The server processes' collector tuning: start-up heap frozen, thresholds set."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from procall.servers.runtime.collector import (
    MIDDLE_THRESHOLD,
    OLD_THRESHOLD,
    YOUNG_THRESHOLD,
    tune_collector,
)


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_the_start_up_heap_is_frozen_and_the_thresholds_set() -> None:
    gc.unfreeze()
    tune_collector()
    assert gc.get_freeze_count() > 0
    assert gc.get_count()[0] < YOUNG_THRESHOLD
    assert gc.get_threshold() == (YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
