"""Start-up of one faust worker: check the broker, then run the agents until stopped."""

from __future__ import annotations

import logging

from vigil.broker import wait_for_broker
from vigil.broker_checks import changelog_gaps, list_offsets_exact
from vigil.metrics import Metrics
from vigil.settings import VigilSettings
from vigil.stream.agents import Wiring, wire
from vigil.stream.app import build_app, build_processor
from vigil.stream.topics import changelog_topic, ensure_topics

__all__ = ["prepare_worker", "run_worker", "StateIntegrityError"]

log = logging.getLogger(__name__)


class StateIntegrityError(RuntimeError):
    """Recovering the patients table from this broker would give wrong state."""


def prepare_worker(settings: VigilSettings) -> Wiring:
    wait_for_broker(settings.bootstrap_servers, timeout_s=30)
    ensure_topics(settings)
    exact = list_offsets_exact(settings.bootstrap_servers)
    gaps = changelog_gaps(settings.bootstrap_servers, [changelog_topic(settings)])
    if gaps:
        raise StateIntegrityError(
            "refusing to start: the patients table changelog cannot be recovered exactly.\n  "
            + "\n  ".join(str(g) for g in gaps)
            + "\nThe broker's ListOffsets answer (which faust uses to end table recovery) is "
            "behind the log: records were written in multi-record batches to a broker with "
            "tansu's ListOffsets bug. Recovering would silently drop the newest patient state. "
            f"Start from a clean state (a new VIGIL_APP_ID, or delete topic "
            f"{changelog_topic(settings)}) and re-replay, or use Apache Kafka (VIGIL_KAFKA_URL).")
    app = build_app(settings, single_record_batches=not exact)
    return wire(app, settings, build_processor(settings), Metrics())


def run_worker(settings: VigilSettings) -> None:
    import faust

    wiring = prepare_worker(settings)
    worker = faust.Worker(wiring.app, loglevel=settings.log_level)
    worker.execute_from_commandline()
