"""Event-time window definitions and the per-patient window operations.

Windows are defined apart from the engine (as Quix Streams does): a :class:`WindowSpec` says
how long each window is and how late an event may be; :func:`admit` applies one validated
record to a :class:`~vigil.wire.state.PatientState`. Each patient keeps its own watermark
(the latest event time seen), because bedside feeds are independent: one monitor's clock or
backlog must not make another patient's events "late".

Windows are half-open, ``(t - length, t]``, so a PhysioNet hourly row at hour h and a 1-h
window see exactly that hour.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from vigil.stream.validation import Accepted
from vigil.wire.durations import HOUR_MS
from vigil.wire.records import Rejection
from vigil.wire.state import PatientState, Series

__all__ = ["KEEP_LAST", "PRUNE_EVERY", "WindowSpec", "admit"]

KEEP_LAST = 2  # points kept per code beyond the horizon: last value and its predecessor
PRUNE_EVERY = 4  # prune when the watermark has advanced by horizon / PRUNE_EVERY


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """Window lengths and the lateness bound, both in event time.

    >>> WindowSpec((3_600_000, 21_600_000), 7_200_000).names
    ('1h', '6h')
    """

    lengths_ms: tuple[int, ...]
    allowed_lateness_ms: int
    label_delay_ms: int = 0  # how long after an hour its label may come (online learning)

    def __post_init__(self) -> None:
        if not self.lengths_ms or any(w <= 0 for w in self.lengths_ms):
            raise ValueError("window lengths must be positive")
        if list(self.lengths_ms) != sorted(set(self.lengths_ms)):
            raise ValueError("window lengths must be strictly increasing")
        if self.allowed_lateness_ms < 0 or self.label_delay_ms < 0:
            raise ValueError("allowed lateness and label delay must be >= 0")

    @classmethod
    def from_seconds(cls, lengths_s: tuple[int, ...], lateness_s: int,
                     label_delay_s: int = 0) -> WindowSpec:
        return cls(tuple(int(s) * 1000 for s in lengths_s), int(lateness_s) * 1000,
                   int(label_delay_s) * 1000)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(_name(ms) for ms in self.lengths_ms)

    @property
    def horizon_ms(self) -> int:
        """Event time a patient's state keeps: the longest window, back from the oldest time
        that can still be featurised (a late event, or an hour whose label arrives now)."""
        return self.lengths_ms[-1] + max(self.allowed_lateness_ms, self.label_delay_ms)


def _name(ms: int) -> str:
    if ms % HOUR_MS == 0:
        return f"{ms // HOUR_MS}h"
    if ms % 60_000 == 0:
        return f"{ms // 60_000}m"
    return f"{ms // 1000}s"


def admit(state: PatientState, acc: Accepted, spec: WindowSpec) -> Rejection | None:
    """Apply one validated record to the patient's state, or say why it cannot be.

    Out-of-order events within the lateness bound are inserted in time order; events older
    than ``watermark - allowed_lateness`` are refused as late (their windows have been
    scored and pruned), and a record id already seen inside the bound is a duplicate.
    """
    t = acc.event_ms
    if state.watermark_ms >= 0 and t < state.watermark_ms - spec.allowed_lateness_ms:
        behind_s = (state.watermark_ms - t) / 1000
        return Rejection("late", f"event is {behind_s:.0f} s behind the patient's latest event "
                         f"(allowed lateness {spec.allowed_lateness_ms / 1000:.0f} s)")
    if acc.record_id in state.recent_ids:
        return Rejection("duplicate", f"record id {acc.record_id} was already processed")

    state.recent_ids[acc.record_id] = t
    for code, value in acc.observations:
        s = state.series.get(code)
        if s is None:
            state.series[code] = Series([t], [value])
        elif not s.t or t >= s.t[-1]:
            s.t.append(t)
            s.v.append(value)
        else:  # out of order: keep the series sorted; equal times keep arrival order
            i = bisect_right(s.t, t)
            s.t.insert(i, t)
            s.v.insert(i, value)

    info = acc.record.patient_info
    if info is not None:
        if info.age_years is not None:
            state.age_years = info.age_years
        if info.sex is not None:
            state.sex = info.sex
        if info.icu_admit_time is not None:
            state.icu_admit_ms = int(info.icu_admit_time.timestamp() * 1000)
        if info.hospital_admit_time is not None:
            state.hospital_admit_ms = int(info.hospital_admit_time.timestamp() * 1000)
    if state.icu_admit_ms is None:  # no ADT information: the first event opens the stay
        state.icu_admit_ms = t
    if acc.record.unit:
        state.unit = acc.record.unit
    if acc.record.bed:
        state.bed = acc.record.bed
    state.records += 1

    if t > state.watermark_ms:
        state.watermark_ms = t
        if t - state.pruned_ms >= spec.horizon_ms // PRUNE_EVERY:
            _prune(state, spec)
    return None


def _prune(state: PatientState, spec: WindowSpec) -> None:
    """Forget what no window can see any more, keeping the last values of sparse codes.

    Run when the watermark has moved by a quarter of the horizon, not on every event: the
    features never read points outside their windows, so keeping a few extra points a
    little longer changes nothing but the state's size (at most a quarter larger).
    """
    state.pruned_ms = state.watermark_ms
    oldest = state.watermark_ms - spec.horizon_ms
    for s in state.series.values():
        if s.t[0] >= oldest:
            continue
        cut = min(bisect_right(s.t, oldest - 1), len(s.t) - KEEP_LAST)
        if cut > 0:
            del s.t[:cut]
            del s.v[:cut]
    id_floor = state.watermark_ms - spec.allowed_lateness_ms
    if state.recent_ids and min(state.recent_ids.values()) < id_floor:
        state.recent_ids = {k: v for k, v in state.recent_ids.items() if v >= id_floor}


