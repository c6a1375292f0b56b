"""The production processing path without Kafka: a timeline straight through the processor.

Evaluation and the end-to-end tests use it to know what the stream must produce: the same
validation, windows, features, scorers and alert lifecycle, fed the same records in the
same per-patient order, in batches like the agent's.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from vigil.stream.processor import BatchResult, InRecord, Processor
from vigil.stream.state import PatientState

__all__ = ["run_offline", "partition_of"]


def partition_of(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode()) % partitions


def run_offline(processor: Processor, records: Iterable[tuple[str, bytes]], *, now_ms: int,
                topic: str = "vigil.vitals", batch_size: int = 256,
                partitions: int = 1) -> tuple[BatchResult, dict[str, PatientState]]:
    """Process ``(key, value)`` vitals records in order; return all outputs and final states."""
    states: dict[str, PatientState] = {}
    offsets = [0] * partitions
    total = BatchResult()
    batch: list[InRecord] = []

    def flush() -> None:
        res = processor.process(batch, states.get, now_ms)
        for patient, (_, state) in res.states.items():
            states[patient] = state
        total.scores += res.scores
        total.alerts += res.alerts
        total.dead += res.dead
        total.outcomes.update(res.outcomes)
        total.reasons.update(res.reasons)
        total.scored_rows += res.scored_rows
        batch.clear()

    for key, value in records:
        p = partition_of(key, partitions)
        batch.append(InRecord(topic, p, offsets[p], key.encode(), value, now_ms))
        offsets[p] += 1
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return total, states
