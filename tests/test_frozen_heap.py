"""``planner.executors.frozen_heap``: within the block the heap is frozen and the youngest
generation's threshold raised; both undone when the outermost block ends."""

from __future__ import annotations

import gc

from planner.executors import _GEN0_THRESHOLD, frozen_heap


def test_thresholds_and_freeze_restored():
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        with frozen_heap():
            assert gc.get_threshold() == (_GEN0_THRESHOLD, 10, 10)
            assert gc.get_freeze_count() > 0
            with frozen_heap():
                assert gc.get_threshold()[0] == _GEN0_THRESHOLD
            assert gc.get_threshold()[0] == _GEN0_THRESHOLD and gc.get_freeze_count() > 0
        assert gc.get_threshold() == (700, 10, 10)
        assert gc.get_freeze_count() == 0
        gc.set_threshold(50_000, 5, 5)  # a caller's higher threshold is kept
        with frozen_heap():
            assert gc.get_threshold() == (50_000, 5, 5)
        assert gc.get_threshold() == (50_000, 5, 5)
    finally:
        gc.set_threshold(*before)
