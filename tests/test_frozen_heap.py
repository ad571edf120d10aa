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


def test_worker_heap_unfreezes_and_pauses_the_collector_only_where_the_heap_is_frozen():
    import multiprocessing as mp

    from planner.executors import worker_heap

    assert gc.get_freeze_count() == 0 and gc.isenabled()
    with worker_heap():  # nothing known to be frozen (not a forked worker, no frozen_heap): nothing changes
        assert gc.isenabled() and gc.get_freeze_count() == 0
    assert gc.get_freeze_count() == 0
    with frozen_heap():
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with worker_heap():
            assert gc.get_freeze_count() == 0 and not gc.isenabled()  # the simulator's freeze count is O(1) here
            kept = [[i] for i in range(1000)]  # allocated in the block: frozen with the rest after it
        assert gc.isenabled() and gc.get_freeze_count() >= frozen + 1000
        del kept
    assert gc.get_freeze_count() == 0 and gc.isenabled()
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:  # a forked worker inherits the frozen heap: worker_heap acts there too
        assert pool.apply(_in_forked_worker) == (True, True)


def _in_forked_worker() -> tuple[bool, bool]:
    from planner.executors import worker_heap

    gc.freeze()  # as LocalExecutor.start does before its workers fork
    with worker_heap():
        inside = gc.get_freeze_count() == 0 and not gc.isenabled()
    return inside, gc.get_freeze_count() > 0
