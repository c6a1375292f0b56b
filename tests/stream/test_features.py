"""The one feature function: causal, half-open windows, honest missingness."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vigil.stream.features import FeatureSpec
from vigil.stream.windows import WindowSpec, admit
from vigil.wire.state import PatientState

from .helpers import HOUR, T0, acc

SPEC = WindowSpec((HOUR, 6 * HOUR), 2 * HOUR)
FS = FeatureSpec(SPEC)


def state_with(points: list[tuple[int, dict]]) -> PatientState:
    s = PatientState()
    for i, (t, obs) in enumerate(points):
        assert admit(s, acc(t, event_id=str(i), **obs), SPEC) is None
    return s


def f(s: PatientState, at: int) -> dict[str, float]:
    return dict(zip(FS.names, FS.featurize(s, at), strict=True))


def test_names_are_unique_and_match_the_vector() -> None:
    assert len(FS.names) == len(set(FS.names)) == len(FS.featurize(PatientState(), T0))


def test_an_empty_state_is_all_missing_not_zero() -> None:
    x = f(PatientState(), T0)
    assert math.isnan(x["HR_last"]) and math.isnan(x["HR_hours_since"])
    assert x["HR_count_6h"] == 0.0  # counts are the one thing known to be zero
    assert math.isnan(x["Lactate_last"]) and math.isnan(x["age_years"])


def test_window_statistics_match_numpy() -> None:
    hrs = [80, 95, 70, 110, 100, 90, 85]
    s = state_with([(T0 + h * HOUR, {"HR": v}) for h, v in enumerate(hrs)])
    at = T0 + 6 * HOUR
    x = f(s, at)
    last6 = np.array(hrs[1:])  # (at - 6 h, at]: hour 0 is exactly 6 h old and excluded
    assert x["HR_last"] == 85 and x["HR_hours_since"] == 0
    assert x["HR_mean_6h"] == pytest.approx(last6.mean())
    assert (x["HR_min_6h"], x["HR_max_6h"], x["HR_count_6h"]) == (70, 110, 6)
    assert x["HR_std_6h"] == pytest.approx(last6.std(ddof=1))
    hours = np.arange(1, 7) - 6.0
    assert x["HR_slope_6h"] == pytest.approx(np.polyfit(hours, last6, 1)[0])
    assert (x["HR_mean_1h"], x["HR_count_1h"]) == (85, 1)


def test_features_are_causal_even_when_later_data_is_in_the_state() -> None:
    s = state_with([(T0, {"HR": 80}), (T0 + 2 * HOUR, {"HR": 140})])
    early = f(s, T0 + HOUR)
    assert early["HR_last"] == 80 and early["HR_hours_since"] == 1
    assert early["HR_max_6h"] == 80


def test_a_gap_empties_short_windows_and_grows_hours_since() -> None:
    s = state_with([(T0, {"HR": 80, "SBP": 120})])
    x = f(s, T0 + 3 * HOUR)
    assert x["HR_hours_since"] == 3
    assert math.isnan(x["HR_mean_1h"]) and x["HR_count_1h"] == 0
    assert x["HR_mean_6h"] == 80 and x["HR_count_6h"] == 1
    assert math.isnan(x["HR_std_6h"]) and math.isnan(x["HR_slope_6h"])  # one point: unknown


def test_out_of_order_arrival_gives_the_same_features_as_in_order() -> None:
    pts = [(T0 + h * HOUR, {"HR": 70 + 5 * h, "RR": 12 + h}) for h in range(6)]
    ordered = state_with(pts)
    shuffled = state_with([pts[i] for i in (0, 2, 1, 3, 5, 4)])
    at = T0 + 5 * HOUR
    assert FS.featurize(ordered, at) == pytest.approx(FS.featurize(shuffled, at), nan_ok=True)


def test_labs_keep_last_value_and_change() -> None:
    s = state_with([(T0, {"Lactate": 1.5}), (T0 + 20 * HOUR, {"Lactate": 4.0})])
    x = f(s, T0 + 21 * HOUR)
    assert (x["Lactate_last"], x["Lactate_hours_since"], x["Lactate_delta"]) == (4.0, 1.0, 2.5)


def test_shock_index_and_demographics() -> None:
    s = state_with([(T0, {"HR": 120, "SBP": 100})])
    s.age_years, s.sex, s.icu_admit_ms = 64.0, "male", T0 - 10 * HOUR
    x = f(s, T0)
    assert x["shock_index"] == pytest.approx(1.2)
    assert (x["age_years"], x["sex_male"], x["hours_since_icu_admission"]) == (64.0, 1.0, 10.0)
    s2 = state_with([(T0, {"HR": 120, "SBP": 0})])
    assert math.isnan(f(s2, T0)["shock_index"])  # undefined, not infinite


def test_window_names_follow_the_definition() -> None:
    names = FeatureSpec(WindowSpec((30 * 60_000, 4 * HOUR), 0)).names
    assert "HR_mean_30m" in names and "HR_slope_4h" in names and "HR_mean_6h" not in names
