"""Notices a worker stuck in faust's group join or table recovery, and says so.

Seen on this machine: after a SIGKILL in a group, and after a broker restart, workers sat in
faust's rebalance ("Recovery: Starting…", nothing more) for over five minutes, processing
nothing and saying nothing, while /health only reported "starting". A worker that makes no
progress there will not recover by waiting; a fresh process does (it re-joins and recovers
from the changelog, and its input is re-processed from the last commit). So while a worker
rebalances, or has never finished a rebalance, it watches for progress: a new generation,
another rebalance, or changelog records recovered. None for ``VIGIL_STALL_TIMEOUT_S`` and
it logs what it was waiting for and exits with :data:`EXIT_STALLED`, for the supervisor to
restart it. Progress resets the clock, so a long but moving recovery is never cut short.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EXIT_STALLED", "StallWatch", "watch_faust"]

log = logging.getLogger(__name__)

EXIT_STALLED = 76  # EX_PROTOCOL: the group protocol or table recovery made no progress


@dataclass
class StallWatch:
    timeout_s: float
    _since: float | None = None
    _seen: Hashable = field(default=None)

    def observe(self, now: float, busy: bool, progress: Hashable) -> float | None:
        """Seconds without progress while ``busy`` once they reach the timeout, else None.

        ``busy``: rebalancing or never settled; ``progress``: anything that changes when the
        rebalance moves on (generation, rebalance count, changelog offsets recovered)."""
        if not busy:
            self._since = None
            return None
        if self._since is None or progress != self._seen:
            self._since, self._seen = now, progress
            return None
        stalled = now - self._since
        return stalled if stalled >= self.timeout_s else None


def watch_faust(app: Any, timeout_s: float,
                on_stall: Callable[[float, str, int | None], None] | None = None) -> None:
    """Watch a faust app from a daemon thread: faust starts its timers only after the first
    table recovery, and a stuck event loop would hold a task back too.

    ``on_stall(seconds, phase, changelog records left)``; by default :func:`exit_stalled`."""
    watch = StallWatch(timeout_s)
    settled = threading.Event()
    report = on_stall or exit_stalled

    @app.on_rebalance_complete.connect
    async def _settled(sender: object, **kwargs: object) -> None:
        settled.set()

    def sample() -> tuple[bool, Hashable, str, int | None]:
        recovery = app.tables.recovery
        for _ in range(3):  # read from another thread: retry a dict changed mid-iteration
            try:
                offsets = list(recovery.active_offsets.values())
                remaining = recovery.active_remaining_total() if recovery.in_recovery else None
                break
            except RuntimeError:
                continue
        else:
            offsets, remaining = [], None
        recovered = sum(o for o in offsets if o is not None)
        busy = bool(app.rebalancing) or not settled.is_set()
        phase = "table recovery" if remaining else "the group's rebalance"
        return busy, (app.consumer_generation_id, app.rebalancing_count, recovered), phase, \
            remaining

    def loop() -> None:
        while True:
            time.sleep(min(5.0, timeout_s / 4))
            busy, progress, phase, remaining = sample()
            stalled = watch.observe(time.monotonic(), busy, progress)
            if stalled is not None:
                report(stalled, phase, remaining)
                return

    threading.Thread(target=loop, name="vigil-stall-watch", daemon=True).start()


def exit_stalled(seconds: float, phase: str, remaining: int | None) -> None:
    log.critical("no progress for %.0f s in %s%s: faust is stuck (seen on tansu after a "
                 "SIGKILL in a group and after a broker restart). Exiting (code %d) so that "
                 "the supervisor starts a fresh worker: it re-joins, recovers the table from "
                 "the changelog and re-processes its input from the last commit.", seconds,
                 phase, f" ({remaining} changelog records still to read)" if remaining else "",
                 EXIT_STALLED)
    logging.shutdown()
    os._exit(EXIT_STALLED)
