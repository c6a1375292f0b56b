"""Explanations: top drivers in words a nurse reads at a glance."""

from __future__ import annotations

import numpy as np

from vigil.alerts.explain import drivers, summary


def test_drivers_are_the_largest_positive_contributions_with_direction() -> None:
    names = ("HR_last", "RR_last", "SBP_last", "Lactate_last", "Temp_last")
    x = np.array([118.0, 28.0, 92.0, 3.1, 37.0])
    c = np.array([0.10, 0.15, 0.12, 0.05, 0.0])
    d = drivers(names, x, c, top=3)
    assert [k.text for k in d] == ["RR 28 ↑", "SBP 92 ↓", "HR 118 ↑"]
    assert [k.direction for k in d] == ["up", "down", "up"]
    assert summary("NEWS2 8", d) == "NEWS2 8: RR 28 ↑, SBP 92 ↓, HR 118 ↑"
    assert summary("NEWS2 8", []) == "NEWS2 8"


def test_each_kind_opens_its_alerts_with_its_own_headline() -> None:
    from vigil.kinds import registered

    sepsis, deterioration = registered()
    assert deterioration.headline("news2", 0.4, {"news2": 8.0}) == "NEWS2 8"
    assert sepsis.headline("qsofa", 2 / 3, {"qsofa": 2.0}) == "qSOFA 2/3"
    assert sepsis.headline("hybrid", 0.16, {"qsofa": 1.0}) == "risk 16% (qSOFA 1/3)"
    assert sepsis.headline("hybrid", 0.16, {"qsofa": float("nan")}) == "risk 16%"


def test_normal_values_have_no_arrow_and_zero_contributions_are_not_reasons() -> None:
    d = drivers(("HR_last", "RR_last"), np.array([80.0, 16.0]), np.array([0.2, 0.0]))
    assert [k.text for k in d] == ["HR 80"]


def test_trends_and_labs_read_naturally() -> None:
    d = drivers(("HR_slope_6h", "Lactate_last"), np.array([5.0, 3.1]), np.array([0.1, 0.2]))
    assert [k.text for k in d] == ["lactate 3.1 ↑", "HR trend +5.0/h ↑"]
