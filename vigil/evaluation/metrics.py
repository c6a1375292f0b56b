"""Ranking, utility and alert-burden metrics for hourly risk scores, in plain numpy.

Row-level (every scored hour): AUROC, AUPRC (average precision). Patient-level at a chosen
threshold: the PhysioNet 2019 normalised utility, sensitivity (a septic patient alerted at
any hour from 24 h before to 3 h after onset, the utility's last useful hour), the median
hours of warning before onset of the first such alert, and alert *episodes* (rising edges
of the hourly alert state) per patient-day.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vigil.models.utility import DT_LATE, DT_OPTIMAL, normalized_utility

__all__ = ["AlertStats", "LEAD_WINDOW_H", "alert_stats", "auprc", "auroc", "best_threshold",
           "patient_groups", "pr_curve", "roc_curve", "split_by_patient", "warning_hours"]

LEAD_WINDOW_H = 24


def _counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """At each distinct score, descending: (true positives, flagged rows, score), #pos, #neg."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, float)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    return np.cumsum(y)[distinct], distinct + 1, s[distinct], int(y.sum()), int((~y).sum())


def roc_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate, thresholds), thresholds descending."""
    tps, flagged, thresholds, pos, neg = _counts(y, s)
    tpr = np.r_[0.0, tps / max(1, pos)]
    fpr = np.r_[0.0, (flagged - tps) / max(1, neg)]
    return fpr, tpr, np.r_[np.inf, thresholds]


def auroc(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the ROC curve (ties count half).

    >>> auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    fpr, tpr, _ = roc_curve(y, s)
    return float(np.trapezoid(tpr, fpr))


def pr_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at each distinct threshold, thresholds descending."""
    tps, flagged, _, pos, _ = _counts(y, s)
    return tps / max(1, pos), tps / flagged


def auprc(y: np.ndarray, s: np.ndarray) -> float:
    """Average precision: sum over thresholds of precision x recall increment.

    >>> round(auprc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 4)
    0.8333
    """
    recall, precision = pr_curve(y, s)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


@dataclass(frozen=True)
class AlertStats:
    utility: float
    sensitivity: float
    median_lead_hours: float
    alerts_per_patient_day: float
    alert_rows: float  # share of hours in alert


def patient_groups(patient: np.ndarray) -> list[np.ndarray]:
    """Row indices per patient, in row order (rows of a patient are contiguous and in time)."""
    bounds = np.flatnonzero(np.diff(patient)) + 1
    return np.split(np.arange(len(patient)), bounds)


def patient_days(hours: np.ndarray, groups: list[np.ndarray]) -> float:
    """Days of care: each stay from its first to its last record, plus the last record's
    hour. Hourly rows (PhysioNet 2019) give rows / 24; irregular charting (PhysioNet 2012,
    several records an hour) is counted by time, not rows.

    >>> patient_days(np.array([0., 1, 2, 0, 0.5, 23]), [np.arange(3), np.arange(3, 6)])
    1.125
    """
    return float(sum(hours[g].max() - hours[g].min() + 1.0 for g in groups if len(g)) / 24.0)


def rising_edges(alert: np.ndarray) -> np.ndarray:
    """Where an alert starts: each hour that alerts after one that did not (or first).

    >>> rising_edges(np.array([1, 1, 0, 1, 0, 0, 1], bool)).nonzero()[0].tolist()
    [0, 3, 6]
    """
    a = np.asarray(alert, bool)
    return a & ~np.r_[False, a[:-1]]


def episodes(alert: np.ndarray, groups: list[np.ndarray] | None = None) -> int:
    """Alert episodes: rising edges, counted per patient when ``groups`` are given.

    >>> episodes(np.array([1, 1, 0, 1], bool)), episodes(np.array([1, 1, 1], bool),
    ...                                                   [np.arange(2), np.arange(2, 3)])
    (2, 2)
    """
    if groups is None:
        return int(rising_edges(alert).sum())
    return sum(int(rising_edges(alert[g]).sum()) for g in groups)


def alert_stats(label: np.ndarray, alert: np.ndarray, patient: np.ndarray,
                groups: list[np.ndarray] | None = None) -> AlertStats:
    """Patient-level figures of hourly 0/1 alerts (rows ordered by patient, then hour)."""
    groups = groups if groups is not None else patient_groups(patient)
    labels_by = [label[g] for g in groups]
    alerts_by = [alert[g] for g in groups]
    utility = normalized_utility(labels_by, alerts_by)
    detected, leads, n_episodes = 0, [], 0
    septic = 0
    for lab, al in zip(labels_by, alerts_by):
        a = al.astype(bool)
        n_episodes += int(rising_edges(a).sum())
        if lab.any():
            septic += 1
            lead = warning_hours(lab, a)
            if lead is not None:
                detected += 1
                leads.append(lead)
    days = len(label) / 24.0
    return AlertStats(
        utility=float(utility),
        sensitivity=detected / septic if septic else float("nan"),
        median_lead_hours=float(np.median(leads)) if leads else float("nan"),
        alerts_per_patient_day=n_episodes / days if days else float("nan"),
        alert_rows=float(np.mean(alert)) if len(alert) else float("nan"),
    )


def warning_hours(labels: np.ndarray, alerts: np.ndarray) -> float | None:
    """Hours from the first alert in the warning window to sepsis onset, None if missed.

    The window runs from ``LEAD_WINDOW_H`` before onset to 3 h after (the last hour the
    utility rewards); alerts earlier than that are not counted as warning of this onset.

    >>> warning_hours(np.r_[np.zeros(20), np.ones(10)], np.r_[np.zeros(15), np.ones(15)])
    11.0
    """
    onset = int(np.argmax(labels)) - DT_OPTIMAL
    lo = max(0, onset - LEAD_WINDOW_H)
    hits = np.flatnonzero(np.asarray(alerts, bool)[lo:int(onset + DT_LATE) + 1])
    return float(onset - (lo + hits[0])) if len(hits) else None


def best_threshold(label: np.ndarray, score: np.ndarray, patient: np.ndarray,
                   candidates: np.ndarray | None = None) -> tuple[float, float]:
    """(threshold, utility) maximising the normalised utility over score quantiles."""
    groups = patient_groups(patient)
    if candidates is None:
        candidates = np.unique(np.quantile(score, np.linspace(0.5, 0.995, 60)))
    best = (float(candidates[0]), -np.inf)
    labels_by = [label[g] for g in groups]
    score_by = [score[g] for g in groups]
    for c in candidates:
        u = normalized_utility(labels_by, [s >= c for s in score_by])
        if u > best[1]:
            best = (float(c), float(u))
    return best


def split_by_patient(septic: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Patient indices (a, b): ``fraction`` of each of septic / non-septic patients go to b."""
    rng = np.random.default_rng(seed)
    a, b = [], []
    for group in (np.flatnonzero(septic), np.flatnonzero(~septic)):
        perm = rng.permutation(group)
        k = int(round(len(perm) * fraction))
        b.append(perm[:k])
        a.append(perm[k:])
    return np.sort(np.concatenate(a)), np.sort(np.concatenate(b))
