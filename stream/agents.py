"""The faust agents: short loops that feed micro-batches to their handlers.

What each batch does is in :mod:`vigil.stream.handlers`; the topics and the patients table
are declared in :mod:`vigil.stream.topics` and :mod:`vigil.stream.tables`; the web pages in
:mod:`vigil.stream.pages`. Here they are only wired together on a faust app.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable

import faust
from faust.types import TP

from vigil import __version__
from vigil.kafka_config import aiokafka_options
from vigil.metrics import Metrics
from vigil.settings import VigilSettings
from vigil.stream.batcher import MicroBatcher
from vigil.stream.broker_watch import EXIT_BROKER_LOST, BrokerWatch
from vigil.stream.gaps import GapFiller, decode_progress, progress_key
from vigil.stream.handlers import AcksHandler, LabelsHandler, Sweeper, VitalsHandler
from vigil.stream.label_queue import LabelClocks
from vigil.stream.log_ends import LogEnds
from vigil.stream.pages import add_pages
from vigil.stream.processor import Processor
from vigil.stream.publisher import OutputPublisher
from vigil.stream.tables import PatientStore, declare_patients_table
from vigil.stream.topics import changelog_topic, declare_inputs

__all__ = ["Wiring", "wire"]

log = logging.getLogger(__name__)


class Wiring:
    """Handles to what :func:`wire` declared, for tests and the CLI."""

    def __init__(self, app: faust.App, table: faust.Table, metrics: Metrics) -> None:
        self.app = app
        self.table = table
        self.metrics = metrics


def wire(app: faust.App, settings: VigilSettings, processor: Processor,
         metrics: Metrics) -> Wiring:
    topics = declare_inputs(app, settings)
    table = declare_patients_table(app, settings)
    kafka = aiokafka_options(settings)  # TLS/SASL for Vigil's own clients beside faust's
    publisher = OutputPublisher(settings.bootstrap_servers, options=kafka)
    gaps = GapFiller(settings.bootstrap_servers, settings.topic_vitals, options=kafka)
    label_gaps = GapFiller(settings.bootstrap_servers, settings.topic_labels, options=kafka)
    store = PatientStore(table, publisher, changelog_topic(settings))
    running = {"vitals": False}
    metrics.info.info({
        "version": __version__,
        "scorers": ",".join(f"{k}={s.name}" for k, s in processor.scorers.items()),
        "broker": "embedded-tansu" if settings.embedded else "kafka",
    })

    async def ack_filled(partition: int, offsets: list[int]) -> None:
        await _ack_filled(app, settings.topic_vitals, partition, offsets)

    async def ack_filled_labels(partition: int, offsets: list[int]) -> None:
        await _ack_filled(app, settings.topic_labels, partition, offsets)

    label_ends = LogEnds(settings.bootstrap_servers, settings.topic_labels, options=kafka)
    clocks = LabelClocks(ends=label_ends.ends,
                         committed=lambda p: _committed(app, settings.topic_labels, p),
                         vitals_highwater=lambda p: _highwater(app, settings.topic_vitals, p))
    labels = LabelsHandler(settings, processor, store, publisher, metrics, clocks, label_gaps,
                           ack_filled_labels)
    vitals = VitalsHandler(settings, processor, store, publisher, gaps, metrics, ack_filled,
                           clocks, pull_labels=labels.pull)
    acks = AcksHandler(settings, processor, store, publisher, metrics)
    sweeper = Sweeper(settings, processor, store, publisher, metrics, clocks)

    async def run(stream: faust.StreamT, handle: Callable[[list], Awaitable[None]],  # type: ignore[type-arg]
                  stage: str) -> None:
        """Micro-batches acked after ``handle``. Per-record problems are dead-lettered by
        the processor; what fails here (the broker refusing our outputs, a bug) would let
        faust commit a batch whose outputs or state were never written, so the worker exits
        without committing: the supervisor restarts it and the batch is re-processed."""
        await publisher.start()

        def failed(exc: BaseException) -> None:
            metrics.errors.labels(stage).inc()
            _fatal(exc)

        await MicroBatcher(handle, settings.batch_max_records, settings.batch_within_s,
                           stream.noack(), on_failure=failed).run()

    @app.on_before_shutdown.connect
    async def _stop_clients(sender: object, **kwargs: object) -> None:
        await publisher.stop()
        await gaps.stop()
        await label_gaps.stop()
        await label_ends.stop()

    @app.agent(topics.vitals, name="vitals")
    async def vitals_agent(stream: faust.StreamT) -> None:
        await publisher.start()
        metrics.up.set(1)
        running["vitals"] = True
        try:
            await run(stream, vitals, "batch")
        finally:
            metrics.up.set(0)
            running["vitals"] = False

    @app.agent(topics.acks, name="acks")
    async def acks_agent(stream: faust.StreamT) -> None:
        await run(stream, acks, "acks")

    @app.agent(topics.labels, name="labels")
    async def labels_agent(stream: faust.StreamT) -> None:
        await run(stream, labels, "labels")

    if settings.alert_sweep_s > 0:
        @app.timer(interval=settings.alert_sweep_s, name="sweep_overdue_alerts")
        async def sweep_timer() -> None:
            if not running["vitals"] or app.rebalancing:
                return
            owned = {tp.partition for tp in app.assignor.assigned_actives()
                     if tp.topic == settings.topic_vitals}
            try:
                await sweeper.sweep(owned)
            except Exception:  # counted and paged (VigilProcessingErrors); the next sweep
                # retries: nothing was stored, and a re-published escalation has the same id
                metrics.errors.labels("sweep").inc()
                log.exception("the overdue-alert sweep failed; retrying at the next one")
            else:
                metrics.sweeps.inc()

    broker = {"reachable": True}
    if settings.broker_check_s > 0:
        watch = BrokerWatch(settings.bootstrap_servers, options=kafka)

        @app.timer(interval=settings.broker_check_s, name="broker_watch")
        async def broker_timer() -> None:
            owned = {tp.partition for tp in app.assignor.assigned_actives()
                     if tp.topic == settings.topic_vitals}
            expected = dict(publisher.written)
            for p in owned:
                n = decode_progress(store.get(progress_key(p)))
                if n is not None:
                    expected[(settings.topic_vitals, p)] = n
            verdict = await watch.check(expected)
            broker["reachable"] = verdict.reachable
            metrics.broker_reachable.set(1 if verdict.reachable else 0)
            if verdict.lost is not None:
                _broker_lost(verdict.lost)

    add_pages(app, settings, metrics, lambda: running["vitals"], lambda: broker["reachable"])
    return Wiring(app, table, metrics)


async def _ack_filled(app: faust.App, topic: str, partition: int, offsets: list[int]) -> None:
    """Tell faust's consumer that offsets Vigil fetched itself are done.

    Records faust never delivered are never acked, so its commit would stop below them for
    good (the "commit stops advancing after a restart" seen on tansu). faust's own remedy
    for offsets it will never deliver is its gap list (``Consumer._add_gap``, private API,
    faust-streaming 0.15): commits skip over registered gaps.
    """
    add_gap = getattr(app.consumer, "_add_gap", None)
    if add_gap is None:  # pragma: no cover - another faust version
        log.warning("cannot register fetched offsets with faust: its commit may stall")
        return
    tp = TP(topic, partition)
    start = prev = offsets[0]
    for o in offsets[1:] + [None]:
        if o is None or o != prev + 1:
            await add_gap(tp, start, prev)
            if o is not None:
                start = o
        if o is not None:
            prev = o


def _highwater(app: faust.App, topic: str, partition: int) -> int | None:
    """The partition's end as the consumer's last fetch saw it (right on tansu, unlike
    ListOffsets "latest"; see ../shared/notes/tansu-and-faust.md); None before a fetch."""
    try:
        return app.consumer.highwater(TP(topic, partition))
    except Exception:  # not started, not assigned yet: unknown
        return None


def _committed(app: faust.App, topic: str, partition: int) -> int | None:
    """The offset faust committed for the partition (where this worker began reading),
    from faust-streaming 0.15's own bookkeeping (``Consumer._committed_offset``)."""
    committed = getattr(app.consumer, "_committed_offset", None)
    return None if committed is None else committed.get(TP(topic, partition))


def _broker_lost(what: str) -> None:
    log.critical("the broker lost data this worker had read or written: %s. It was most "
                 "likely restarted with in-memory storage (the embedded tansu). Going on "
                 "would commit offsets beyond its logs and skip or repeat alerts, so the "
                 "worker stops now without committing (exit code %d). Restart the workers "
                 "against this broker only if starting over is intended (their state is "
                 "recovered from what the broker holds now); otherwise restore the broker.",
                 what, EXIT_BROKER_LOST)
    logging.shutdown()
    os._exit(EXIT_BROKER_LOST)


def _fatal(exc: BaseException) -> None:
    log.critical("a batch failed outside record validation; exiting without committing "
                 "so that it is re-processed after restart", exc_info=exc)
    logging.shutdown()
    os._exit(70)  # EX_SOFTWARE; a graceful stop would commit the batch's offsets
