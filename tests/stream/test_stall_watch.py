"""The stall watch: a worker stuck in a rebalance without progress is reported once the
timeout is reached; any progress, or a settled worker, resets the clock."""

from __future__ import annotations

from vigil.stream.stall_watch import EXIT_STALLED, StallWatch


def test_a_rebalance_without_progress_is_reported_at_the_timeout() -> None:
    w = StallWatch(timeout_s=60)
    assert w.observe(0, True, (3, 1, 0)) is None
    assert w.observe(59, True, (3, 1, 0)) is None
    assert w.observe(61, True, (3, 1, 0)) == 61


def test_progress_or_a_settled_worker_resets_the_clock() -> None:
    w = StallWatch(timeout_s=60)
    w.observe(0, True, (3, 1, 0))
    assert w.observe(50, True, (3, 1, 120)) is None  # changelog records recovered
    assert w.observe(100, True, (3, 1, 120)) is None  # 50 s since that progress
    assert w.observe(111, True, (3, 1, 120)) == 61
    assert w.observe(112, False, (3, 1, 120)) is None  # settled: ready again
    assert w.observe(150, True, (3, 1, 120)) is None  # a new stall starts counting here
    assert w.observe(209, True, (3, 1, 120)) is None
    assert w.observe(211, True, (3, 1, 120)) == 61


def test_the_exit_code_is_distinct_from_the_others() -> None:
    from vigil.stream.broker_watch import EXIT_BROKER_LOST
    from vigil.worker import EXIT_SHUTDOWN_TIMEOUT

    assert len({EXIT_STALLED, EXIT_BROKER_LOST, EXIT_SHUTDOWN_TIMEOUT}) == 3
