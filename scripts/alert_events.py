"""The alert events and risks a worker publishes for the shipped sample, without a broker.

A refactoring must not change what nurses are sent. This drives the worker's own processor
(built from settings exactly as ``vigil worker`` builds it) over the shipped sample in the
order the replay produces it, through the worker's own handlers: vitals in micro-batches,
labels queued as they arrive and learned in event time (vigil.stream.label_queue). It prints one JSON line per alert event (without
``published_at``, the only wall-clock field) and per scored row's risks, then a digest:

    .venv/bin/python scripts/alert_events.py > /tmp/after.jsonl
    diff <(.venv/bin/python scripts/alert_events.py --at COMMIT) /tmp/after.jsonl

Run it before and after a change and compare the last line (``--digest-only``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys

from kafka.partitioner.default import murmur2

from vigil.sample import sample_path
from vigil.settings import VigilSettings
from vigil.stream.handlers import LabelsHandler, VitalsHandler
from vigil.stream.processor import InRecord, build_processor
from vigil.stream.replay.sources import load_stays
from vigil.stream.replay.timeline import Timeline
from vigil.stream.tables import PatientStore
from vigil.wire.records import SCORE_DECODER

NOW_MS = 1_780_000_000_000  # a fixed "now": the timeline ends here, so runs are comparable
BATCH = 256


def _partition(key: bytes, n: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % n  # Kafka's default partitioner


class _Table:
    """The patients table in memory (what faust's table holds; no changelog to recover)."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)


class _Outputs:
    """What the worker would publish, kept in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []

    async def publish(self, records) -> None:  # type: ignore[no-untyped-def]
        self.sent.extend(records)

    async def publish_changelog(self, topic, changes) -> None:  # type: ignore[no-untyped-def]
        pass


class _NoMetrics:
    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return self

    def __call__(self, *a, **k):  # type: ignore[no-untyped-def]
        return self


def run(settings: VigilSettings) -> list[str]:
    """The worker's own handlers (labels queued, learned in event time by the vitals
    handler) over the sample in replay order, vitals in batches of ``BATCH``."""
    processor = build_processor(settings)
    stays = load_stays(sample_path(), None)
    timeline = Timeline(stays, settings.pseudonym_key.get_secret_value(), now_ms=NOW_MS)
    outputs = _Outputs()
    store = PatientStore(_Table(), outputs, "changelog")  # type: ignore[arg-type]
    metrics = _NoMetrics()
    vitals = VitalsHandler(settings, processor, store, outputs, None, metrics, None)  # type: ignore[arg-type]
    labels = LabelsHandler(settings, processor, store, outputs, metrics)  # type: ignore[arg-type]
    offsets = {"vitals": [0] * settings.partitions, "labels": [0] * settings.partitions}
    pending: list[InRecord] = []

    def flush() -> None:
        if pending:
            asyncio.run(vitals.handle(list(pending)))
            pending.clear()

    for rec in timeline:
        key = rec.key.encode()
        p = _partition(key, settings.partitions)
        topic = settings.topic_vitals if rec.topic == "vitals" else settings.topic_labels
        record = InRecord(topic, p, offsets[rec.topic][p], key, rec.value, rec.at_ms)
        offsets[rec.topic][p] += 1
        if rec.topic == "vitals":
            pending.append(record)
            if len(pending) >= BATCH:
                flush()
        else:
            asyncio.run(labels.handle([record]))
    flush()
    out: list[str] = []
    for topic, _, value in outputs.sent:
        if topic == settings.topic_alerts:
            d = json.loads(value)
            d.pop("published_at", None)
            out.append(json.dumps({"alert": d}, sort_keys=True))
        elif topic == settings.topic_scores:
            s = SCORE_DECODER.decode(value)
            out.append(json.dumps({"score": s.record_id, "risks": s.risks,
                                   "scorers": s.scorers}, sort_keys=True))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--digest-only", action="store_true")
    args = ap.parse_args()
    lines = run(VigilSettings())
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    if not args.digest_only:
        sys.stdout.write("\n".join(lines) + "\n")
    n_alerts = sum(1 for line in lines if line.startswith('{"alert"'))
    print(json.dumps({"alert_events": n_alerts, "scored_rows": len(lines) - n_alerts,
                      "sha256": digest}))


if __name__ == "__main__":
    main()
