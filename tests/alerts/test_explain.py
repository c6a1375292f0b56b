"""Explanations: top drivers in words a nurse reads at a glance."""

from __future__ import annotations

import numpy as np
import pytest

from vigil.alerts.explain import drivers, summary


def _row(features, **values: float):  # type: ignore[no-untyped-def]
    """A feature row with the given values (everything else missing), and its index."""
    x = np.full(len(features.names), np.nan)
    for name, v in values.items():
        x[features.names.index(name)] = v
    return x


def _contrib(features, **c: float):  # type: ignore[no-untyped-def]
    out = np.zeros(len(features.names))
    for name, v in c.items():
        out[features.names.index(name)] = v
    return out


def test_drivers_group_a_measurements_features_and_read_like_a_chart(features) -> None:
    x = _row(features, HR_last=128, HR_hours_since=0.2, HR_slope_6h=4.0, RR_last=28,
             RR_hours_since=0.2, SBP_last=92, DBP_last=55, SBP_hours_since=0.5,
             DBP_hours_since=0.5, Temp_last=37.0, Temp_hours_since=1.0)
    c = _contrib(features, HR_last=0.04, HR_slope_6h=0.05, HR_mean_6h=0.02,  # HR: 0.11
                 RR_last=0.15, SBP_last=0.06, DBP_last=0.04, Temp_last=0.0)
    d = drivers(features.names, x, c, top=3)
    assert [k.text for k in d] == ["RR 28 ↑", "HR 128 ↑, rising over 6 h", "BP 92/55 ↓"]
    assert [k.feature for k in d] == ["RR", "HR", "BP"]
    assert [k.direction for k in d] == ["up", "up", "down"]
    assert d[1].contribution == pytest.approx(0.11)
    assert summary("NEWS2 8", d) == "NEWS2 8: RR 28 ↑; HR 128 ↑, rising over 6 h; BP 92/55 ↓"
    assert summary("NEWS2 8", []) == "NEWS2 8"


def test_missing_data_is_said_as_missing_never_as_a_feature_name(features) -> None:
    x = _row(features, DBP_last=60, DBP_hours_since=18, SBP_last=100, SBP_hours_since=18,
             HR_last=80, HR_hours_since=15)
    c = _contrib(features, DBP_hours_since=0.2, HR_hours_since=0.1, Lactate_hours_since=0.05)
    texts = [k.text for k in drivers(features.names, x, c)]
    assert texts == ["no BP for 18 h (last 100)", "no HR for 15 h (last 80)",
                     "no lactate measured"]
    for t in texts:
        assert "_" not in t and "hours since" not in t


def test_normal_values_have_no_arrow_and_zero_contributions_are_not_reasons(features) -> None:
    x = _row(features, HR_last=80, HR_hours_since=0.1, RR_last=16, RR_hours_since=0.1)
    d = drivers(features.names, x, _contrib(features, HR_last=0.2, RR_last=0.0))
    assert [k.text for k in d] == ["HR 80"]


def test_labs_say_their_change_and_patient_facts_read_naturally(features) -> None:
    x = _row(features, Lactate_last=3.1, Lactate_hours_since=2, Lactate_delta=1.2, age_years=78,
             hours_since_icu_admission=30, shock_index=1.3)
    c = _contrib(features, Lactate_delta=0.3, age_years=0.2, hours_since_icu_admission=0.1,
                 shock_index=0.05)
    assert [k.text for k in drivers(features.names, x, c, top=4)] == [
        "lactate 3.1 ↑, up 1.2 since the one before", "age 78", "30 h since ICU admission",
        "shock index 1.3 ↑"]


def test_each_kind_opens_its_alerts_with_its_own_headline() -> None:
    from vigil.kinds import registered

    sepsis, deterioration = registered()
    assert deterioration.headline("news2", 0.4, {"news2": 8.0}) == "NEWS2 8"
    assert deterioration.headline("deterioration-hybrid-qnn", 0.26, {"news2": 6.0}) == \
        "deterioration: 26% risk of death in hospital, NEWS2 6"
    assert sepsis.headline("qsofa", 2 / 3, {"qsofa": 2.0}) == "qSOFA 2/3"
    assert sepsis.headline("hybrid", 0.16, {"qsofa": 1.0}) == \
        "sepsis risk 16% within 6 h (qSOFA 1/3)"
    assert sepsis.headline("hybrid", 0.16, {"qsofa": float("nan")}) == \
        "sepsis risk 16% within 6 h"
