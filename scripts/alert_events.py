"""The alert events and risks a worker publishes for the shipped sample, without a broker.

A refactoring must not change what nurses are sent. This drives the worker's own processor
(built from settings exactly as ``vigil worker`` builds it) over the shipped sample in the
order the replay produces it: vitals in micro-batches per partition, each delayed label
applied when its known time is reached. It prints one JSON line per alert event (without
``published_at``, the only wall-clock field) and per scored row's risks, then a digest:

    .venv/bin/python scripts/alert_events.py > /tmp/after.jsonl
    diff <(.venv/bin/python scripts/alert_events.py --at COMMIT) /tmp/after.jsonl

Run it before and after a change and compare the last line (``--digest-only``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

from kafka.partitioner.default import murmur2

from vigil.sample import sample_path
from vigil.settings import VigilSettings
from vigil.stream.processor import InRecord, build_processor
from vigil.stream.replay.sources import load_stays
from vigil.stream.replay.timeline import Timeline
from vigil.wire.records import LABEL_DECODER, encode
from vigil.wire.state import decode_state, encode_state

NOW_MS = 1_780_000_000_000  # a fixed "now": the timeline ends here, so runs are comparable
BATCH = 256


def _partition(key: bytes, n: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % n  # Kafka's default partitioner


def run(settings: VigilSettings) -> list[str]:
    processor = build_processor(settings)
    stays = load_stays(sample_path(), None)
    timeline = Timeline(stays, settings.pseudonym_key.get_secret_value(), now_ms=NOW_MS)
    table: dict[bytes, bytes] = {}
    offsets = [0] * settings.partitions
    pending: list[InRecord] = []
    out: list[str] = []

    def get_state(patient: str):  # type: ignore[no-untyped-def]
        raw = table.get(patient.encode())
        return None if raw is None else decode_state(raw)

    def flush() -> None:
        if not pending:
            return
        res = processor.process(list(pending), get_state, NOW_MS, table.get)
        pending.clear()
        for _, a in res.alerts:
            d = json.loads(encode(a))
            d.pop("published_at", None)
            out.append(json.dumps({"alert": d}, sort_keys=True))
        for _, s in res.scores:
            out.append(json.dumps({"score": s.record_id, "risks": s.risks,
                                   "scorers": s.scorers}, sort_keys=True))
        for patient, (_, state) in res.states.items():
            table[patient.encode()] = encode_state(state)

    for rec in timeline:
        key = rec.key.encode()
        p = _partition(key, settings.partitions)
        if rec.topic == "vitals":
            pending.append(InRecord(settings.topic_vitals, p, offsets[p], key, rec.value,
                                    rec.at_ms))
            offsets[p] += 1
            if len(pending) >= BATCH:
                flush()
            continue
        flush()  # a label is applied after the vitals that came before it
        label = LABEL_DECODER.decode(rec.value)
        learn_label(processor, label, get_state(label.patient), p, table)
    flush()
    return out


def learn_label(processor, label, state, partition, table) -> None:  # type: ignore[no-untyped-def]
    processor.learn(label, state, partition, table.get)
    for _, key, raw in processor.take_state():
        table[key] = raw


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
