"""The production processing path without Kafka: a timeline straight through the processor.

Evaluation and the end-to-end tests use it to know what the stream must produce: the same
validation, windows, features, scorers and alert lifecycle, fed the same records in the
same per-patient order, in batches like the agent's.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from vigil.progress import ProgressBar
from vigil.settings import VigilSettings
from vigil.stream.features import FeatureSpec
from vigil.stream.processor import BatchResult, InRecord, Processor
from vigil.stream.replay.stays import Stay
from vigil.stream.replay.timeline import Timeline
from vigil.stream.validation import Accepted, check
from vigil.stream.windows import WindowSpec
from vigil.stream.windows import admit as admit_record
from vigil.wire.durations import HOUR_MS
from vigil.wire.state import PatientState

__all__ = ["FeatureTable", "build_feature_table", "partition_of", "run_offline"]



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


# --------------------------------------------------------------------------------------------
# Feature tables for training and evaluation: the same check -> admit -> featurize path as the
# stream, without Kafka and without JSON (floats and times survive the JSON round trip
# exactly, so the values are identical).


@dataclass
class FeatureTable:
    """One row per scored hour (PhysioNet 2019) or charted time (2012), all patients."""

    X: np.ndarray  # (rows, features) float32
    names: tuple[str, ...]
    patient: np.ndarray  # (rows,) int32 index into the per-patient arrays
    hours: np.ndarray  # (rows,) float32: hours since ICU admission
    label: np.ndarray  # (rows,) int8: SepsisLabel (2019) or in-hospital death (2012)
    has_record: np.ndarray  # (rows,) bool: a vitals record arrived at this row (stream scores it)
    source_ids: list[str]
    datasets: list[str]
    units: list[str]
    ages: np.ndarray  # (patients,) float32, NaN unknown
    sexes: list[str | None]
    refused: int = 0  # observations refused by validation (implausible, unit …)

    @property
    def n_patients(self) -> int:
        return len(self.source_ids)

    def rows_of(self, patients: np.ndarray) -> np.ndarray:
        return np.isin(self.patient, patients)


def _stay_rows(timeline: Timeline, i: int, spec: FeatureSpec, windows: WindowSpec,
               max_skew_ms: int) -> tuple[list[list[float]], list[float], list[int], list[bool], int]:
    stay = timeline.stays[i]
    admit = timeline.admit_ms(i)
    records = timeline.vitals_of(i)
    state = PatientState()
    refused = 0
    if stay.dataset == "physionet2019" and stay.labels:
        grid = [(lb.hours, lb.label) for lb in stay.labels]  # every ICU hour is scored
    else:
        death = max((lb.label for lb in stay.labels), default=0)
        grid = [((t - admit) / HOUR_MS, death) for t, _ in records]
    rows, hours, labels, has = [], [], [], []
    k = 0
    now_ms = timeline.anchor_ms + 10 * 365 * 24 * HOUR_MS  # nothing is "from the future"
    for h, lab in grid:
        t = admit + int(round(h * HOUR_MS))
        arrived = False
        while k < len(records) and records[k][0] <= t:
            out = check(records[k][1], now_ms, max_skew_ms)
            if isinstance(out, Accepted):
                refused += len(out.rejections)
                if admit_record(state, out, windows) is None:
                    arrived = arrived or records[k][0] == t
            else:
                refused += len(out.rejections)
            k += 1
        rows.append(spec.featurize(state, t))
        hours.append(h)
        labels.append(int(lab))
        has.append(arrived)
    return rows, hours, labels, has, refused


def _build_chunk(args: tuple) -> tuple:
    stays, key, windows, max_skew_ms = args
    spec = FeatureSpec(windows)
    timeline = Timeline(stays, key, now_ms=FIXED_NOW_MS, stagger_hours=0)
    out = []
    for i in range(len(stays)):
        rows, hours, labels, has, refused = _stay_rows(timeline, i, spec, windows, max_skew_ms)
        out.append((np.asarray(rows, dtype=np.float32).reshape(len(rows), len(spec.names)),
                    np.asarray(hours, np.float32), np.asarray(labels, np.int8),
                    np.asarray(has, bool), refused))
    return out


FIXED_NOW_MS = 1_800_000_000_000  # offline timelines are anchored here: reproducible rows


def build_feature_table(stays: list[Stay], settings: VigilSettings, *, workers: int = 2,
                        progress: bool = True, chunk: int = 200) -> FeatureTable:
    """Feature rows for every stay, through the stream's own validation, windows and features."""
    windows = WindowSpec.from_seconds(settings.window_lengths_s, settings.allowed_lateness_s,
                                      settings.label_delay_s)
    spec = FeatureSpec(windows)
    key = settings.pseudonym_key.get_secret_value()
    jobs = [(stays[i:i + chunk], key, windows, settings.max_clock_skew_s * 1000)
            for i in range(0, len(stays), chunk)]
    parts: list = []
    bar = ProgressBar("features", len(stays), enabled=progress)
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            for res in pool.imap(_build_chunk, jobs):
                parts += res
                bar.advance(len(res))
    else:
        for job in jobs:
            res = _build_chunk(job)
            parts += res
            bar.advance(len(res))
    bar.stop()
    n = len(spec.names)
    return FeatureTable(
        X=np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, n), np.float32),
        names=spec.names,
        patient=np.concatenate([np.full(len(p[1]), i, np.int32) for i, p in enumerate(parts)])
        if parts else np.zeros(0, np.int32),
        hours=np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.float32),
        label=np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.int8),
        has_record=np.concatenate([p[3] for p in parts]) if parts else np.zeros(0, bool),
        source_ids=[s.source_id for s in stays],
        datasets=[s.dataset for s in stays],
        units=[s.unit for s in stays],
        ages=np.asarray([np.nan if s.age_years is None else s.age_years for s in stays],
                        np.float32),
        sexes=[s.sex for s in stays],
        refused=sum(p[4] for p in parts),
    )
