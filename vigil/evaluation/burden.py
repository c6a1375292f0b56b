"""Alert burden: what nurses would receive, with and without the alert lifecycle.

A threshold crossing is not an alert: the stream applies hysteresis, a refractory period and
deduplication (:mod:`vigil.alerts.lifecycle`). This replays that very state machine over
each held-out patient's hourly risks and counts, next to the raw crossings:

* alerts per patient-day, and per ICU bed per 12-h shift (a bed holds one patient for the
  day's two shifts: half the per-patient-day figure, at full occupancy);
* the share of alerts that precede a true event: raised in the warning window of a septic
  patient (``LEAD_WINDOW_H`` before onset to ``DT_LATE`` after, as for sensitivity);
* sensitivity and median hours of warning, from the hours an alert is *active*.

Nobody acknowledges alerts offline, so unacknowledged escalations are not counted; severity
escalations are (they page again).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from vigil.alerts.lifecycle import Rules, step
from vigil.alerts.policy import Policy
from vigil.evaluation.metrics import LEAD_WINDOW_H, patient_days, rising_edges, warning_hours
from vigil.models.utility import DT_LATE, DT_OPTIMAL
from vigil.wire.durations import HOUR_MS
from vigil.wire.state import AlertTrack

__all__ = ["Burden", "alert_burden", "burden_table", "levels_at", "levels_for_alert_rates",
           "policy_states", "policy_timeline"]

NO_ACKS = 10**15  # offline nobody acknowledges: keep unacknowledged escalation out


@dataclass(frozen=True)
class Burden:
    alerts_per_patient_day: float
    alerts_per_bed_per_shift: float
    true_alert_share: float  # alerts raised in a septic patient's warning window
    sensitivity: float
    median_lead_hours: float
    alerts: int
    patient_days: float


def policy_timeline(risk: np.ndarray, hours: np.ndarray, policy: Policy,
                    rules: Rules) -> tuple[np.ndarray, np.ndarray]:
    """One patient's hours through the lifecycle: (alert events per hour, active per hour).

    An alert event is a raise or a severity escalation (each pages a nurse).

    >>> p = Policy("sepsis", ((0.5, "medium"),))
    >>> events, active = policy_timeline(np.array([.6, .45, .6, .3, .3, .3, .6]),
    ...     np.arange(7.0), p, Rules(clear_after_ms=2 * HOUR_MS, refractory_ms=0))
    >>> events.astype(int).tolist(), active.astype(int).tolist()
    ([1, 0, 0, 0, 0, 0, 1], [1, 1, 1, 1, 1, 0, 1])
    """
    events, active, _ = policy_states(risk, hours, policy, rules)
    return events, active


def policy_states(risk: np.ndarray, hours: np.ndarray, policy: Policy,
                  rules: Rules) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`policy_timeline` plus the alert's severity at each hour ("" when none is
    active): what the board shows, written to ``scores.csv.gz`` so the lifecycle's figures
    can be recomputed without replaying it.

    >>> p = Policy("sepsis", ((0.5, "medium"), (0.8, "high")))
    >>> policy_states(np.array([.6, .9, .1]), np.arange(3.0), p,
    ...               Rules(clear_after_ms=HOUR_MS, refractory_ms=0))[2].tolist()
    ['medium', 'high', 'high']
    """
    rules = Rules(rules.clear_after_ms, rules.refractory_ms, NO_ACKS)
    track = AlertTrack()
    events = np.zeros(len(risk), bool)
    active = np.zeros(len(risk), bool)
    severity = np.full(len(risk), "", dtype=object)
    for i, (r, h) in enumerate(zip(risk, hours)):
        r = float(r)
        t = step(track, policy.severity(r), policy.below_clear(r), int(h * HOUR_MS), rules, r)
        events[i] = t is not None and t.state in ("raised", "escalated")
        active[i] = track.active
        if track.active:
            severity[i] = track.severity
    return events, active, severity


def alert_burden(label: np.ndarray, hours: np.ndarray, groups: list[np.ndarray],
                 events: list[np.ndarray], active: list[np.ndarray],
                 stay_outcome: bool = False) -> Burden:
    """Burden figures of per-patient alert events (what pages) and active hours.

    ``stay_outcome``: the label is the stay's outcome (PhysioNet 2012 death) on every row,
    not an onset in time: sensitivity is the share of positive stays with any alert, a true
    alert one raised in a positive stay, and there is no lead time.
    """
    n_alerts = true_alerts = septic = detected = 0
    leads: list[float] = []
    for g, ev, act in zip(groups, events, active):
        lab = label[g]
        n_alerts += int(ev.sum())
        if stay_outcome:
            if lab.any():
                septic += 1
                true_alerts += int(ev.sum())
                detected += int(ev.any())
        elif lab.any():
            septic += 1
            onset = int(np.argmax(lab)) - DT_OPTIMAL
            lo, hi = onset - LEAD_WINDOW_H, onset + DT_LATE
            idx = np.flatnonzero(ev)
            true_alerts += int(np.sum((idx >= lo) & (idx <= hi)))
            lead = warning_hours(lab, act)
            if lead is not None:
                detected += 1
                leads.append(lead)
    days = patient_days(hours, groups)
    per_day = n_alerts / days if days else float("nan")
    return Burden(
        alerts_per_patient_day=per_day,
        alerts_per_bed_per_shift=per_day / 2,
        true_alert_share=true_alerts / n_alerts if n_alerts else float("nan"),
        sensitivity=detected / septic if septic else float("nan"),
        median_lead_hours=float(np.median(leads)) if leads else float("nan"),
        alerts=n_alerts,
        patient_days=days,
    )


def burden_table(label: np.ndarray, hours: np.ndarray, groups: list[np.ndarray],
                 scores: dict[str, tuple[np.ndarray, Policy]], rules: Rules) -> dict[str, dict]:
    """For each score: every hour above threshold, upward crossings, and the full policy."""
    out: dict[str, dict] = {}
    for name, (risk, policy) in scores.items():
        above = [risk[g] >= policy.raise_threshold for g in groups]
        crossings = [rising_edges(a) for a in above]
        runs = [policy_timeline(risk[g], hours[g], policy, rules) for g in groups]
        out[name] = {
            "every hour above threshold": asdict(alert_burden(label, hours, groups, above, above)),
            "threshold crossings": asdict(alert_burden(label, hours, groups, crossings, above)),
            "full policy": asdict(alert_burden(label, hours, groups, [e for e, _ in runs],
                                               [a for _, a in runs])),
        }
    return out


def levels_at(risk: np.ndarray, threshold: float,
              high_quantile: float = 0.9) -> tuple[tuple[float, str], ...]:
    """Medium at ``threshold``; high for the top tenth of the hours above it.

    >>> [(round(t, 3), s) for t, s in levels_at(np.linspace(0, 1, 101), 0.5)]
    [(0.5, 'medium'), (0.95, 'high')]
    """
    above = risk[risk >= threshold]
    high = (float(np.quantile(above, high_quantile)) if len(above) > 10
            else min(1.0, threshold * 2))
    return ((float(threshold), "medium"), (max(high, float(threshold)), "high"))


def levels_for_alert_rates(label: np.ndarray, hours: np.ndarray, groups: list[np.ndarray],
                           risk: np.ndarray, targets: tuple[float, ...], rules: Rules,
                           clear_ratio: float = 0.8, candidates: int = 40,
                           high_quantile: float = 0.9, stay_outcome: bool = False
                           ) -> list[dict]:
    """Alert levels chosen on training patients for target alert rates, as nurses see them.

    For each candidate threshold (risk quantiles) the full lifecycle runs over every
    patient; for each target the lowest threshold whose alerts per patient-day stay at or
    under it is kept, with the sensitivity it reached. High is the top tenth of the hours
    above the threshold, as for the utility-chosen levels.
    """
    grid = np.unique(np.quantile(risk, np.linspace(0.5, 0.995, candidates)))
    scored = []
    for t in grid:
        levels = levels_at(risk, float(t), high_quantile)
        policy = Policy("sepsis", levels, clear_ratio=clear_ratio)
        runs = [policy_timeline(risk[g], hours[g], policy, rules) for g in groups]
        b = alert_burden(label, hours, groups, [e for e, _ in runs], [a for _, a in runs],
                         stay_outcome)
        scored.append((levels, b))
    out = []
    for target in targets:
        fits = [(lv, b) for lv, b in scored if b.alerts_per_patient_day <= target]
        if not fits:
            continue
        levels, b = min(fits, key=lambda it: it[0][0][0])
        out.append({"alerts_per_patient_day": target, "levels": [list(lv) for lv in levels],
                    "validation_alerts_per_patient_day": round(b.alerts_per_patient_day, 4),
                    "validation_sensitivity": round(b.sensitivity, 4),
                    "validation_true_alert_share": round(b.true_alert_share, 4)})
    return out
