"""Alert levels chosen on training patients for a target alert rate, and picked by setting."""

from __future__ import annotations

import numpy as np
import pytest

from vigil.alerts.lifecycle import Rules
from vigil.evaluation.burden import levels_for_alert_rates
from vigil.kinds.sepsis import shipped_model
from vigil.models.deployed import DeployedSepsis
from vigil.settings import VigilSettings
from vigil.stream.processor import build_processor


def ward(n_patients: int = 120, hours: int = 48, seed: int = 0):
    """Synthetic hourly risks: a tenth of patients septic, their risk rising before onset."""
    rng = np.random.default_rng(seed)
    risk, label, hrs, groups, start = [], [], [], [], 0
    for p in range(n_patients):
        r = np.clip(rng.normal(0.02, 0.01, hours) + 0.02 * rng.random(), 0, 1)
        y = np.zeros(hours, np.int8)
        if p % 10 == 0:
            onset = 30
            r[onset - 12:] += np.linspace(0, 0.1, hours - onset + 12)
            y[onset - 6:] = 1
        risk.append(r), label.append(y), hrs.append(np.arange(hours, dtype=float))
        groups.append(np.arange(start, start + hours))
        start += hours
    return np.concatenate(label), np.concatenate(hrs), groups, np.concatenate(risk)


def test_levels_fit_their_target_and_loosen_as_it_rises() -> None:
    y, hours, groups, risk = ward()
    targets = (0.25, 0.5, 1.0, 2.0)
    got = levels_for_alert_rates(y, hours, groups, risk, targets, Rules())
    assert [e["alerts_per_patient_day"] for e in got] == list(targets)
    for e in got:
        assert e["validation_alerts_per_patient_day"] <= e["alerts_per_patient_day"]
        (t, medium), (h, high) = e["levels"]
        assert (medium, high) == ("medium", "high") and h >= t
    thresholds = [e["levels"][0][0] for e in got]
    assert thresholds == sorted(thresholds, reverse=True)  # more alerts allowed: lower bar
    assert got[-1]["validation_sensitivity"] >= got[0]["validation_sensitivity"]


def test_the_shipped_artifact_picks_levels_by_alert_rate() -> None:
    deployed = DeployedSepsis.load(shipped_model())
    assert deployed.rate_levels, "the shipped artifact has no levels by alert rate"
    for target in (0.5, 1.0):
        entry = next(e for e in deployed.rate_levels if e["alerts_per_patient_day"] == target)
        want = tuple((t, s) for t, s in entry["levels"])
        proc = build_processor(VigilSettings(sepsis_alerts_per_patient_day=target))
        assert proc.policies["sepsis"].levels == want
    # between targets: the largest not above it; below all of them: the strictest
    assert deployed.levels_for_rate(0.9) == deployed.levels_for_rate(0.75)
    strictest = min(deployed.rate_levels, key=lambda e: e["alerts_per_patient_day"])
    assert deployed.levels_for_rate(0.01)[0][0] == strictest["levels"][0][0]
    # explicit levels still win over the rate
    proc = build_processor(VigilSettings(sepsis_alerts_per_patient_day=0.5,
                                         sepsis_levels=((0.5, "high"),)))
    assert proc.policies["sepsis"].levels == ((0.5, "high"),)


def test_a_rate_without_the_online_model_is_refused() -> None:
    with pytest.raises(ValueError, match="ALERTS_PER_PATIENT_DAY"):
        build_processor(VigilSettings(sepsis_alerts_per_patient_day=0.5, sepsis_online=False))
