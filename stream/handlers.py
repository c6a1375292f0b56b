"""What each agent does with a micro-batch, as objects with named steps (no faust loops here).

Every handler follows the same order: the processor (pure) decides; the outputs are
published and the broker has them; the changed table entries are stored changelog-first;
only then does the batcher ack the batch. A crash anywhere re-processes the batch from the
last commit; the redelivery guard in the state and the deterministic output ids make that
harmless (at-least-once, idempotent).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from vigil.metrics import Metrics
from vigil.settings import VigilSettings
from vigil.stream.gaps import (
    GapFiller,
    decode_progress,
    encode_progress,
    missing_offsets,
    progress_key,
)
from vigil.stream.label_queue import (
    LabelClocks,
    LabelQueue,
    Queued,
    decode_queue,
    encode_queue,
    queue_key,
)
from vigil.stream.processor import BatchResult, Processor
from vigil.stream.publisher import OutputPublisher
from vigil.stream.tables import Changes, PatientStore
from vigil.stream.validation import event_ms_of
from vigil.wire.consumed import InRecord, dead_letter
from vigil.wire.durations import HOUR_MS, dt_to_ms
from vigil.wire.records import LABEL_DECODER, LabelRecord, Rejection, decode_wire, encode
from vigil.wire.state import PatientState

__all__ = ["AcksHandler", "LabelsHandler", "Sweeper", "VitalsHandler", "in_record"]

log = logging.getLogger(__name__)

Out = list[tuple[str, bytes | None, bytes]]  # (topic, key, value) to publish


def in_record(event: object) -> InRecord:
    """The processor's view of a faust event."""
    m = event.message  # type: ignore[attr-defined]
    return InRecord(m.topic, m.partition, m.offset, m.key, m.value,
                    int((m.timestamp or 0) * 1000))


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Handler:
    """What every handler works with: settings, the processor, the patients table, the
    output publisher and the worker's metrics."""

    def __init__(self, settings: VigilSettings, processor: Processor, store: PatientStore,
                 publisher: OutputPublisher, metrics: Metrics) -> None:
        self.settings = settings
        self.processor = processor
        self.store = store
        self.publisher = publisher
        self.metrics = metrics

    def learn(self, due: list[Queued], partition: int,
              state_of: Callable[[str], PatientState | None], by: str) -> None:
        """Queued labels, in arrival order, into the models that learn their kind."""
        for q in due:
            label = LABEL_DECODER.decode(q.raw)  # validated when it was queued
            outcome = self.processor.learn(label, state_of(label.patient), partition,
                                           self.store.get)
            self.metrics.online_labels.labels(outcome).inc()
        self.metrics.labels_applied.labels(by).inc(len(due))


class VitalsHandler(_Handler):
    """Vitals micro-batches: fill gaps faust left, learn the labels due on the way (see
    :mod:`vigil.stream.label_queue`), process, publish, store progress."""

    def __init__(self, settings: VigilSettings, processor: Processor, store: PatientStore,
                 publisher: OutputPublisher, gaps: GapFiller, metrics: Metrics,
                 ack_filled: Callable[[int, list[int]], Awaitable[None]],
                 clocks: LabelClocks | None = None,
                 pull_labels: Callable[[int, int, int], Awaitable[None]] | None = None) -> None:
        """``pull_labels(partition, start, end)``: fetch labels offsets [start, end) from
        the broker and queue them (:meth:`LabelsHandler.pull`); None: wait for faust."""
        super().__init__(settings, processor, store, publisher, metrics)
        self.gaps = gaps
        self.ack_filled = ack_filled  # tells faust that fetched offsets are done
        self.clocks = clocks if clocks is not None else LabelClocks()
        self.pull_labels = pull_labels

    async def __call__(self, events: list) -> None:  # type: ignore[type-arg]
        batch = [in_record(e) for e in events]
        times = await self.wait_for_labels(batch)
        async with self.store.lock:
            await self.handle(batch, times)

    async def wait_for_labels(self, batch: list[InRecord]) -> dict[tuple[int, int], int | None]:
        """Wait, at most ``VIGIL_LABEL_IDLE_S``, until every label due within this batch
        has been queued: only then does what the online models learn before each record
        depend on the partitions' contents alone (Kafka Streams' ``max.task.idle.ms``).

        Queued means: a label known in the batch's last hour or later was read, or the
        labels partition was read to the end it had *after* this batch was fetched (every
        label produced before these vitals is in it). Returns each record's event time by
        (partition, offset), read once for the label segmentation in :meth:`process` too.

        The labels up to that end are pulled from the broker at once rather than waited for
        from faust: during a rebalance faust pauses every partition, so a batch in flight
        waited out the whole idle time while the group's rebalance went on without this
        worker (tansu completes a join after half the session timeout); the group gave its
        partitions to others, and its late write of stale state reverted theirs (seen in a
        group run). faust delivers the pulled labels later as well: the queue's next
        offset skips them."""
        if not self.processor.learners:
            return {}
        times = {(rec.partition, rec.offset): event_ms_of(rec.value) for rec in batch}
        latest: dict[int, int] = {}
        for (p, _), t in times.items():
            if t is not None and t > latest.get(p, -1):
                latest[p] = t
        clocks = self.clocks
        behind = {p: t for p, t in latest.items() if not clocks.known_past(p, t)}
        if not behind:
            return times
        try:
            ends = await clocks.ends({p: clocks.position(p) for p in behind})
        except Exception:  # the broker did not answer: wait out the idle time below
            log.warning("could not read the labels partitions' ends", exc_info=True)
            ends = {}

        def ready() -> bool:
            return all(clocks.known_past(p, t) or (p in ends and clocks.position(p) >= ends[p])
                       for p, t in behind.items())

        if self.pull_labels is not None:
            for p in sorted(behind):
                start = clocks.position(p)
                if p in ends and start < ends[p]:
                    try:
                        await self.pull_labels(p, start, ends[p])
                    except Exception:  # the broker did not answer: faust may still deliver
                        log.warning("could not pull labels %d..%d of partition %d", start,
                                    ends[p] - 1, p, exc_info=True)
                    else:
                        self.metrics.labels_pulled.inc(ends[p] - start)
        if ready():
            return times
        deadline = time.monotonic() + self.settings.label_idle_s
        while time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            if ready():
                self.metrics.label_waits.labels("caught_up").inc()
                return times
        self.metrics.label_waits.labels("timed_out").inc()
        log.warning("the labels partition(s) %s did not catch up with their vitals within "
                    "%.1f s: going on without (what the online model knows before these "
                    "records may differ from a rerun)", sorted(behind),
                    self.settings.label_idle_s)
        return times

    async def handle(self, batch: list[InRecord],
                     times: dict[tuple[int, int], int | None] | None = None) -> None:
        """``times``: event times already read (:meth:`wait_for_labels`); others are read."""
        started = time.perf_counter()
        expected = self.expected_offsets(batch)
        batch, holes = await self.complete(batch, expected)
        t_score = time.perf_counter()
        res, queues = self.process(batch, _now_ms(), times)
        self.metrics.scoring_seconds.observe(time.perf_counter() - t_score)
        await self.publisher.publish(self.outputs(res))
        await self.store.store(self.changes(res, batch, expected, queues))
        for p, offsets in holes.items():
            await self.ack_filled(p, offsets)
        for p in expected:
            self.clocks.vitals_seen(p)
        self.metrics.observe_batch(res, len(batch), started)

    def process(self, batch: list[InRecord], now_ms: int,
                times: dict[tuple[int, int], int | None] | None = None
                ) -> tuple[BatchResult, dict[int, LabelQueue]]:
        """The batch through the processor, in parts: before the first record of a
        partition in an hour past a queued label's known time, the labels due are learned.
        Returns the merged result and the queues that changed."""
        res = BatchResult()
        queues: dict[int, LabelQueue] = {}
        if not self.processor.learners:
            res.merge(self.processor.process(batch, self.store.state, now_ms, self.store.get))
            return res, queues
        states: dict[str, PatientState] = {}  # the batch's states so far (new patients too)

        def state_of(patient: str) -> PatientState | None:
            return states[patient] if patient in states else self.store.state(patient)

        def run(part: list[InRecord]) -> None:
            if part:
                done = self.processor.process(part, state_of, now_ms, self.store.get)
                states.update({pt: st for pt, (_, st) in done.states.items()})
                res.merge(done)

        start = 0
        changed: set[int] = set()
        for i, rec in enumerate(batch):
            q = queues.get(rec.partition)
            if q is None:
                q = queues[rec.partition] = decode_queue(self.store.get(queue_key(rec.partition)))
            if not q.items:
                continue
            key = (rec.partition, rec.offset)
            t = times[key] if times is not None and key in times else event_ms_of(rec.value)
            n = q.due_before(t) if t is not None else 0
            if n:
                run(batch[start:i])
                start = i
                self.learn(q.take(n), rec.partition, state_of, "stream")
                changed.add(rec.partition)
        run(batch[start:])
        return res, {p: queues[p] for p in changed}

    def expected_offsets(self, batch: list[InRecord]) -> dict[int, int | None]:
        """Each partition's next offset, as Vigil last stored it."""
        return {p: decode_progress(self.store.get(progress_key(p)))
                for p in {r.partition for r in batch}}

    async def complete(self, batch: list[InRecord], expected: dict[int, int | None]
                       ) -> tuple[list[InRecord], dict[int, list[int]]]:
        """The batch with the records faust skipped fetched from the broker (see gaps)."""
        return await fill_gaps(batch, expected, self.gaps, self.metrics, "vitals")

    def outputs(self, res: BatchResult) -> Out:
        s = self.settings
        return ([(s.topic_scores, k.encode(), encode(r)) for k, r in res.scores]
                + [(s.topic_alerts, k.encode(), encode(a)) for k, a in res.alerts]
                + [(s.topic_dlq, k.encode() if k else None, encode(d)) for k, d in res.dead])

    def changes(self, res: BatchResult, batch: list[InRecord],
                expected: dict[int, int | None],
                queues: dict[int, LabelQueue] | None = None) -> Changes:
        """One changelog record per touched patient, to its partition, then the models that
        learned and their queues, then each partition's progress last in its write (see
        OutputPublisher.publish_changelog).

        The order makes a crash within the write harmless: whatever part of it landed, the
        batch is processed again from the first patient whose state did not, with the
        models and queues as they were before it (they land only after every state), so
        the same labels are learned at the same records and the re-published outputs are
        identical. Models written before the states would let a re-processed record be
        scored by a model that had learned labels due only after it."""
        changes = self.store.changes()
        for patient, (partition, state) in res.states.items():
            changes[partition].append(self.store.encode(patient, state))
        for p, entries in learned_changes(self.store, self.processor, queues or {}).items():
            changes[p].extend(entries)
        for p in expected:
            done = max(r.offset for r in batch if r.partition == p) + 1
            changes[p].append((progress_key(p), encode_progress(max(done, expected[p] or 0))))
        return changes


async def fill_gaps(batch: list[InRecord], expected: dict[int, int | None],
                    gaps: GapFiller | None, metrics: Metrics, what: str
                    ) -> tuple[list[InRecord], dict[int, list[int]]]:
    """``batch`` with the records faust skipped (between the offset each partition expects
    next and the batch's last) fetched from the broker, and those offsets (see gaps).

    A partition without bookkeeping has had none of its records handled (or its state is
    gone with everything learned from them): it expects its log's first offset. faust can
    skip a partition's first records too, before anything was stored for it (a group run
    lost a partition's first five labels that way: its online model then differed)."""
    if gaps is None:  # nothing to fetch from (the in-memory drivers and unit tests)
        return batch, {}
    expected = dict(expected)
    for p in sorted({r.partition for r in batch}):
        if expected.get(p) is None:
            expected[p] = await gaps.log_start(p)
    holes = missing_offsets(batch, expected)
    for p, offsets in holes.items():
        log.error("faust skipped %d %s record(s) in partition %d (offsets %d..%d): fetching "
                  "them from the broker", len(offsets), what, p, offsets[0], offsets[-1])
        metrics.gap_records.inc(len(offsets))
        batch = await gaps.fetch(p, offsets) + batch
    return batch, holes


def learned_changes(store: PatientStore, processor: Processor,
                    queues: dict[int, LabelQueue]) -> Changes:
    """The table entries of the models that learned and of the queues that changed."""
    changes = store.changes()
    for p, key, raw in processor.take_state():
        changes[p].append((key, raw))
    for p, q in queues.items():
        changes[p].append((queue_key(p), encode_queue(q)))
    return changes


class LabelsHandler(_Handler):
    """Delayed outcome labels: checked, then queued in their partition's table entry for
    the vitals handler to learn in event time (:mod:`vigil.stream.label_queue`).

    Every labels record is handled once: the queue keeps the next labels offset it expects,
    so what faust re-delivers after a crash or a partition move is skipped, and what faust
    skipped (its flow control can ack records it never delivered; a worker that took over a
    partition missed four labels that way) is fetched from the broker, as for vitals."""

    def __init__(self, settings: VigilSettings, processor: Processor, store: PatientStore,
                 publisher: OutputPublisher, metrics: Metrics,
                 clocks: LabelClocks | None = None, gaps: GapFiller | None = None,
                 ack_filled: Callable[[int, list[int]], Awaitable[None]] | None = None) -> None:
        super().__init__(settings, processor, store, publisher, metrics)
        self.clocks = clocks if clocks is not None else LabelClocks()
        self.gaps = gaps
        self.ack_filled = ack_filled
        self.pulled_from: dict[int, int] = {}  # first labels offset pulled ahead, by partition

    async def __call__(self, events: list) -> None:  # type: ignore[type-arg]
        await self.take([in_record(e) for e in events])

    async def take(self, batch: list[InRecord]) -> None:
        async with self.store.lock:  # the queues are read-modified-written like states
            await self.handle(batch)

    async def pull(self, partition: int, start: int, end: int) -> None:
        """Labels offsets [start, end) of ``partition``, fetched from the broker and queued
        now (for the vitals handler's wait, see VitalsHandler.wait_for_labels)."""
        if self.gaps is None:
            raise RuntimeError("no broker client to pull labels with")
        async with self.store.lock:  # also keeps the labels agent's gap fetches apart
            batch = await self.gaps.fetch(partition, list(range(start, end)), timeout_s=5.0)
            self.pulled_from.setdefault(partition, start)
            await self.handle(batch)

    async def handle(self, batch: list[InRecord]) -> None:
        now_ms = _now_ms()
        queues: dict[int, LabelQueue] = {}
        for p in {r.partition for r in batch}:
            raw = self.store.get(queue_key(p))
            if raw is not None:
                queues[p] = decode_queue(raw)
        batch, holes = await fill_gaps(batch, {p: q.next_offset for p, q in queues.items()},
                                       self.gaps, self.metrics, "labels")
        dead: Out = []
        known: dict[int, int] = {}
        for rec in sorted(batch, key=lambda r: (r.partition, r.offset)):
            q = queues.get(rec.partition)
            if q is None:
                q = queues[rec.partition] = LabelQueue()
            if rec.offset < q.next_offset:  # handled before a crash or a partition move
                if rec.offset >= self.pulled_from.get(rec.partition, rec.offset + 1):
                    continue  # faust's copy of a label pulled ahead (counted when pulled)
                self.metrics.online_labels.labels("redelivered").inc()
                continue
            q.next_offset = rec.offset + 1
            label = self.decode(rec, now_ms)
            if isinstance(label, Rejection):
                self.metrics.rejections.labels(label.reason).inc()
                self.metrics.dlq.labels("record").inc()
                dead.append((self.settings.topic_dlq, rec.key, encode(dead_letter(
                    rec, "record", [label], now_ms))))
                continue
            self.metrics.labels.labels(label.kind).inc()
            refused = self.processor.unlearnable(label.kind)
            if refused is not None:  # nobody here learns it: counted now, not queued
                self.metrics.online_labels.labels(refused).inc()
                continue
            known_ms = dt_to_ms(label.known_time)
            q.add(rec.offset, known_ms, rec.value)  # type: ignore[arg-type]  # decoded
            known[rec.partition] = max(known.get(rec.partition, known_ms), known_ms)
        await self.publisher.publish(dead)
        await self.store.store(learned_changes(self.store, self.processor, queues))
        if self.ack_filled is not None:
            for p, offsets in holes.items():
                await self.ack_filled(p, offsets)
        for p in {r.partition for r in batch}:
            self.clocks.labels_read(p, queues[p].next_offset, known.get(p))

    def decode(self, rec: InRecord, now_ms: int) -> LabelRecord | Rejection:
        """The label, or why it cannot be used (never an exception: see decode_wire).

        A label known in the future would hold its partition's queue (it is learned head
        first): refused as ``future``, like vitals beyond the clock skew."""
        label = decode_wire(LABEL_DECODER, rec.value)
        if isinstance(label, Rejection):
            return label
        if dt_to_ms(label.known_time) > now_ms + self.settings.max_clock_skew_s * 1000:
            return Rejection("future", "the label's known_time is in the future")
        return label


class AcksHandler(_Handler):
    """Nurses' acknowledgements: stop the escalation, announce it on the alerts topic,
    and store the patient's state before the batch is acked."""

    async def __call__(self, events: list) -> None:  # type: ignore[type-arg]
        async with self.store.lock:
            await self.handle([in_record(e) for e in events])

    async def handle(self, batch: list[InRecord]) -> None:
        now_ms = _now_ms()
        out: Out = []
        changes = self.store.changes()
        for rec in batch:
            res = self.processor.acknowledge(rec, self.store.state, now_ms)
            self.metrics.acks.labels(res.kind or "unknown", res.outcome).inc()
            if res.dead is not None:
                self.metrics.rejections.labels(res.dead.reason).inc()
                self.metrics.dlq.labels("record").inc()
                out.append((self.settings.topic_dlq, rec.key, encode(res.dead)))
            if res.alert is not None and res.state is not None and res.patient is not None:
                out.append((self.settings.topic_alerts, res.patient.encode(), encode(res.alert)))
                key, raw = self.store.encode(res.patient, res.state)
                changes[rec.partition].append((key, raw))
                self.store.put_local(key, raw)  # later acks in this batch see it
                self.metrics.alerts.labels(res.alert.kind, res.alert.severity,
                                           "acknowledged").inc()
                if res.seconds_to_ack is not None:
                    self.metrics.time_to_ack.labels(res.alert.kind).observe(res.seconds_to_ack)
        await self.publisher.publish(out)
        if changes:
            await self.store.store(changes)


class Sweeper(_Handler):
    """By the wall clock: escalate unacknowledged alerts of live feeds that went quiet (see
    ``Processor.sweep``) and remove patients idle past their TTL; events first, then the
    changed states, as for a batch."""

    def __init__(self, settings: VigilSettings, processor: Processor, store: PatientStore,
                 publisher: OutputPublisher, metrics: Metrics,
                 clocks: LabelClocks | None = None) -> None:
        super().__init__(settings, processor, store, publisher, metrics)
        self.clocks = clocks if clocks is not None else LabelClocks()

    async def sweep(self, owned: set[int], now_ms: int | None = None) -> None:
        """Sweep the patients of the vitals partitions in ``owned``."""
        now_ms = _now_ms() if now_ms is None else now_ms
        live_ms = self.settings.alert_live_lag_s * 1000
        ttl_ms = self.settings.patient_ttl_s * 1000
        async with self.store.lock:
            out: Out = []
            changes = self.idle_labels(owned, now_ms)
            gone = 0
            for key in self.store.patients():
                state = self.store.state(key.decode())
                if state is None or state.partition not in owned:
                    continue
                if self.processor.expired(state, now_ms, ttl_ms):
                    changes[state.partition].append((key, None))  # tombstone
                    gone += 1
                    continue
                events, new_state = self.processor.sweep(key.decode(), state, now_ms, live_ms)
                if new_state is None:
                    continue
                changes[new_state.partition].append(self.store.encode(key.decode(), new_state))
                for a in events:
                    out.append((self.settings.topic_alerts, key, encode(a)))
                    self.metrics.alerts.labels(a.kind, a.severity, a.state).inc()
                    self.metrics.escalations.labels(a.kind, "unacknowledged").inc()
            if not changes:
                return
            await self.publisher.publish(out)
            await self.store.store(changes)
            if gone:
                self.metrics.expired.inc(gone)
                log.info("removed %d patient state(s) idle for %d h", gone,
                         self.settings.patient_ttl_s * 1000 // HOUR_MS)

    def idle_labels(self, owned: set[int], now_ms: int) -> Changes:
        """Learn, by the wall clock, the labels queued in partitions whose vitals have been
        quiet for ``VIGIL_LABEL_IDLE_S`` (no record will make them due in event time)."""
        queues: dict[int, LabelQueue] = {}
        for p in sorted(owned):
            raw = self.store.get(queue_key(p))
            if raw is None:
                continue
            quiet = self.clocks.idle_for(p, decode_progress(self.store.get(progress_key(p))))
            if quiet < self.settings.label_idle_s:
                continue
            q = decode_queue(raw)
            n = q.due_by(now_ms)
            if n:
                self.learn(q.take(n), p, self.store.state, "idle")
                queues[p] = q
        return learned_changes(self.store, self.processor, queues)
