"""The PhysioNet 2019 utility, against a line-by-line port of the official loop."""

from __future__ import annotations

import numpy as np
import pytest

from vigil.models.utility import normalized_utility, patient_utility


def official(labels, predictions, dt_early=-12, dt_optimal=-6, dt_late=3.0, max_u_tp=1,
             min_u_fn=-2, u_fp=-0.05, u_tn=0):
    """compute_prediction_utility from evaluate_sepsis_score.py (PhysioNet 2019), as published."""
    if np.any(labels):
        is_septic = True
        t_sepsis = np.argmax(labels) - dt_optimal
    else:
        is_septic = False
        t_sepsis = float("inf")
    n = len(labels)
    m_1 = float(max_u_tp) / float(dt_optimal - dt_early)
    b_1 = -m_1 * dt_early
    m_2 = float(-max_u_tp) / float(dt_late - dt_optimal)
    b_2 = -m_2 * dt_late
    m_3 = float(min_u_fn) / float(dt_late - dt_optimal)
    b_3 = -m_3 * dt_optimal
    u = np.zeros(n)
    for t in range(n):
        if t <= t_sepsis + dt_late:
            if is_septic and predictions[t]:
                if t <= t_sepsis + dt_optimal:
                    u[t] = max(m_1 * (t - t_sepsis) + b_1, u_fp)
                elif t <= t_sepsis + dt_late:
                    u[t] = m_2 * (t - t_sepsis) + b_2
            elif not is_septic and predictions[t]:
                u[t] = u_fp
            elif is_septic and not predictions[t]:
                if t <= t_sepsis + dt_optimal:
                    u[t] = 0
                elif t <= t_sepsis + dt_late:
                    u[t] = m_3 * (t - t_sepsis) + b_3
            elif not is_septic and not predictions[t]:
                u[t] = u_tn
    return np.sum(u)


@pytest.mark.parametrize("seed", range(40))
def test_matches_the_official_loop_on_random_patients(seed) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 80))
    labels = np.zeros(n, int)
    if rng.random() < 0.6:
        labels[int(rng.integers(0, n)):] = 1
    pred = (rng.random(n) < rng.random()).astype(int)
    assert patient_utility(labels, pred) == pytest.approx(official(labels, pred))


def test_normalisation_anchors() -> None:
    labels = [np.r_[np.zeros(20), np.ones(20)], np.zeros(30)]
    never = [np.zeros(40), np.zeros(30)]
    assert normalized_utility(labels, never) == 0.0
    # the best predictions: 1 from onset - 12 h to onset + 3 h (onset = first label + 6 = 26)
    best = [np.zeros(40), np.zeros(30)]
    best[0][14:30] = 1
    assert normalized_utility(labels, best) == pytest.approx(1.0)
    always = [np.ones(40), np.ones(30)]
    assert normalized_utility(labels, always) < normalized_utility(labels, best)
