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
from collections.abc import Awaitable, Callable, Iterable

from vigil.metrics import Metrics
from vigil.settings import VigilSettings
from vigil.stream.gaps import (
    GapFiller,
    decode_progress,
    encode_progress,
    missing_offsets,
    progress_key,
)
from vigil.stream.processor import BatchResult, Processor
from vigil.stream.publisher import OutputPublisher
from vigil.stream.tables import Changes, PatientStore
from vigil.wire.consumed import InRecord, dead_letter
from vigil.wire.durations import HOUR_MS, dt_to_ms
from vigil.wire.records import LABEL_DECODER, LabelRecord, Rejection, decode_wire, encode

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


class VitalsHandler(_Handler):
    """Vitals micro-batches: fill gaps faust left, process, publish, store progress."""

    def __init__(self, settings: VigilSettings, processor: Processor, store: PatientStore,
                 publisher: OutputPublisher, gaps: GapFiller, metrics: Metrics,
                 ack_filled: Callable[[int, list[int]], Awaitable[None]]) -> None:
        super().__init__(settings, processor, store, publisher, metrics)
        self.gaps = gaps
        self.ack_filled = ack_filled  # tells faust that fetched offsets are done

    async def __call__(self, events: list) -> None:  # type: ignore[type-arg]
        async with self.store.lock:
            await self.handle([in_record(e) for e in events])

    async def handle(self, batch: list[InRecord]) -> None:
        started = time.perf_counter()
        expected = self.expected_offsets(batch)
        batch, holes = await self.complete(batch, expected)
        t_score = time.perf_counter()
        res = self.processor.process(batch, self.store.state, _now_ms(), self.store.get)
        self.metrics.scoring_seconds.observe(time.perf_counter() - t_score)
        await self.publisher.publish(self.outputs(res))
        await self.store.store(self.changes(res, batch, expected))
        for p, offsets in holes.items():
            await self.ack_filled(p, offsets)
        self.metrics.observe_batch(res, len(batch), started)

    def expected_offsets(self, batch: list[InRecord]) -> dict[int, int | None]:
        """Each partition's next offset, as Vigil last stored it."""
        return {p: decode_progress(self.store.get(progress_key(p)))
                for p in {r.partition for r in batch}}

    async def complete(self, batch: list[InRecord], expected: dict[int, int | None]
                       ) -> tuple[list[InRecord], dict[int, list[int]]]:
        """The batch with the records faust skipped fetched from the broker (see gaps)."""
        holes = missing_offsets(batch, expected)
        for p, offsets in holes.items():
            log.error("faust skipped %d vitals record(s) in partition %d (offsets %d..%d): "
                      "fetching them from the broker", len(offsets), p, offsets[0], offsets[-1])
            self.metrics.gap_records.inc(len(offsets))
            batch = await self.gaps.fetch(p, offsets) + batch
        return batch, holes

    def outputs(self, res: BatchResult) -> Out:
        s = self.settings
        return ([(s.topic_scores, k.encode(), encode(r)) for k, r in res.scores]
                + [(s.topic_alerts, k.encode(), encode(a)) for k, a in res.alerts]
                + [(s.topic_dlq, k.encode() if k else None, encode(d)) for k, d in res.dead])

    def changes(self, res: BatchResult, batch: list[InRecord],
                expected: dict[int, int | None]) -> Changes:
        """One changelog record per touched patient, to its partition, then each
        partition's progress last in its write (see OutputPublisher.publish_changelog)."""
        changes = self.store.changes()
        for patient, (partition, state) in res.states.items():
            changes[partition].append(self.store.encode(patient, state))
        for p in expected:
            done = max(r.offset for r in batch if r.partition == p) + 1
            changes[p].append((progress_key(p), encode_progress(max(done, expected[p] or 0))))
        return changes


class LabelsHandler(_Handler):
    """Delayed outcome labels: every model that learns them does, and the models that
    learned are stored before the batch is acked."""

    def __init__(self, settings: VigilSettings, processor: Processor, store: PatientStore,
                 publisher: OutputPublisher, metrics: Metrics, *,
                 catch_up_s: float = 10.0) -> None:
        super().__init__(settings, processor, store, publisher, metrics)
        self.catch_up_s = catch_up_s

    async def __call__(self, events: list) -> None:  # type: ignore[type-arg]
        await self.handle([in_record(e) for e in events])

    async def handle(self, batch: list[InRecord]) -> None:
        now_ms = _now_ms()
        decoded = [(rec, self.decode(rec)) for rec in batch]
        await self.wait_for_vitals([lb for _, lb in decoded if isinstance(lb, LabelRecord)])
        dead: Out = []
        for rec, label in decoded:
            if isinstance(label, Rejection):
                self.metrics.rejections.labels(label.reason).inc()
                self.metrics.dlq.labels("record").inc()
                dead.append((self.settings.topic_dlq, rec.key, encode(dead_letter(
                    rec, "record", [label], now_ms))))
                continue
            self.metrics.labels.labels(label.kind).inc()
            outcome = self.processor.learn(label, self.store.state(label.patient),
                                           rec.partition, self.store.get)
            self.metrics.online_labels.labels(outcome).inc()
        await self.publisher.publish(dead)
        learned = self.store.changes()
        for p, key, raw in self.processor.take_state():
            learned[p].append((key, raw))
        if learned:
            await self.store.store(learned)

    @staticmethod
    def decode(rec: InRecord) -> LabelRecord | Rejection:
        """The label, or why it cannot be read (never an exception: see decode_wire)."""
        return decode_wire(LABEL_DECODER, rec.value)

    async def wait_for_vitals(self, labels: Iterable[LabelRecord]) -> None:
        """Give the vitals agent time to reach the hours these labels describe.

        Live, a label comes hours after its vitals; a fast replay can deliver both at
        once, and a label whose hour the patient's state has not reached yet cannot be
        learned from. Labels still ahead after ``catch_up_s`` are counted as
        ``ahead_of_vitals`` by the processor, not silently skipped.
        """
        wanted = [(lb.patient, dt_to_ms(lb.event_time)) for lb in labels]
        deadline = time.monotonic() + self.catch_up_s
        while time.monotonic() < deadline:
            if all((st := self.store.state(p)) is not None and st.watermark_ms >= t
                   for p, t in wanted):
                return
            await asyncio.sleep(0.05)


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

    async def sweep(self, owned: set[int], now_ms: int | None = None) -> None:
        """Sweep the patients of the vitals partitions in ``owned``."""
        now_ms = _now_ms() if now_ms is None else now_ms
        live_ms = self.settings.alert_live_lag_s * 1000
        ttl_ms = self.settings.patient_ttl_s * 1000
        async with self.store.lock:
            out: Out = []
            changes = self.store.changes()
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
