"""The faust agents: thin loops that feed micro-batches to the processor and publish.

Every batch goes: processor (pure) -> publish scores, alerts and dead letters and wait until
the broker has them -> write each touched patient state once to the changelogged table ->
faust acks the batch. A crash anywhere re-processes the batch from the last commit; the
redelivery guard in the state and the deterministic output ids make that harmless.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import faust
import msgspec
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vigil import __version__
from vigil.metrics import Metrics
from vigil.settings import VigilSettings
from vigil.stream.gaps import (
    GapFiller,
    decode_progress,
    encode_progress,
    missing_offsets,
    progress_key,
)
from vigil.stream.processor import InRecord, Processor, dead_letter
from vigil.stream.publisher import OutputPublisher
from vigil.stream.records import LABEL_DECODER, Rejection, encode
from vigil.stream.state import PatientState, decode_state, encode_state
from vigil.stream.topics import changelog_topic

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
    acks = app.topic(settings.topic_acks, partitions=settings.partitions, **raw)
    # The vitals and acks agents both read-modify-write patient states across awaits
    # (publish, changelog): one lock keeps an ack from being overwritten by a vitals batch.
    state_lock = asyncio.Lock()
    publisher = OutputPublisher(settings.bootstrap_servers)
    gaps = GapFiller(settings.bootstrap_servers, settings.topic_vitals)
    running = {"vitals": False}

    @app.on_before_shutdown.connect
    async def _stop_publisher(sender: object, **kwargs: object) -> None:
        await publisher.stop()
        await gaps.stop()

    table = app.Table("patients", default=None, partitions=settings.partitions,
                      key_type=bytes, value_type=bytes,
                      help="Per-patient windows, dedupe ids and alert lifecycle (msgpack).")
    changelog = changelog_topic(settings)
    assert table.changelog_topic_name == changelog, (table.changelog_topic_name, changelog)
    metrics.info.info({
        "version": __version__,
        "scorers": ",".join(f"{k}={s.name}" for k, s in processor.scorers.items()),
        "broker": "embedded-tansu" if settings.embedded else "kafka",
    })

    # Decoded states, keyed by patient, each with the exact bytes object it was decoded from
    # or encoded to. Decoding was 10% of a worker's CPU in a profile; the identity check
    # makes the cache safe without invalidation hooks: table recovery after a rebalance
    # stores new bytes objects, which never match a cached entry.
    decoded: dict[bytes, tuple[bytes, PatientState]] = {}

    def get_state(patient: str) -> PatientState | None:
        key = patient.encode()
        raw = table.get(key)
        if raw is None:
            return None
        hit = decoded.get(key)
        if hit is not None and hit[0] is raw:
            return hit[1]
        state = decode_state(raw)
        decoded[key] = (raw, state)
        return state

    async def store(changes: dict[int, list[tuple[bytes, bytes | None]]]) -> None:
        """Changed table entries, by partition: durable in the changelog first, then in the
        table; a ``None`` value (tombstone) removes the key."""
        await publisher.publish_changelog(changelog, changes)
        for recs in changes.values():
            for key, raw in recs:
                if raw is None:
                    table.data.pop(key, None)
                    decoded.pop(key, None)
                else:
                    table.data[key] = raw

    async def handle(events: list) -> None:  # type: ignore[type-arg]
        async with state_lock:
            await _handle_vitals(events)

    async def _handle_vitals(events: list) -> None:  # type: ignore[type-arg]
        started = time.perf_counter()
        batch = [_in_record(e) for e in events]
        expected = {p: decode_progress(table.data.get(progress_key(p)))
                    for p in {r.partition for r in batch}}
        holes = missing_offsets(batch, expected)
        for p, offsets in holes.items():
            log.error("faust skipped %d vitals record(s) in partition %d (offsets %d..%d): "
                      "fetching them from the broker", len(offsets), p, offsets[0], offsets[-1])
            metrics.gap_records.inc(len(offsets))
            batch = await gaps.fetch(p, offsets) + batch
        t_score = time.perf_counter()
        res = processor.process(batch, get_state, int(time.time() * 1000), table.data.get)
        metrics.scoring_seconds.observe(time.perf_counter() - t_score)
        await publisher.publish(
            [(settings.topic_scores, k.encode(), encode(r)) for k, r in res.scores]
            + [(settings.topic_alerts, k.encode(), encode(a)) for k, a in res.alerts]
            + [(settings.topic_dlq, k.encode() if k else None, encode(d)) for k, d in res.dead])
        # one changelog record per touched patient per batch, to the patient's partition,
        # durable before the batch is acked (see OutputPublisher.publish_changelog)
        changes: dict[int, list[tuple[bytes, bytes | None]]] = defaultdict(list)
        for patient, (partition, state) in res.states.items():
            key, raw = patient.encode(), encode_state(state)
            changes[partition].append((key, raw))
            decoded[key] = (raw, state)
        for p in expected:  # this partition's progress, last in its changelog write
            done = max(r.offset for r in batch if r.partition == p) + 1
            changes[p].append((progress_key(p), encode_progress(max(done, expected[p] or 0))))
        await store(changes)
        for p, offsets in holes.items():
            await _ack_filled(app, settings.topic_vitals, p, offsets)
        _observe(metrics, res, len(batch), started)

    @app.agent(vitals, name="vitals")
    async def vitals_agent(stream: faust.StreamT) -> None:
        await publisher.start()

        def failed(exc: BaseException) -> None:
            # Per-record problems are dead-lettered inside the processor; what gets here
            # (the broker refusing our outputs, a bug) would otherwise let faust commit a
            # batch whose outputs or state were never written. Exit without committing:
            # the supervisor restarts the worker, the batch is re-processed, and the
            # deterministic ids keep that idempotent.
            metrics.errors.labels("batch").inc()
            _fatal(exc)

        batcher = MicroBatcher(handle, settings.batch_max_records, settings.batch_within_s,
                               stream.noack(), on_failure=failed)
        metrics.up.set(1)
        running["vitals"] = True
        try:
            await batcher.run()
        finally:
            metrics.up.set(0)
            running["vitals"] = False

    async def _vitals_caught_up(events: list, timeout_s: float = 10.0) -> None:  # type: ignore[type-arg]
        """Give the vitals agent time to reach the hours these labels describe.

        Live, a label comes hours after its vitals; a fast replay can deliver both at
        once, and a label whose hour the patient's state has not reached yet cannot be
        learned from. Labels that are still ahead after ``timeout_s`` are counted as
        ``ahead_of_vitals`` by the processor, not silently skipped.
        """
        wanted = []
        for event in events:
            try:
                label = LABEL_DECODER.decode(event.message.value)
            except (msgspec.ValidationError, msgspec.DecodeError):
                continue
            wanted.append((label.patient, int(label.event_time.timestamp() * 1000)))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all((st := get_state(p)) is not None and st.watermark_ms >= t for p, t in wanted):
                return
            await asyncio.sleep(0.05)

    async def handle_labels(events: list) -> None:  # type: ignore[type-arg]
        """Delayed outcome labels: the partition's online model learns each one, and the
        models that learned are written to the changelog before the batch is acked."""
        now_ms = int(time.time() * 1000)
        dead = []
        await _vitals_caught_up(events)
        for event in events:
            rec = _in_record(event)
            try:
                label = LABEL_DECODER.decode(rec.value)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                metrics.rejections.labels("schema").inc()
                metrics.dlq.labels("record").inc()
                dead.append((settings.topic_dlq, rec.key, encode(dead_letter(
                    rec, "record", [Rejection("schema", str(exc))], now_ms))))
                continue
            metrics.labels.labels(label.kind).inc()
            outcome = processor.learn(label, get_state(label.patient), rec.partition,
                                      table.data.get)
            metrics.online_labels.labels(outcome).inc()
        await publisher.publish(dead)
        learned: dict[int, list[tuple[bytes, bytes | None]]] = defaultdict(list)
        for p, key, raw in processor.take_state():
            learned[p].append((key, raw))
        if learned:
            await store(learned)

    async def handle_acks(events: list) -> None:  # type: ignore[type-arg]
        """Nurses' acknowledgements: stop the escalation, announce it on the alerts topic,
        and store the patient's state before the batch is acked."""
        async with state_lock:
            now_ms = int(time.time() * 1000)
            out: list[tuple[str, bytes | None, bytes]] = []
            changes: dict[int, list[tuple[bytes, bytes | None]]] = defaultdict(list)
            for event in events:
                rec = _in_record(event)
                res = processor.acknowledge(rec, get_state, now_ms)
                metrics.acks.labels(res.kind or "unknown", res.outcome).inc()
                if res.dead is not None:
                    metrics.rejections.labels(res.dead.reason).inc()
                    metrics.dlq.labels("record").inc()
                    out.append((settings.topic_dlq, rec.key, encode(res.dead)))
                if res.alert is not None and res.state is not None and res.patient is not None:
                    out.append((settings.topic_alerts, res.patient.encode(), encode(res.alert)))
                    key, raw = res.patient.encode(), encode_state(res.state)
                    changes[rec.partition].append((key, raw))
                    decoded[key] = (raw, res.state)
                    table.data[key] = raw  # later acks in this batch see it
                    metrics.alerts.labels(res.alert.kind, res.alert.severity, "acknowledged").inc()
                    if res.seconds_to_ack is not None:
                        metrics.time_to_ack.labels(res.alert.kind).observe(res.seconds_to_ack)
            await publisher.publish(out)
            if changes:
                await store(changes)

    async def sweep_overdue() -> None:
        """Escalate unacknowledged alerts of live feeds that went quiet (see
        ``Processor.sweep``): events first, then the changed states, as for a batch."""
        if not running["vitals"] or app.rebalancing:
            return
        owned = {tp.partition for tp in app.assignor.assigned_actives()
                 if tp.topic == settings.topic_vitals}
        now_ms = int(time.time() * 1000)
        live_ms = settings.alert_live_lag_s * 1000
        ttl_ms = settings.patient_ttl_s * 1000
        async with state_lock:
            out: list[tuple[str, bytes | None, bytes]] = []
            changes: dict[int, list[tuple[bytes, bytes | None]]] = defaultdict(list)
            gone: list[bytes] = []
            for key in [k for k in list(table.data.keys()) if not k.startswith(b"#")]:
                state = get_state(key.decode())
                if state is None or state.partition not in owned:
                    continue
                if processor.expired(state, now_ms, ttl_ms):
                    changes[state.partition].append((key, None))  # tombstone
                    gone.append(key)
                    continue
                events, new_state = processor.sweep(key.decode(), state, now_ms, live_ms)
                if new_state is None:
                    continue
                raw = encode_state(new_state)
                changes[new_state.partition].append((key, raw))
                decoded[key] = (raw, new_state)
                for a in events:
                    out.append((settings.topic_alerts, key, encode(a)))
                    metrics.alerts.labels(a.kind, a.severity, a.state).inc()
                    metrics.escalations.labels(a.kind, "unacknowledged").inc()
            if not changes:
                return
            await publisher.publish(out)
            await store(changes)
            if gone:
                metrics.expired.inc(len(gone))
                log.info("removed %d patient state(s) idle for %d h", len(gone),
                         settings.patient_ttl_s // 3600)

    if settings.alert_sweep_s > 0:
        @app.timer(interval=settings.alert_sweep_s, name="sweep_overdue_alerts")
        async def _sweep_timer() -> None:
            try:
                await sweep_overdue()
            except Exception:  # counted and paged (VigilProcessingErrors); the next sweep
                # retries: nothing was stored, and a re-published escalation has the same id
                metrics.errors.labels("sweep").inc()
                log.exception("the overdue-alert sweep failed; retrying at the next one")

    async def run_batched(stream: faust.StreamT, handle: Callable[[list], Awaitable[None]],  # type: ignore[type-arg]
                          stage: str) -> None:
        """A side agent's loop (acks, labels): micro-batches acked after ``handle``; a
        failure exits without committing, as for the vitals agent."""
        await publisher.start()

        def failed(exc: BaseException) -> None:
            metrics.errors.labels(stage).inc()
            _fatal(exc)

        await MicroBatcher(handle, settings.batch_max_records, settings.batch_within_s,
                           stream.noack(), on_failure=failed).run()

    @app.agent(acks, name="acks")
    async def acks_agent(stream: faust.StreamT) -> None:
        await run_batched(stream, handle_acks, "acks")

    @app.agent(labels, name="labels")
    async def labels_agent(stream: faust.StreamT) -> None:
        await run_batched(stream, handle_labels, "labels")

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
            if not running.get("lag_warned"):
                log.warning("faust's consumer has no _committed_offset: "
                            "vigil_consumer_lag_records is not reported")
                running["lag_warned"] = True
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
        ready = bool(assigned) and not app.rebalancing and running["vitals"]
        return web.json({"status": "ok" if ready else "starting", "ready": ready,
                         "version": __version__, "assigned_partitions": assigned,
                         "time": datetime.now(UTC).isoformat()},
                        status=200 if ready else 503)

    return Wiring(app, table, metrics)


class MicroBatcher:
    """Micro-batches of events: at most ``max_records``, or what came within ``within_s``.

    Replaces faust's ``Stream.take_events``, which lost events under load in tests here:
    its buffer callback resets the "batch is being consumed" future after waiting on it,
    clobbering the next batch's future, so events appended while a batch is processed were
    cleared with it, never processed and never acked (the commit then stalls below them).
    Here the stream is read without automatic acks (``stream.noack()``); a batch is taken
    from the list in one synchronous step, processed, and only then acked, one batch at a
    time under a lock. A full buffer is flushed inline, which holds the reader back
    (backpressure); a timer flushes a partial one after ``within_s``.
    """

    def __init__(self, handle: Callable[[list], Awaitable[None]], max_records: int,  # type: ignore[type-arg]
                 within_s: float, stream: faust.StreamT,
                 on_failure: Callable[[BaseException], None]) -> None:
        self.handle = handle
        self.max_records = max_records
        self.within_s = within_s
        self.stream = stream
        self.on_failure = on_failure
        self.pending: list[faust.EventT] = []
        self.first_at = 0.0
        self.lock = asyncio.Lock()

    async def flush(self) -> None:
        async with self.lock:
            batch, self.pending = self.pending, []
            if not batch:
                return
            try:
                await self.handle(batch)
            except Exception as exc:
                self.on_failure(exc)
                raise
            for event in batch:
                await self.stream.ack(event)

    async def _timer(self) -> None:
        while True:
            await asyncio.sleep(self.within_s / 2)
            if self.pending and time.monotonic() - self.first_at >= self.within_s:
                await self.flush()

    async def run(self) -> None:
        timer = asyncio.create_task(self._timer())
        try:
            async for event in self.stream.events():
                if not self.pending:
                    self.first_at = time.monotonic()
                self.pending.append(event)
                if len(self.pending) >= self.max_records:
                    await self.flush()
        finally:
            timer.cancel()


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


def _in_record(event: faust.EventT) -> InRecord:
    m = event.message
    return InRecord(m.topic, m.partition, m.offset, m.key, m.value, int((m.timestamp or 0) * 1000))


def _fatal(exc: BaseException) -> None:
    log.critical("a batch failed outside record validation; exiting without committing "
                 "so that it is re-processed after restart", exc_info=exc)
    logging.shutdown()
    os._exit(70)  # EX_SOFTWARE; a graceful stop would commit the batch's offsets


def _observe(metrics: Metrics, res, n: int, started: float) -> None:  # type: ignore[no-untyped-def]
    metrics.batch_records.observe(n)
    metrics.scored_rows.observe(res.scored_rows)
    metrics.observe_units(res.scores, res.states, time.time())
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
    for (kind, cause), count in res.escalations.items():
        metrics.escalations.labels(kind, cause).inc(count)
    for (kind, cause), count in res.suppressed.items():
        metrics.suppressed.labels(kind, cause).inc(count)
    for kind, risks in res.risks.items():
        hist = metrics.risk.labels(kind)
        for r in risks:
            hist.observe(r)
    for lag in res.ingest_lag_s:
        metrics.ingest_to_publish.observe(lag)
    metrics.batch_seconds.observe(time.perf_counter() - started)
