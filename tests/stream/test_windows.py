"""Event-time windows: ordering, lateness, duplicates, gaps and pruning."""

from __future__ import annotations

import pytest

from vigil.stream.windows import KEEP_LAST, PRUNE_EVERY, WindowSpec, admit
from vigil.wire.state import PatientState

from .helpers import HOUR, T0, acc

SPEC = WindowSpec((HOUR, 6 * HOUR), 2 * HOUR)


def test_in_order_events_append_and_move_the_watermark() -> None:
    s = PatientState()
    for h in range(3):
        assert admit(s, acc(T0 + h * HOUR, HR=80 + h), SPEC) is None
    assert s.series["HR"].t == [T0, T0 + HOUR, T0 + 2 * HOUR]
    assert s.series["HR"].v == [80, 81, 82]
    assert s.watermark_ms == T0 + 2 * HOUR and s.records == 3


def test_out_of_order_within_the_bound_is_inserted_in_time_order() -> None:
    s = PatientState()
    admit(s, acc(T0 + 3 * HOUR, HR=90), SPEC)
    assert admit(s, acc(T0 + 2 * HOUR, HR=85), SPEC) is None  # 1 h late: allowed
    assert admit(s, acc(T0 + 1 * HOUR, HR=83), SPEC) is None  # exactly 2 h late: allowed
    assert s.series["HR"].t == [T0 + HOUR, T0 + 2 * HOUR, T0 + 3 * HOUR]
    assert s.series["HR"].v == [83, 85, 90]
    assert s.watermark_ms == T0 + 3 * HOUR  # a late event never moves the watermark back


def test_late_beyond_the_bound_is_refused_and_changes_nothing() -> None:
    s = PatientState()
    admit(s, acc(T0 + 3 * HOUR, HR=90), SPEC)
    before = (list(s.series["HR"].t), s.records)
    r = admit(s, acc(T0 + HOUR - 1, HR=70), SPEC)
    assert r is not None and r.reason == "late"
    assert (s.series["HR"].t, s.records) == before


def test_lateness_is_per_patient() -> None:
    a, b = PatientState(), PatientState()
    admit(a, acc(T0 + 10 * HOUR, patient="a", HR=90), SPEC)
    # patient b's feed is 10 h behind patient a's: none of b's events is late
    assert admit(b, acc(T0, patient="b", HR=70), SPEC) is None


def test_duplicate_record_id_is_refused() -> None:
    s = PatientState()
    assert admit(s, acc(T0, event_id="m1", HR=80), SPEC) is None
    r = admit(s, acc(T0, event_id="m1", HR=80), SPEC)
    assert r is not None and r.reason == "duplicate"
    assert s.series["HR"].v == [80] and s.records == 1
    # same time, other message: not a duplicate (two devices charting at once)
    assert admit(s, acc(T0, event_id="m2", HR=81), SPEC) is None


def test_duplicate_of_content_without_ids_is_refused() -> None:
    s = PatientState()
    admit(s, acc(T0, HR=80, RR=14), SPEC)
    r = admit(s, acc(T0, HR=80, RR=14), SPEC)
    assert r is not None and r.reason == "duplicate"


def test_equal_timestamps_keep_arrival_order() -> None:
    s = PatientState()
    admit(s, acc(T0 + HOUR, event_id="x", HR=100), SPEC)
    admit(s, acc(T0, event_id="a", HR=1), SPEC)
    admit(s, acc(T0, event_id="b", HR=2), SPEC)
    assert s.series["HR"].v == [1, 2, 100]


def test_pruning_forgets_what_no_window_sees_but_keeps_last_values() -> None:
    s = PatientState()
    admit(s, acc(T0, event_id="lab", Lactate=4.0), SPEC)
    admit(s, acc(T0 + HOUR, event_id="lab2", Lactate=3.0), SPEC)
    for h in range(2, 30):
        admit(s, acc(T0 + h * HOUR, event_id=f"v{h}", HR=80), SPEC)
    horizon_start = s.watermark_ms - SPEC.horizon_ms
    slack = SPEC.horizon_ms // PRUNE_EVERY  # pruning runs every quarter of the horizon
    assert min(s.series["HR"].t) >= horizon_start - slack
    assert 9 <= len(s.series["HR"].t) <= 11  # (6 h + 2 h lateness) / 1 h + edge, + slack
    assert s.series["Lactate"].v == [4.0, 3.0][-KEEP_LAST:]  # sparse lab kept for "last"
    assert all(t >= s.watermark_ms - SPEC.allowed_lateness_ms - slack
               for t in s.recent_ids.values())


def test_demographics_and_admission_come_from_patient_info_or_first_event() -> None:
    from datetime import UTC, datetime

    from vigil.wire.records import PatientInfo

    s = PatientState()
    admit(s, acc(T0 + 5 * HOUR, HR=80), SPEC)
    assert s.icu_admit_ms == T0 + 5 * HOUR  # no ADT: the first event opens the stay
    info = PatientInfo(age_years=71, sex="female",
                       icu_admit_time=datetime.fromtimestamp(T0 / 1000, tz=UTC))
    admit(s, acc(T0 + 6 * HOUR, info=info, HR=81), SPEC)
    assert (s.age_years, s.sex, s.icu_admit_ms) == (71, "female", T0)


@pytest.mark.parametrize("lengths,lateness", [((), 0), ((0,), 0), ((2, 1), 0), ((1, 1), 0),
                                              ((1,), -1)])
def test_bad_window_definitions_raise(lengths, lateness) -> None:
    with pytest.raises(ValueError):
        WindowSpec(lengths, lateness)
