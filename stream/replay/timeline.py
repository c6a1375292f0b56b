"""Puts recorded stays on one event-time line, as a ward of concurrent patients.

Recorded data has no wall-clock dates (PhysioNet shifts them away), only hours since ICU
admission. The replay admits each patient at a staggered time (deterministic per patient,
within ``stagger_hours``) and anchors the whole line so its last event is *now*: every event
time is in the past or present, as from a real feed, and none is refused as "future".
Records carry stable ids, so replaying the same data twice is caught as duplicates.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from vigil.stream.pseudonym import pseudonymize
from vigil.stream.replay.stays import Stay
from vigil.wire.durations import HOUR_MS
from vigil.wire.records import LabelRecord, Observation, PatientInfo, VitalsRecord, encode

__all__ = ["TimedRecord", "Timeline"]



@dataclass(frozen=True, slots=True)
class TimedRecord:
    at_ms: int  # event time (vitals) or known time (labels), epoch ms
    topic: str  # "vitals" | "labels"
    key: str
    value: bytes


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _stagger_ms(stay: Stay, stagger_hours: float) -> int:
    if stagger_hours <= 0:
        return 0
    h = int.from_bytes(hashlib.blake2b(f"{stay.dataset}:{stay.source_id}".encode(),
                                       digest_size=8).digest(), "big")
    return int((h % 10_000) / 10_000 * stagger_hours * HOUR_MS)


class Timeline:
    """Event-time ordered vitals and label records for a set of stays."""

    def __init__(self, stays: list[Stay], pseudonym_key: str, *, now_ms: int,
                 stagger_hours: float = 24.0, beds_per_unit: int = 24) -> None:
        self.stays = stays
        self.key = pseudonym_key
        self.admit_offsets_ms = [_stagger_ms(s, stagger_hours) for s in stays]
        last = max((a + int(s.end_hours * HOUR_MS) for a, s in zip(self.admit_offsets_ms, stays)),
                   default=0)
        last_label = max((a + int(lb.known_hours * HOUR_MS)
                          for a, s in zip(self.admit_offsets_ms, stays) for lb in s.labels),
                         default=0)
        self.anchor_ms = now_ms - max(last, last_label)
        self.beds: list[str] = []
        used: dict[str, int] = {}
        for s in stays:  # beds in admission order per unit, reused cyclically
            used[s.unit] = used.get(s.unit, 0) + 1
            self.beds.append(f"{s.unit}-{(used[s.unit] - 1) % beds_per_unit + 1:02d}")

    def patient_key(self, stay: Stay) -> str:
        return pseudonymize(stay.source_id, self.key, stay.dataset)

    @property
    def n_vitals(self) -> int:
        return sum(len(s.measurements) for s in self.stays)

    @property
    def n_labels(self) -> int:
        return sum(len(s.labels) for s in self.stays)

    def admit_ms(self, i: int) -> int:
        """Event time (epoch ms) of stay ``i``'s ICU admission on this timeline."""
        return self.anchor_ms + self.admit_offsets_ms[i]

    def vitals_of(self, i: int) -> list[tuple[int, VitalsRecord]]:
        """Stay ``i``'s vitals records with their event times, as the stream receives them."""
        stay = self.stays[i]
        admit = self.admit_ms(i)
        patient = self.patient_key(stay)
        info = PatientInfo(
            age_years=stay.age_years,
            sex=stay.sex,
            icu_admit_time=_dt(admit),
            hospital_admit_time=(_dt(admit + int(stay.hospital_admit_hours * HOUR_MS))
                                 if stay.hospital_admit_hours is not None else None),
        )
        source = f"{stay.dataset}-replay"
        out: list[tuple[int, VitalsRecord]] = []
        for m in stay.measurements:
            t = admit + int(round(m.hours * HOUR_MS))
            out.append((t, VitalsRecord(
                patient=patient,
                event_time=_dt(t),
                observations=[Observation(c, float(v), u, meth) for c, v, u, meth in m.observations],
                event_id=f"{patient}:{int(round(m.hours * 60))}",
                unit=stay.unit,
                bed=self.beds[i],
                source=source,
                patient_info=info,
            )))
        return out

    def _records(self, i: int) -> Iterator[TimedRecord]:
        stay = self.stays[i]
        admit = self.admit_ms(i)
        patient = self.patient_key(stay)
        source = f"{stay.dataset}-replay"
        out = [TimedRecord(t, "vitals", patient, encode(rec)) for t, rec in self.vitals_of(i)]
        for lb in stay.labels:
            known = admit + int(round(lb.known_hours * HOUR_MS))
            rec = LabelRecord(patient=patient, kind=lb.kind,  # type: ignore[arg-type]
                              event_time=_dt(admit + int(round(lb.hours * HOUR_MS))),
                              label=lb.label, known_time=_dt(known), source=source)
            out.append(TimedRecord(known, "labels", patient, encode(rec)))
        out.sort(key=lambda r: (r.at_ms, r.topic != "vitals"))
        return iter(out)

    def __iter__(self) -> Iterator[TimedRecord]:
        """All records in event-time order across patients (vitals before labels on ties)."""
        return heapq.merge(*(self._records(i) for i in range(len(self.stays))),
                           key=lambda r: (r.at_ms, r.topic != "vitals"))
