"""Labels are learned in event time: the same partitions give the same scores and alerts
whatever the batches, and however far ahead of the vitals the labels arrived.

Two runs of byte-identical input differed by 22 alert events when labels were learned the
moment the labels agent read them (issue 13): these tests drive the handlers without a
broker, with the real online model, and compare whole outputs.
"""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime

import numpy as np

from vigil.models.online import OnlineModel, OnlineScorer
from vigil.models.preprocess import Normaliser
from vigil.settings import VigilSettings
from vigil.stream.gaps import decode_progress, progress_key
from vigil.stream.handlers import LabelsHandler, Sweeper, VitalsHandler
from vigil.stream.label_queue import LabelClocks, LabelQueue, decode_queue, queue_key
from vigil.stream.processor import Processor
from vigil.stream.tables import PatientStore
from vigil.wire.consumed import InRecord
from vigil.wire.records import ALERT_DECODER, SCORE_DECODER

from .helpers import HOUR, T0
from .test_handlers import _Metrics, _Publisher, _Table

PATIENTS = {"pt-a": 0, "pt-b": 1, "pt-c": 0}  # patient -> partition
HOURS = 14


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def _inputs() -> tuple[list[InRecord], list[InRecord]]:
    """Hourly vitals of three patients (pt-a deteriorating), in partition order, and one
    label per patient-hour known 2 h later (pt-a positive from hour 4)."""
    vitals, labels = [], []
    offsets = {0: 0, 1: 0}
    for h in range(HOURS):
        for pt, p in PATIENTS.items():
            bad = pt == "pt-a" and h >= 4
            obs = {"HR": 125 + h if bad else 80, "RR": 28 if bad else 16,
                   "SBP": 88 if bad else 122, "Temp": 38.9 if bad else 36.9}
            t = T0 + h * HOUR + 60_000 * (1 + list(PATIENTS).index(pt))
            value = json.dumps({"patient": pt, "event_time": _iso(t), "event_id": f"{pt}{h}",
                                "observations": [{"code": c, "value": v}
                                                 for c, v in obs.items()]}).encode()
            vitals.append(InRecord("vigil.vitals", p, offsets[p], pt.encode(), value, t))
            offsets[p] += 1
    lab_offsets = {0: 0, 1: 0}
    for h in range(HOURS):
        for pt, p in PATIENTS.items():
            t = T0 + h * HOUR + 60_000 * (1 + list(PATIENTS).index(pt))
            value = json.dumps({"patient": pt, "kind": "sepsis", "event_time": _iso(t),
                                "label": int(pt == "pt-a" and h >= 4),
                                "known_time": _iso(t + 2 * HOUR)}).encode()
            labels.append(InRecord("vigil.labels", p, lab_offsets[p], pt.encode(), value, t))
            lab_offsets[p] += 1
    labels.sort(key=lambda r: json.loads(r.value)["known_time"])
    return vitals, labels


def _online(features) -> OnlineScorer:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, len(features.names)))
    norm = Normaliser.fit(X, features.names)
    warm = OnlineModel.warm_start(norm.transform(X), rng.random(300) < 0.1)
    return OnlineScorer(warm, norm, target="sepsis", learns_from="sepsis",
                        levels=((0.3, "medium"),))


class _Worker:
    def __init__(self, features, windows) -> None:  # type: ignore[no-untyped-def]
        self.settings = VigilSettings(max_clock_skew_s=10**9)
        self.proc = Processor(windows, [_online(features)])
        self.pub = _Publisher()
        self.store = PatientStore(_Table(), self.pub, "changelog")  # type: ignore[arg-type]
        self.vitals = VitalsHandler(self.settings, self.proc, self.store, self.pub, None,  # type: ignore[arg-type]
                                    _Metrics(), None)  # type: ignore[arg-type]
        self.labels = LabelsHandler(self.settings, self.proc, self.store, self.pub, _Metrics())  # type: ignore[arg-type]

    def feed(self, batch: list[InRecord]) -> None:
        handler = self.vitals if batch[0].topic == "vigil.vitals" else self.labels
        asyncio.run(handler.handle(batch))

    def outputs(self) -> tuple[list, list]:
        scores = sorted((s.record_id, round(s.risks["sepsis"], 12)) for s in
                        (SCORE_DECODER.decode(v) for t, _, v in self.pub.sent
                         if t == self.settings.topic_scores))
        alerts = sorted(a.event_id for a in (ALERT_DECODER.decode(v) for t, _, v in self.pub.sent
                                             if t == self.settings.topic_alerts))
        return scores, alerts


class _Gaps:
    """The broker's side of the gap filler over given records: every fetch is recorded."""

    def __init__(self, records: list[InRecord]) -> None:
        self.by_offset = {(r.partition, r.offset): r for r in records}
        self.asked: list = []

    async def log_start(self, partition: int) -> int:
        return 0

    async def fetch(self, partition: int, offsets: list[int],
                    timeout_s: float = 30.0) -> list[InRecord]:
        self.asked.append((partition, offsets))
        return [self.by_offset[(partition, o)] for o in offsets]


def _with_gaps(w: _Worker, topic: str) -> tuple[_Worker, list[InRecord], _Gaps, list]:
    """``w`` whose ``topic`` handler fetches partition 0's records from a broker stand-in;
    the partition's records, the stand-in, and the offsets registered with faust."""
    vitals, labels = _inputs()
    mine = [r for r in (vitals if topic == "vitals" else labels) if r.partition == 0]
    gaps, acked = _Gaps(mine), []

    async def ack(p, offsets):  # type: ignore[no-untyped-def]
        acked.append((p, offsets))

    handler = w.vitals if topic == "vitals" else w.labels
    handler.gaps, handler.ack_filled = gaps, ack  # type: ignore[assignment]
    return w, mine, gaps, acked


def _due_labels(labels: list[InRecord], upto_ms: int) -> list[InRecord]:
    return [r for r in labels if json.loads(r.value)["known_time"] < _iso(upto_ms)]


def _run(features, windows, vitals, labels, cuts, *, labels_first: bool):  # type: ignore[no-untyped-def]
    """Vitals in batches ending at ``cuts``; labels all queued up front, or each just
    before the first batch that reaches its hour."""
    w = _Worker(features, windows)
    if labels_first:
        w.feed(labels)
    fed = 0
    for a, b in zip([0, *cuts], [*cuts, len(vitals)]):
        if a == b:
            continue
        if not labels_first:
            newest = max(r.timestamp_ms for r in vitals[a:b])
            due = _due_labels(labels, newest - newest % HOUR)[fed:]
            if due:
                w.feed(due)
                fed += len(due)
        w.feed(vitals[a:b])
    return w


def test_scores_and_alerts_do_not_depend_on_batches_or_label_arrival(features, windows) -> None:
    vitals, labels = _inputs()
    one_by_one = _run(features, windows, vitals, labels, list(range(1, len(vitals))),
                      labels_first=True)
    reference = one_by_one.outputs()
    assert len(reference[0]) == len(vitals) and reference[1], "a run scores and alerts"
    rng = random.Random(7)
    variants = {
        "one batch": ([], True),
        "batches of 5": (list(range(5, len(vitals), 5)), True),
        "random batches": (sorted(rng.sample(range(1, len(vitals)), 9)), True),
        "labels just in time, random batches": (sorted(rng.sample(range(1, len(vitals)), 6)),
                                                False),
    }
    for name, (cuts, first) in variants.items():
        assert _run(features, windows, vitals, labels, cuts, labels_first=first).outputs() \
            == reference, name
    # what is left queued is only what no later record made due
    for p in set(PATIENTS.values()):
        left = decode_queue(one_by_one.store.get(queue_key(p))).items
        assert left and all(q.known_ms >= T0 + (HOURS - 1) * HOUR for q in left)


def test_learning_changes_the_scores(features, windows) -> None:
    """The comparison above could not fail if nothing were learned."""
    vitals, labels = _inputs()
    learned = _run(features, windows, vitals, labels, [], labels_first=True).outputs()[0]
    w = _Worker(features, windows)
    w.feed(vitals)
    assert learned != w.outputs()[0]


def test_a_label_learns_before_the_first_record_of_a_later_hour(features, windows) -> None:
    q = LabelQueue()
    q.add(0, T0 + 2 * HOUR + 5, b"x")
    q.add(1, T0 + 3 * HOUR, b"y")
    assert q.due_before(T0 + 2 * HOUR + 10) == 0  # same hour: not yet
    assert q.due_before(T0 + 3 * HOUR) == 1  # the next hour: the first one
    assert q.due_before(T0 + 4 * HOUR) == 2
    assert q.due_by(T0 + 2 * HOUR + 5) == 1


def test_a_label_known_in_the_future_is_refused_not_queued(features, windows) -> None:
    w = _Worker(features, windows)
    w.settings = VigilSettings()
    w.labels.settings = w.settings
    far = json.dumps({"patient": "pt-a", "kind": "sepsis", "event_time": _iso(T0),
                      "label": 1, "known_time": "2999-01-01T00:00:00Z"}).encode()
    w.feed([InRecord("vigil.labels", 0, 0, b"pt-a", far, T0)])
    q = decode_queue(w.store.get(queue_key(0)))
    assert q.items == [] and q.next_offset == 1  # handled (dead-lettered), not queued
    (topic, _, _), = w.pub.sent
    assert topic == w.settings.topic_dlq


def test_a_quiet_partition_learns_its_labels_by_the_wall_clock(features, windows) -> None:
    vitals, labels = _inputs()
    w = _Worker(features, windows)
    w.feed(vitals)
    w.feed(labels)  # all after the vitals: nothing makes them due in event time
    assert len(decode_queue(w.store.get(queue_key(0))).items) > 0
    w.settings = VigilSettings(label_idle_s=1)
    ends = {0: 0}  # the vitals partitions' ends, as the worker's consumer last saw them

    def end(p: int) -> int:
        return ends.get(p, 0)

    clocks = LabelClocks(vitals_highwater=end)
    sweeper = Sweeper(w.settings, w.proc, w.store, w.pub, _Metrics(), clocks)  # type: ignore[arg-type]
    ends[0] = 10**6  # records wait in partition 0: not quiet, nothing learned by the clock
    asyncio.run(sweeper.sweep({0, 1}, T0 + 100 * HOUR))
    assert len(decode_queue(w.store.get(queue_key(0))).items) > 0
    ends[0] = decode_progress(w.store.get(progress_key(0)))  # caught up ...
    clocks.vitals_at[0] -= 5  # ... and quiet for 5 s
    asyncio.run(sweeper.sweep({0, 1}, T0 + 100 * HOUR))
    assert decode_queue(w.store.get(queue_key(0))).items == []
    assert any(k == b"#online/0" for _, k, _ in w.pub.changelog)  # the learned model stored


def test_labels_read_again_after_a_crash_are_not_queued_twice(features, windows) -> None:
    """faust re-delivers what was read but not committed (a kill -9, a partition move): the
    queue remembers the next labels offset it expects."""
    _, labels = _inputs()
    w = _Worker(features, windows)
    mine = [r for r in labels if r.partition == 0]
    w.feed(mine[:10])
    w.feed(mine[:15])  # the first ten again, then five new ones
    q = decode_queue(w.store.get(queue_key(0)))
    assert [x.seq for x in q.items] == list(range(15)) and q.next_offset == 15
    assert [x.raw for x in q.items] == [r.value for r in mine[:15]]


def test_labels_faust_skipped_are_fetched_from_the_broker(features, windows) -> None:
    """faust can ack labels it never delivered (flow control during a rebalance): a batch
    that starts beyond the queue's next offset is completed from the broker first."""
    w, mine, gaps, acked = _with_gaps(_Worker(features, windows), "labels")
    w.feed(mine[:2])
    w.feed(mine[6:9])  # offsets 2..5 never delivered
    q = decode_queue(w.store.get(queue_key(0)))
    assert gaps.asked == [(0, [2, 3, 4, 5])] and acked == [(0, [2, 3, 4, 5])]
    assert [x.raw for x in q.items] == [r.value for r in mine[:9]]


def test_labels_faust_skipped_before_anything_was_queued_are_fetched_too(features,
                                                                          windows) -> None:
    """A partition's first labels can be skipped by faust before its queue exists (seen in
    a group run: a partition's first five labels never learned, its online model differed):
    with no queue, the partition expects its log's first offset."""
    w, mine, gaps, acked = _with_gaps(_Worker(features, windows), "labels")
    w.feed(mine[5:8])  # offsets 0..4 never delivered, and nothing queued yet
    q = decode_queue(w.store.get(queue_key(0)))
    assert gaps.asked == [(0, [0, 1, 2, 3, 4])] and acked == [(0, [0, 1, 2, 3, 4])]
    assert [x.raw for x in q.items] == [r.value for r in mine[:8]] and q.next_offset == 8


def test_vitals_faust_skipped_before_any_progress_was_stored_are_fetched(features,
                                                                         windows) -> None:
    w, mine, gaps, _ = _with_gaps(_Worker(features, windows), "vitals")
    whole = _Worker(features, windows)
    whole.feed(mine[:6])
    w.feed(mine[3:6])  # the partition's first three records never delivered
    assert gaps.asked == [(0, [0, 1, 2])]
    assert w.outputs() == whole.outputs() and len(w.outputs()[0]) == 6


def test_a_vitals_batch_pulls_the_labels_it_needs_instead_of_waiting(features, windows) -> None:
    """Labels not yet delivered by faust (paused in a rebalance, or just behind) are
    fetched up to the labels partition's end and queued before the batch: no wait, and the
    same outputs as when every label had arrived first. faust's own copies, delivered
    later, change nothing."""
    vitals, labels = _inputs()
    reference = _run(features, windows, vitals, labels, [], labels_first=True).outputs()

    by_offset = {(r.partition, r.offset): r for r in labels}
    ends = {p: 1 + max(o for q, o in by_offset if q == p) for p in PATIENTS.values()}


    async def the_ends(positions):  # type: ignore[no-untyped-def]
        return {p: ends[p] for p in positions}

    w = _Worker(features, windows)
    w.settings = w.vitals.settings = w.labels.settings = VigilSettings(
        max_clock_skew_s=10**9, label_idle_s=0.5)  # waiting it out would miss the labels
    clocks = LabelClocks(ends=the_ends)
    w.vitals.clocks = w.labels.clocks = clocks
    w.labels.gaps = _Gaps(labels)  # type: ignore[assignment]
    w.vitals.pull_labels = w.labels.pull

    async def go() -> None:
        times = await w.vitals.wait_for_labels(vitals)
        await w.vitals.handle(vitals, times)
        await w.labels.take(labels)  # faust's copies, after the fact

    asyncio.run(go())
    assert w.outputs() == reference
    for p in PATIENTS.values():
        assert decode_queue(w.store.get(queue_key(p))).next_offset == ends[p]
