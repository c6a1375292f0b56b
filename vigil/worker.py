"""Start-up of one faust worker: check the broker, then run the agents until stopped."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable

from vigil.broker import wait_for_broker
from vigil.broker_checks import changelog_gaps, list_offsets_exact, repair_changelog_ends
from vigil.group_leave import configure_group_leave
from vigil.kafka_config import describe, kafka_python_options
from vigil.kinds import registered
from vigil.metrics import Metrics, watch_jax_compilations
from vigil.settings import VigilSettings
from vigil.stream.agents import Wiring, wire
from vigil.stream.app import build_app
from vigil.stream.processor import build_processor
from vigil.stream.stall_watch import watch_faust
from vigil.stream.topics import changelog_topic, ensure_topics

__all__ = ["prepare_worker", "run_worker", "StateIntegrityError", "ShutdownWatchdog",
           "EXIT_SHUTDOWN_TIMEOUT"]

log = logging.getLogger(__name__)

EXIT_SHUTDOWN_TIMEOUT = 75  # EX_TEMPFAIL: stopped by force; uncommitted input is re-read


class StateIntegrityError(RuntimeError):
    """Recovering the patients table from this broker would give wrong state."""


CHANGELOG_SETTLE_S = 30.0  # how long a start waits for peers' changelog writes to settle


def check_changelog_ends(settings: VigilSettings, kafka: dict, *,
                         settle_s: float | None = None, interval_s: float = 0.5) -> None:
    """Start only on a changelog faust can recover exactly (see vigil.broker_checks).

    A gap between the broker's reported end and the log's real end has two causes: a peer
    worker in the middle of a write (its one-record closing batch follows within
    milliseconds, issue 13: a restart refused while a peer was busy), or a stale end left by
    a crash between the two batches of a write. Only a gap seen twice in a row at the same
    offsets is stale: that one is repaired; a moving one is waited out. What is still open
    after ``settle_s`` is refused (:class:`StateIntegrityError`)."""
    settle_s = CHANGELOG_SETTLE_S if settle_s is None else settle_s
    topics = [changelog_topic(settings)]
    deadline = time.monotonic() + settle_s
    seen: set = set()
    waiting = False
    while True:
        gaps = changelog_gaps(settings.bootstrap_servers, topics, options=kafka)
        if not gaps:
            return
        stale = [g for g in gaps if g in seen]
        if stale:
            log.warning("changelog ends behind the log: %s", "; ".join(map(str, stale)))
            repair_changelog_ends(settings.bootstrap_servers, stale, options=kafka)
        elif not waiting:
            log.info("the changelog is being written (a peer worker is busy): waiting for its "
                     "ends to settle before recovering")
            waiting = True
        if time.monotonic() >= deadline:
            raise StateIntegrityError(
                "refusing to start: the patients table changelog cannot be recovered exactly.\n  "
                + "\n  ".join(str(g) for g in gaps)
                + f"\nAfter {settle_s:.0f} s of waiting and repairs, the broker's ListOffsets "
                "answer (which faust uses to end table recovery) stays behind the log "
                "(tansu's ListOffsets bug). Recovering would silently drop the newest patient "
                "state. Start from a clean state (a new VIGIL_APP_ID, or delete topic "
                f"{changelog_topic(settings)}) and re-replay, or use Apache Kafka "
                "(VIGIL_KAFKA_URL).")
        seen = set(gaps)
        time.sleep(interval_s)


def prepare_worker(settings: VigilSettings) -> Wiring:
    kafka = kafka_python_options(settings)  # TLS/SASL as configured; never logged
    log.info("Kafka: %s", describe(settings))
    wait_for_broker(settings.bootstrap_servers, timeout_s=30, options=kafka)
    ensure_topics(settings)
    exact = list_offsets_exact(settings.bootstrap_servers, options=kafka)
    configure_group_leave(settings, exact, options=kafka)
    check_changelog_ends(settings, kafka)
    metrics = Metrics(kinds=[k.name for k in registered(settings)])
    # every compilation from here on is counted (vigil_jax_compilations_total): the stream
    # should compile once per fixed batch shape, at warm-up, and never again
    watch_jax_compilations()
    processor = build_processor(settings)
    log.info("scorers compiled in %.1f s", processor.warm_up())
    wiring = wire(build_app(settings), settings, processor, metrics)
    metrics.broker_offsets_exact.set(1 if exact else 0)
    artifacts = [a for a in (getattr(s, "artifact", None) for s in processor.scorers.values())
                 if a is not None]
    metrics.add_worker_info(
        model_artifact=",".join(f"{a.name}@{a.version}" for a in artifacts) or "none",
        score_batch_size=str(settings.score_batch_size),
        partitions=str(settings.partitions))
    return wiring


class ShutdownWatchdog:
    """Ends the process if a graceful stop takes longer than ``timeout_s``.

    faust's stop waits for every service in turn; during a rebalance or table recovery one
    of them can wait far longer than any supervisor will (a worker took over 2.5 min after
    SIGTERM, issue 13), and Kubernetes or systemd then kill it anyway, unlogged. Stopping by
    force loses nothing: outputs are published and state stored before offsets are
    committed, so whatever was not committed is processed again after the restart.
    """

    def __init__(self, timeout_s: float, exit: Callable[[int], object] = os._exit) -> None:
        self.timeout_s = timeout_s
        self._exit = exit
        self._timer: threading.Timer | None = None

    def arm(self) -> None:
        if self._timer is None:
            self._timer = threading.Timer(self.timeout_s, self._fire)
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        log.critical("the graceful stop did not finish within %.0f s "
                     "(VIGIL_SHUTDOWN_TIMEOUT_S): exiting now with code %d; uncommitted "
                     "input is processed again after the restart", self.timeout_s,
                     EXIT_SHUTDOWN_TIMEOUT)
        logging.shutdown()
        self._exit(EXIT_SHUTDOWN_TIMEOUT)


def run_worker(settings: VigilSettings) -> None:
    import faust

    wiring = prepare_worker(settings)
    watchdog = ShutdownWatchdog(settings.shutdown_timeout_s)
    if settings.stall_timeout_s > 0:
        watch_faust(wiring.app, settings.stall_timeout_s)  # a stuck join/recovery ends it

    class _Worker(faust.Worker):  # type: ignore[misc]
        def _schedule_shutdown(self, signal: signal.Signals) -> None:  # noqa: D401
            watchdog.arm()  # SIGTERM / SIGINT: the stop is bounded from here on
            super()._schedule_shutdown(signal)

    worker = _Worker(wiring.app, loglevel=settings.log_level)
    worker.execute_from_commandline()
