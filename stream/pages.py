"""The worker's web pages: Prometheus metrics and the readiness probe.

Served by faust's web server, apart from the agents: they only read what the agents and the
consumer expose.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vigil import __version__
from vigil.metrics import Metrics
from vigil.settings import VigilSettings
from vigil.stream.topics import changelog_topic

__all__ = ["add_pages"]

log = logging.getLogger(__name__)


def add_pages(app: faust.App, settings: VigilSettings, metrics: Metrics,
              consuming: Callable[[], bool],
              broker_reachable: Callable[[], bool] = lambda: True) -> None:
    """``/metrics`` and ``/health`` on ``app``; ``consuming()`` says the vitals agent runs,
    ``broker_reachable()`` whether the last broker check got an answer."""
    changelog = changelog_topic(settings)
    warned: list[bool] = []

    @app.page("/metrics")
    async def metrics_page(web, request):  # type: ignore[no-untyped-def]
        # lag and unit load are computed when scraped, for the current assignment
        consumer = app.consumer
        assigned = consumer.assignment() if consumer else set()
        committed = getattr(consumer, "_committed_offset", None)  # faust 0.15: next offset
        if consumer is not None and committed is None:
            # a faust without it: no lag rather than a wrong one (the full highwater); the
            # live-Prometheus test fails on the missing series, so an upgrade cannot hide it
            metrics.consumer_lag.clear()
            if not warned:
                log.warning("faust's consumer has no _committed_offset: "
                            "vigil_consumer_lag_records is not reported")
                warned.append(True)
        elif consumer is not None:
            # the agents' input topics; the table's changelog is written by Vigil itself
            inputs = [tp for tp in assigned if tp.topic != changelog]
            metrics.observe_consumer(inputs, consumer.highwater, committed.get)
        metrics.publish_census({tp.partition for tp in assigned
                                if tp.topic == settings.topic_vitals}, time.time())
        return web.bytes(generate_latest(metrics.registry),
                         headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/health")
    async def health_page(web, request):  # type: ignore[no-untyped-def]
        assigned = len(app.consumer.assignment()) if app.consumer else 0
        reachable = broker_reachable()
        ready = bool(assigned) and not app.rebalancing and consuming() and reachable
        status = "ok" if ready else "starting" if reachable else "broker unreachable"
        return web.json({"status": status, "ready": ready, "broker_reachable": reachable,
                         "version": __version__, "assigned_partitions": assigned,
                         "time": datetime.now(UTC).isoformat()},
                        status=200 if ready else 503)
