"""Clinical scores at every published boundary (RCP NEWS2 2017; Seymour 2016; Bone 1992)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vigil.models.base import Scorer, score_padded
from vigil.models.clinical import (
    News2Scorer,
    QsofaScorer,
    news2_components,
    qsofa_criteria,
    shock_index,
    sirs_criteria,
)


def news2_one(param: str, value: float) -> float:
    args = {"rr": np.nan, "spo2": np.nan, "on_oxygen": np.nan, "sbp": np.nan, "hr": np.nan,
            "alert": np.nan, "temp": np.nan}
    args[param] = value
    key = {"on_oxygen": "o2", "alert": "consciousness"}.get(param, param)
    return float(news2_components(**{k: np.array([v]) for k, v in args.items()})[key][0])


# RCP NEWS2 chart 1: every band edge on both sides
@pytest.mark.parametrize("value,points", [
    (5, 3), (8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3), (40, 3),
    (20.4, 0), (20.5, 2), (8.4, 3), (8.5, 1),  # charted to whole breaths, half up
])
def test_news2_respiration_rate(value, points) -> None:
    assert news2_one("rr", value) == points


@pytest.mark.parametrize("value,points", [
    (85, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0), (91.5, 2)])
def test_news2_spo2_scale_1(value, points) -> None:
    assert news2_one("spo2", value) == points


@pytest.mark.parametrize("value,points", [
    (70, 3), (90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3)])
def test_news2_systolic_bp(value, points) -> None:
    assert news2_one("sbp", value) == points


@pytest.mark.parametrize("value,points", [
    (30, 3), (40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2),
    (130, 2), (131, 3), (180, 3)])
def test_news2_pulse(value, points) -> None:
    assert news2_one("hr", value) == points


@pytest.mark.parametrize("value,points", [
    (34.0, 3), (35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0), (38.1, 1), (39.0, 1),
    (39.1, 2), (41.0, 2), (36.05, 0), (36.04, 1)])
def test_news2_temperature(value, points) -> None:
    assert news2_one("temp", value) == points


@pytest.mark.parametrize("param,value,points", [
    ("on_oxygen", 1, 2), ("on_oxygen", 0, 0), ("alert", 1, 0), ("alert", 0, 3)])
def test_news2_oxygen_and_consciousness(param, value, points) -> None:
    assert news2_one(param, value) == points


def test_news2_unknown_parameter_is_nan_not_zero() -> None:
    assert math.isnan(news2_one("hr", np.nan))


@pytest.mark.parametrize("rr,sbp,gcs,expected", [
    (21, 101, 15, (0, 0, 0)), (22, 101, 15, (1, 0, 0)), (21, 100, 15, (0, 1, 0)),
    (21, 101, 14, (0, 0, 1)), (30, 80, 9, (1, 1, 1))])
def test_qsofa_boundaries(rr, sbp, gcs, expected) -> None:
    c = qsofa_criteria(np.array([rr]), np.array([sbp]), np.array([gcs]))
    assert tuple(int(v[0]) for v in c.values()) == expected


@pytest.mark.parametrize("temp,hr,rr,paco2,wbc,expected", [
    (38.0, 90, 20, 32, 12, (0, 0, 0, 0)),      # every limit is strict
    (38.01, 90.5, 20.5, 32, 12.1, (1, 1, 1, 1)),
    (36.0, 90, 20, 31.9, 4.0, (0, 0, 1, 0)),
    (35.9, 90, 20, 32, 3.9, (1, 0, 0, 1)),
])
def test_sirs_boundaries(temp, hr, rr, paco2, wbc, expected) -> None:
    c = sirs_criteria(*(np.array([x]) for x in (temp, hr, rr, paco2, wbc)))
    assert tuple(int(v[0]) for v in c.values()) == expected


def test_sirs_respiratory_criterion_uses_paco2_when_rr_missing() -> None:
    c = sirs_criteria(*(np.array([x]) for x in (np.nan, np.nan, np.nan, 30.0, np.nan)))
    assert c["resp"][0] == 1 and math.isnan(c["temp"][0]) and math.isnan(c["wbc"][0])


def test_shock_index() -> None:
    si = shock_index(np.array([100, 90, 80, np.nan]), np.array([100, 100, 0, 120]))
    assert si[0] == 1.0 and si[1] == 0.9 and math.isnan(si[2]) and math.isnan(si[3])


def row(features, **values) -> np.ndarray:
    x = np.full(len(features), np.nan)
    for k, v in values.items():
        x[features.index[k]] = v
    return x


def test_news2_scorer_reads_current_values_and_counts_missing(features) -> None:
    s = News2Scorer(features.names)
    assert isinstance(s, Scorer)
    fresh = dict(RR_last=26, RR_hours_since=0, SpO2_last=95, SpO2_hours_since=0.5,
                 SBP_last=95, SBP_hours_since=1, HR_last=120, HR_hours_since=0)
    stale = dict(fresh, HR_hours_since=7.0)  # older than the 6 h maximum age: unknown
    X = np.vstack([row(features, **fresh), row(features, **stale)])
    a = s.score_batch(X)
    # RR 3 + SpO2 1 + SBP 2 + HR 2 (+ temperature unknown, air and alert assumed)
    assert list(a.details["news2"]) == [8, 6]
    assert list(a.details["news2_missing"]) == [1, 2]
    assert list(a.details["news2_assumed"]) == [2, 2]
    assert list(a.details["news2_red"]) == [1, 1]
    assert a.risk[0] == pytest.approx(8 / 20)
    assert a.contributions[0, features.index["RR_last"]] == pytest.approx(3 / 20)
    assert a.contributions[0].sum() == pytest.approx(a.risk[0])


def test_spo2_falls_back_to_sao2(features) -> None:
    s = News2Scorer(features.names)
    x = row(features, SaO2_last=90, SaO2_hours_since=2)
    assert s.score_batch(x[None, :]).details["news2_spo2"][0] == 3


def test_qsofa_scorer_and_padding(features) -> None:
    s = QsofaScorer(features.names)
    X = np.vstack([row(features, RR_last=24, RR_hours_since=0, SBP_last=90, SBP_hours_since=0),
                   row(features, RR_last=14, RR_hours_since=0)])
    a = score_padded(s, X, batch_size=8)
    assert a.risk.shape == (2,)
    assert a.risk[0] == pytest.approx(2 / 3) and a.risk[1] == 0
    assert list(a.details["qsofa_missing"]) == [1, 2]
    many = score_padded(s, np.vstack([X] * 5), batch_size=4)  # 10 rows in 3 padded calls
    assert many.risk.shape == (10,) and list(many.risk[::2]) == [pytest.approx(2 / 3)] * 5
