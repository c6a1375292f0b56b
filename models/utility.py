"""The PhysioNet/CinC Challenge 2019 clinical utility score.

Reyna MA et al., Crit Care Med 2020;48(2):210-217, and the challenge's scoring code
(``evaluate_sepsis_score.py``, physionetchallenges/evaluation-2019): predictions are hourly;
for a septic patient with onset t_sepsis = first labelled hour + 6 (labels are already
shifted 6 h early), a positive prediction earns up to +1 from 12 h before onset (peak at
6 h before, falling to 0 at 3 h after); a missed onset costs up to -2 by 3 h after; every
false alarm on a non-septic patient costs 0.05; nothing counts after onset + 3 h. The score
is normalised so that the best possible predictions score 1 and "never alert" scores 0:
``(observed - inaction) / (best - inaction)``.

Implemented vectorised per patient; ``tests/models/test_utility.py`` checks it against a
line-by-line port of the official loop.
"""

from __future__ import annotations

import numpy as np

__all__ = ["patient_utility", "normalized_utility", "DT_EARLY", "DT_OPTIMAL", "DT_LATE"]

DT_EARLY, DT_OPTIMAL, DT_LATE = -12, -6, 3.0
MAX_U_TP, MIN_U_FN, U_FP, U_TN = 1.0, -2.0, -0.05, 0.0


def patient_utility(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Total utility of one patient's hourly 0/1 predictions (row index = hour)."""
    labels = np.asarray(labels)
    pred = np.asarray(predictions).astype(bool)
    n = len(labels)
    t = np.arange(n, dtype=float)
    if not labels.any():
        return float(np.where(pred, U_FP, U_TN).sum())
    t_sepsis = float(np.argmax(labels)) - DT_OPTIMAL
    m1 = MAX_U_TP / (DT_OPTIMAL - DT_EARLY)
    b1 = -m1 * DT_EARLY
    m2 = -MAX_U_TP / (DT_LATE - DT_OPTIMAL)
    b2 = -m2 * DT_LATE
    m3 = MIN_U_FN / (DT_LATE - DT_OPTIMAL)
    b3 = -m3 * DT_OPTIMAL
    dt = t - t_sepsis
    inside = t <= t_sepsis + DT_LATE
    early = t <= t_sepsis + DT_OPTIMAL
    tp = np.where(early, np.maximum(m1 * dt + b1, U_FP), m2 * dt + b2)
    fn = np.where(early, 0.0, m3 * dt + b3)
    return float(np.where(inside, np.where(pred, tp, fn), 0.0).sum())


def normalized_utility(labels_by_patient: list[np.ndarray],
                       predictions_by_patient: list[np.ndarray]) -> float:
    """The challenge's normalised utility over a cohort (1 = best, 0 = never alert)."""
    observed = best = inaction = 0.0
    for labels, pred in zip(labels_by_patient, predictions_by_patient):
        labels = np.asarray(labels)
        n = len(labels)
        best_pred = np.zeros(n)
        if labels.any():
            t_sepsis = int(np.argmax(labels)) - DT_OPTIMAL
            best_pred[max(0, t_sepsis + DT_EARLY):min(int(t_sepsis + DT_LATE) + 1, n)] = 1
        observed += patient_utility(labels, pred)
        best += patient_utility(labels, best_pred)
        inaction += patient_utility(labels, np.zeros(n))
    if best == inaction:
        return 0.0
    return (observed - inaction) / (best - inaction)
