"""The faust agents: thin loops that feed micro-batches to the processor and publish.

Every batch goes: processor (pure) -> publish scores, alerts and dead letters and wait until
the broker has them -> write each touched patient state once to the changelogged table ->
faust acks the batch. A crash anywhere re-processes the batch from the last commit; the
redelivery guard in the state and the deterministic output ids make that harmless.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime

import faust
import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vigil import __version__
from vigil.metrics import Metrics
from vigil.settings import VigilSettings
from vigil.stream.processor import InRecord, Processor, dead_letter
from vigil.stream.publisher import OutputPublisher
from vigil.stream.records import LABEL_DECODER, Rejection, encode
from vigil.stream.state import PatientState, decode_state, encode_state

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
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
           "value_serializer": "raw"}
    vitals = app.topic(settings.topic_vitals, partitions=settings.partitions, **raw)
    labels = app.topic(settings.topic_labels, partitions=settings.partitions, **raw)
    publisher = OutputPublisher(settings.bootstrap_servers)
    running = {"vitals": False}

    @app.on_before_shutdown.connect
    async def _stop_publisher(sender: object, **kwargs: object) -> None:
        await publisher.stop()
    table = app.Table("patients", default=None, partitions=settings.partitions,
                      key_type=bytes, value_type=bytes,
                      help="Per-patient windows, dedupe ids and alert lifecycle (msgpack).")
    metrics.info.info({
        "version": __version__,
        "scorers": ",".join(f"{k}={s.name}" for k, s in processor.scorers.items()),
        "broker": "embedded-tansu" if settings.embedded else "kafka",
    })

    def get_state(patient: str) -> PatientState | None:
        raw = table.get(patient.encode())
        return decode_state(raw) if raw is not None else None

    async def handle(events: list) -> None:  # type: ignore[type-arg]
        started = time.perf_counter()
        batch = [_in_record(e) for e in events]
        t_score = time.perf_counter()
        res = processor.process(batch, get_state, int(time.time() * 1000))
        metrics.scoring_seconds.observe(time.perf_counter() - t_score)
        await publisher.publish(
            [(settings.topic_scores, k.encode(), encode(r)) for k, r in res.scores]
            + [(settings.topic_alerts, k.encode(), encode(a)) for k, a in res.alerts]
            + [(settings.topic_dlq, k.encode() if k else None, encode(d)) for k, d in res.dead])
        for patient, (partition, state) in res.states.items():
            # one changelog record per touched patient per batch, to the patient's partition
            key, raw = patient.encode(), encode_state(state)
            table.send_changelog(partition, key, raw)
            table.data[key] = raw
        _observe(metrics, res, len(batch), started)

    @app.agent(vitals, name="vitals")
    async def vitals_agent(stream: faust.StreamT) -> None:
        await publisher.start()
        metrics.up.set(1)
        running["vitals"] = True
        try:
            async for events in stream.take_events(settings.batch_max_records,
                                                   within=settings.batch_within_s):
                try:
                    await handle(events)
                except Exception as exc:
                    # Per-record problems are dead-lettered inside the processor; what gets
                    # here (the broker refusing our outputs, a bug) would make faust ack a
                    # batch whose outputs or state were never written. Exit without
                    # committing instead: the supervisor restarts the worker, the batch is
                    # re-processed, and deterministic ids keep that idempotent.
                    metrics.errors.labels("batch").inc()
                    _fatal(exc)
        finally:
            metrics.up.set(0)
            running["vitals"] = False

    @app.agent(labels, name="labels")
    async def labels_agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                label = LABEL_DECODER.decode(event.message.value)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                rec = _in_record(event)
                metrics.rejections.labels("schema").inc()
                metrics.dlq.labels("record").inc()
                letter = dead_letter(rec, "record", [Rejection("schema", str(exc))],
                                     int(time.time() * 1000))
                await publisher.publish([(settings.topic_dlq, rec.key, encode(letter))])
                continue
            metrics.labels.labels(label.kind).inc()

    @app.page("/metrics")
    async def metrics_page(web, request):  # type: ignore[no-untyped-def]
        return web.bytes(generate_latest(metrics.registry),
                         headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/health")
    async def health_page(web, request):  # type: ignore[no-untyped-def]
        assigned = len(app.consumer.assignment()) if app.consumer else 0
        ready = bool(assigned) and not app.rebalancing and running["vitals"]
        return web.json({"status": "ok" if ready else "starting", "ready": ready,
                         "version": __version__, "assigned_partitions": assigned,
                         "time": datetime.now(UTC).isoformat()},
                        status=200 if ready else 503)

    return Wiring(app, table, metrics)


def _in_record(event: faust.EventT) -> InRecord:
    m = event.message
    return InRecord(m.topic, m.partition, m.offset, m.key, m.value, int((m.timestamp or 0) * 1000))


def _fatal(exc: BaseException) -> None:
    log.critical("vitals batch failed outside record validation; exiting without committing "
                 "so that it is re-processed after restart", exc_info=exc)
    logging.shutdown()
    os._exit(70)  # EX_SOFTWARE; a graceful stop would commit the batch's offsets


def _observe(metrics: Metrics, res, n: int, started: float) -> None:  # type: ignore[no-untyped-def]
    metrics.batch_records.observe(n)
    for outcome, count in res.outcomes.items():
        metrics.records.labels(outcome).inc(count)
    for reason, count in res.reasons.items():
        metrics.rejections.labels(reason).inc(count)
    for _, d in res.dead:
        metrics.dlq.labels(d.scope).inc()
    metrics.scores.inc(len(res.scores))
    now = datetime.now(UTC)
    for _, a in res.alerts:
        metrics.alerts.labels(a.kind, a.severity, a.state).inc()
        metrics.event_to_alert.observe(max(0.0, (now - a.event_time).total_seconds()))
    for lag in res.ingest_lag_s:
        metrics.ingest_to_publish.observe(lag)
    metrics.batch_seconds.observe(time.perf_counter() - started)
