"""Sepsis warnings judged before onset: only what a score says before sepsis is known counts.

PhysioNet 2019 labels are shifted: ``SepsisLabel`` is 1 from 6 h *before* clinical onset
(Sepsis-3) on, so onset = first positive label hour + 6 h (Reyna MA et al., "Early
Prediction of Sepsis From Clinical Data: the PhysioNet/Computing in Cardiology Challenge
2019", Crit Care Med 2020;48(2):210-217). Hours at and after onset are hours when the
diagnosis is already made: a score that rises then tells the nurse nothing new, and an
online model that has learned the same patient's positive labels ranks them high. Counting
them flatters every score (the Epic Sepsis Model's external validation, Wong et al., JAMA
Intern Med 2021, found the same trap). Here:

* **pre-onset rows**: a septic patient's hours strictly before onset, every hour of the
  others;
* **warned**: a septic patient with an alert active at some hour of [onset - 12 h, onset)
  (``WARNING_WINDOW_H``, the challenge's earliest rewarded hour); lead time is onset minus
  the first such hour. An alert at or after onset carries no warning and is not counted;
* **false alerts**: alert starts in non-septic patients and in septic patients before the
  warning window, per patient-day of those hours;
* **patient-level bootstrap**: patients resampled with replacement (within septic and
  non-septic, seeded), AUROC / AUPRC recomputed from row weights on one sort per score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vigil.evaluation.metrics import auprc, auroc

__all__ = ["ONLINE_EVENT_TIME", "ONLINE_EVENT_TIME_WITHHELD", "ONLINE_WITHHELD",
           "ONSET_AFTER_FIRST_LABEL_H", "WARNING_WINDOW_H", "Warnings", "bootstrap_ranking",
           "interval", "matched_burden", "onset_hours", "pre_onset_report",
           "pre_onset_rows", "rising_by_patient", "warned_before_onset"]

ONSET_AFTER_FIRST_LABEL_H = 6.0  # labels start 6 h before clinical onset (Reyna et al. 2020)
WARNING_WINDOW_H = 12.0  # the utility's earliest rewarded hour before onset (DT_EARLY)
NO_WARNING_NOTE = ("An alert at or after sepsis onset (first positive label + 6 h) carries no "
                   "warning: the diagnosis is already made. Such alerts are not counted as "
                   "warnings; 'late_only_share' says how many septic patients had only those.")


def _bounds(patient: np.ndarray) -> np.ndarray:
    return np.r_[0, np.flatnonzero(np.diff(patient)) + 1, len(patient)]


def onset_hours(label: np.ndarray, hours: np.ndarray, patient: np.ndarray) -> np.ndarray:
    """Per row, its patient's sepsis onset in hours since admission (NaN: never septic).

    Rows are ordered by patient, then hour.

    >>> onset_hours(np.array([0, 0, 1, 0]), np.array([1., 2., 3., 1.]), np.array([0, 0, 0, 1]))
    array([ 9.,  9.,  9., nan])
    """
    out = np.full(len(label), np.nan)
    bounds = _bounds(patient)
    for a, b in zip(bounds[:-1], bounds[1:]):
        lab = np.asarray(label[a:b]).astype(bool)
        if lab.any():
            out[a:b] = float(hours[a + int(np.argmax(lab))]) + ONSET_AFTER_FIRST_LABEL_H
    return out


def pre_onset_rows(label: np.ndarray, hours: np.ndarray, patient: np.ndarray) -> np.ndarray:
    """Rows before sepsis is known: septic patients' hours < onset, all others' hours.

    >>> pre_onset_rows(np.r_[np.zeros(4), np.ones(8), 0, 0], np.r_[np.arange(1., 13), 1, 2],
    ...                np.r_[np.zeros(12), 1, 1].astype(int)).astype(int).tolist()
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1]
    """
    onset = onset_hours(label, hours, patient)
    return ~(np.asarray(hours, np.float64) >= onset)  # NaN onset compares False: kept


def rising_by_patient(alert: np.ndarray, patient: np.ndarray) -> np.ndarray:
    """Alert starts: hours in alert whose previous hour of the same patient was not.

    >>> rising_by_patient(np.array([1, 1, 1, 0, 1], bool), np.array([0, 0, 1, 1, 1])).astype(int)
    array([1, 0, 1, 0, 1])
    """
    a = np.asarray(alert, bool)
    prev = np.r_[False, a[:-1]]
    prev[np.r_[False, np.diff(patient) != 0]] = False
    return a & ~prev


@dataclass(frozen=True)
class Warnings:
    septic_patients: int
    warned_share: float  # septic patients with an alert active in [onset - 12 h, onset)
    median_lead_hours: float  # onset - first alert hour in that window, warned patients
    late_only_share: float  # septic patients alerted only at/after onset: no warning
    false_alerts: int  # alert starts outside any warning window, before onset
    false_patient_days: float
    false_alerts_per_patient_day: float
    leads: tuple[float, ...] = ()  # per warned septic patient


def warned_before_onset(label: np.ndarray, hours: np.ndarray, patient: np.ndarray,
                        active: np.ndarray, starts: np.ndarray,
                        window_h: float = WARNING_WINDOW_H) -> Warnings:
    """Warnings and false alerts of per-hour alert states (rows by patient, then hour).

    ``active``: the alert is on at that hour (raw: risk >= threshold; lifecycle: the track
    is active). ``starts``: an alert starts (pages) at that hour (raw: rising edges;
    lifecycle: raises and severity escalations).
    """
    hours = np.asarray(hours, np.float64)
    onset = onset_hours(label, hours, patient)
    active = np.asarray(active, bool)
    starts = np.asarray(starts, bool)
    septic_rows = ~np.isnan(onset)
    in_window = septic_rows & (hours >= onset - window_h) & (hours < onset)
    false_region = ~septic_rows | (hours < onset - window_h)
    septic = warned = late_only = 0
    leads: list[float] = []
    bounds = _bounds(patient)
    for a, b in zip(bounds[:-1], bounds[1:]):
        if not septic_rows[a]:
            continue
        septic += 1
        hit = np.flatnonzero(active[a:b] & in_window[a:b])
        if len(hit):
            warned += 1
            leads.append(float(onset[a] - hours[a + hit[0]]))
        elif not active[a:b][hours[a:b] < onset[a]].any() and active[a:b].any():
            late_only += 1
    days = float(false_region.sum()) / 24.0
    n_false = int((starts & false_region).sum())
    return Warnings(
        septic_patients=septic,
        warned_share=warned / septic if septic else float("nan"),
        median_lead_hours=float(np.median(leads)) if leads else float("nan"),
        late_only_share=late_only / septic if septic else float("nan"),
        false_alerts=n_false,
        false_patient_days=days,
        false_alerts_per_patient_day=n_false / days if days else float("nan"),
        leads=tuple(leads),
    )


def _resample_counts(patient_code: np.ndarray, strata: np.ndarray, resamples: int,
                     seed: int) -> np.ndarray:
    """(resamples, patients) how often each patient is drawn, within each stratum."""
    n_patients = len(strata)
    rng = np.random.default_rng(seed)
    counts = np.zeros((resamples, n_patients), np.int32)
    rows = np.arange(resamples)[:, None]
    for s in np.unique(strata):
        members = np.flatnonzero(strata == s)
        draw = members[rng.integers(0, len(members), size=(resamples, len(members)))]
        np.add.at(counts, (np.broadcast_to(rows, draw.shape), draw), 1)
    return counts


def bootstrap_ranking(y: np.ndarray, scores: dict[str, np.ndarray], patient: np.ndarray, *,
                      resamples: int = 300, seed: int = 42, chunk: int = 25
                      ) -> dict[str, dict[str, np.ndarray]]:
    """AUROC and AUPRC of each score on ``resamples`` patient-level bootstrap samples.

    The same resamples serve every score, so differences between scores are paired. A
    resampled patient's rows all come with it (hours of one patient are not independent);
    septic and non-septic patients are resampled separately (the held-out split is
    stratified the same way). Each score is sorted once; a resample is a vector of row
    weights, and the areas are sums over tie groups (ties count half, as in
    :func:`vigil.evaluation.metrics.auroc`).
    """
    y = np.asarray(y).astype(bool)
    uniq, code = np.unique(patient, return_inverse=True)
    septic = np.zeros(len(uniq), bool)
    np.logical_or.at(septic, code, y)
    counts = _resample_counts(code, septic, resamples, seed)
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, s in scores.items():
        s = np.asarray(s, np.float64)
        order = np.argsort(s, kind="mergesort")
        starts = np.r_[0, np.flatnonzero(np.diff(s[order])) + 1]
        yo, co = y[order], code[order]
        aurocs, auprcs = np.empty(resamples), np.empty(resamples)
        for c0 in range(0, resamples, chunk):
            w = counts[c0:c0 + chunk][:, co].astype(np.float64)
            pos = np.add.reduceat(np.where(yo, w, 0.0), starts, axis=1)
            neg = np.add.reduceat(np.where(yo, 0.0, w), starts, axis=1)
            n_pos, n_neg = pos.sum(1), neg.sum(1)
            below = np.cumsum(neg, axis=1) - neg
            aurocs[c0:c0 + chunk] = (pos * (below + 0.5 * neg)).sum(1) / (n_pos * n_neg)
            pos_d, all_d = pos[:, ::-1], (pos + neg)[:, ::-1]  # descending score
            flagged = np.cumsum(all_d, axis=1)
            precision = np.divide(np.cumsum(pos_d, axis=1), flagged,
                                  out=np.zeros_like(flagged), where=flagged > 0)
            auprcs[c0:c0 + chunk] = (pos_d * precision).sum(1) / n_pos
        out[name] = {"auroc": aurocs, "auprc": auprcs}
    return out


def interval(values: np.ndarray, level: float = 0.95) -> list[float]:
    """Percentile interval of bootstrap values.

    >>> [round(v, 6) for v in interval(np.arange(101.0))]
    [2.5, 97.5]
    """
    lo = (1 - level) / 2
    return [float(np.quantile(values, lo)), float(np.quantile(values, 1 - lo))]


# --------------------------------------------------------------------------------------------
# The report section ``pre_onset`` of ``vigil evaluate``'s metrics.json.

#: how the online model learned, as named in the scorers' names ("deployed, <mode>")
ONLINE_WITHHELD = "own labels withheld"
ONLINE_EVENT_TIME = "event time"
ONLINE_EVENT_TIME_WITHHELD = "event time, own labels withheld"
NO_ONLINE = "deployed, no online learning"
PUBLISHED = ("NEWS2>=5", "qSOFA>=2", "SIRS>=2")  # integer scores: no bootstrap needed to rank

Scores = dict[str, tuple[np.ndarray, float]]


def _warn_dict(w: Warnings) -> dict:
    return {"warned_share": w.warned_share, "median_lead_hours": w.median_lead_hours,
            "late_only_share": w.late_only_share,
            "false_alerts_per_patient_day": w.false_alerts_per_patient_day,
            "false_alerts": w.false_alerts, "false_patient_days": w.false_patient_days,
            # septic patients warned 1, 2, ... 12 h before onset (first alert in the window)
            "lead_hours_counts": np.histogram(w.leads, np.arange(0.5, WARNING_WINDOW_H + 1)
                                              )[0].tolist()}


def _diff(boot: dict[str, dict[str, np.ndarray]], point: dict[str, float], a: str, b: str,
          what: str) -> dict | None:
    if a not in boot or b not in boot:
        return None
    return {"minuend": a, "subtrahend": b, "what": what,
            "auroc": point[a] - point[b],
            "auroc_ci95": interval(boot[a]["auroc"] - boot[b]["auroc"])}


def _differences(boot: dict, point: dict[str, float], deployed: str) -> dict[str, dict]:
    """The paired differences the evaluation is asked about, where both scores exist."""
    pairs = {
        "deployed - LightGBM": (deployed, "gbm", "the deployed stack against the best "
                                "single model"),
        "circuit: quantum - classical ablation": ("hybrid-quantum", "hybrid-classical",
                                                  "the circuit against a same-size dense layer"),
        "the circuit in the deployed stack": (
            deployed, "deployed, without the circuit",
            "the deployed stack against the same stack refitted without the circuit"),
        "the circuit vs a classical layer in the stack": (
            deployed, "deployed, classical layer for the circuit",
            "the deployed stack against the same stack with the same-size classical layer"),
        "online learning, today's replay": (deployed, NO_ONLINE, "all online learning as "
                                            "replayed today"),
        "online learning from other patients (unit adaptation)": (
            f"deployed, {ONLINE_WITHHELD}", NO_ONLINE, "own labels withheld vs none"),
        "online learning from the same patient": (
            deployed, f"deployed, {ONLINE_WITHHELD}", "today's replay vs own labels withheld"),
        "online learning in event time (the stream)": (
            f"deployed, {ONLINE_EVENT_TIME}", NO_ONLINE, "stream-like replay vs none"),
        "event time, from other patients": (
            f"deployed, {ONLINE_EVENT_TIME_WITHHELD}", NO_ONLINE, "own labels withheld vs none"),
        "event time, from the same patient": (
            f"deployed, {ONLINE_EVENT_TIME}", f"deployed, {ONLINE_EVENT_TIME_WITHHELD}",
            "event time vs event time with own labels withheld"),
    }
    out = {}
    for key, (a, b, what) in pairs.items():
        d = _diff(boot, point, a, b, what)
        if d is not None:
            out[key] = d
    return out


def pre_onset_report(y: np.ndarray, hours: np.ndarray, patient: np.ndarray, risks: Scores,
                     variants: Scores, lifecycle: dict[str, tuple[np.ndarray, np.ndarray]], *,
                     deployed: str, resamples: int = 300, seed: int = 42) -> dict:
    """Every scorer judged before onset, the lifecycle's warnings, the online gain split.

    ``risks`` are the report's scorers, ``variants`` the online replays of
    :func:`vigil.evaluation.run._online_variants` (named "deployed, <mode>" and "online
    River, <mode>"), ``lifecycle`` the (pages, active) rows of the scores replayed through
    the alert lifecycle. Intervals: patient-level bootstrap, ``resamples`` draws, ``seed``.
    """
    pre = pre_onset_rows(y, hours, patient)
    scores = {**risks, **variants}
    out: dict = {
        "definition": {
            "onset": "first positive SepsisLabel hour + 6 h (labels are shifted 6 h before "
                     "clinical onset: Reyna et al., Crit Care Med 2020;48:210-217)",
            "rows": "septic patients' hours strictly before onset, every hour of the others",
            "warned": f"an alert active at an hour in [onset - {WARNING_WINDOW_H:g} h, onset)",
            "lead_time": "onset - the first alert hour in that window",
            "false_alerts": "alert starts in non-septic patients and in septic patients before "
                            f"onset - {WARNING_WINDOW_H:g} h, per patient-day of those hours "
                            "(raw threshold: rising edges; lifecycle: raises and escalations)",
            "no_warning": NO_WARNING_NOTE,
        },
        "rows": int(pre.sum()), "positive_rows": int(y[pre].sum()),
        "patients": int(len(np.unique(patient))),
        "septic_patients": int(len(np.unique(patient[np.asarray(y).astype(bool)]))),
        "bootstrap": {"resamples": resamples, "seed": seed, "unit": "patient",
                      "stratified_by": "septic status", "interval": "percentile 95%"},
    }
    scorers: dict[str, dict] = {}
    for name, (risk, threshold) in scores.items():
        active = risk >= threshold
        w = warned_before_onset(y, hours, patient, active, rising_by_patient(active, patient))
        scorers[name] = {"auroc": auroc(y[pre], risk[pre]), "auprc": auprc(y[pre], risk[pre]),
                         "all_hours_auroc": auroc(y, risk), "all_hours_auprc": auprc(y, risk),
                         "threshold": float(threshold), **_warn_dict(w)}
    ranked = [n for n in scores if n not in PUBLISHED]
    boot = bootstrap_ranking(y[pre], {n: scores[n][0][pre] for n in ranked}, patient[pre],
                             resamples=resamples, seed=seed)
    for n in ranked:
        scorers[n]["auroc_ci95"] = interval(boot[n]["auroc"])
        scorers[n]["auprc_ci95"] = interval(boot[n]["auprc"])
    out["scorers"] = scorers
    out["lifecycle"] = {}
    for name, (pages, active) in lifecycle.items():
        w = warned_before_onset(y, hours, patient, active, pages)
        out["lifecycle"][name] = _warn_dict(w)
    point = {n: scorers[n]["auroc"] for n in ranked}
    out["differences"] = _differences(boot, point, deployed)
    online = [n for n in ranked if n.startswith(("deployed", "online River"))]
    boot_all = bootstrap_ranking(y, {n: scores[n][0] for n in online}, patient,
                                 resamples=resamples, seed=seed)
    point_all = {n: scorers[n]["all_hours_auroc"] for n in online}
    out["online_learning"] = {
        "note": "Pre-onset rows never include a septic patient's hours from onset on, so what "
                "the model learned from that patient's positive labels after diagnosis cannot "
                "earn credit there; the all-hours figures still include it.",
        "pre_onset": _differences({n: boot[n] for n in online}, point, deployed),
        "all_hours": _differences(boot_all, point_all, deployed),
    }
    for n in online:
        scorers[n]["all_hours_auroc_ci95"] = interval(boot_all[n]["auroc"])
    return out


def _regions(y: np.ndarray, hours: np.ndarray, code: np.ndarray, n_patients: int,
             window_h: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What does not depend on the score (as warned_before_onset, rows by patient, then
    hour): the warning-window rows, the false-alert region's rows, per patient whether
    septic and the hours of its false-alert region."""
    onset = onset_hours(y, hours, code)
    septic_rows = ~np.isnan(onset)
    in_window = septic_rows & (hours >= onset - window_h) & (hours < onset)
    false_region = ~septic_rows | (hours < onset - window_h)
    septic = np.zeros(n_patients, bool)
    np.logical_or.at(septic, code, septic_rows)
    false_hours = np.bincount(code[false_region], minlength=n_patients).astype(np.float64)
    return in_window, false_region, septic, false_hours


def _curves(code: np.ndarray, n_patients: int, risk: np.ndarray, thresholds: np.ndarray,
            in_window: np.ndarray, false_region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per threshold and patient: warned before onset (0/1), raw false alert starts."""
    best = np.full(n_patients, -np.inf)
    np.maximum.at(best, code[in_window], risk[in_window])
    warned = (best[None, :] >= thresholds[:, None]).astype(np.float64)  # (T, P)
    # a start at row i for threshold t: risk_i >= t and the patient's previous risk < t
    prev = np.r_[-np.inf, risk[:-1]]
    prev[np.r_[True, np.diff(code) != 0]] = -np.inf
    rows = np.flatnonzero(false_region & (risk > prev))
    lo = np.searchsorted(thresholds, prev[rows], side="right")  # first t > prev
    hi = np.searchsorted(thresholds, risk[rows], side="right")  # first t > risk
    steps = np.zeros((len(thresholds) + 1, n_patients))
    np.add.at(steps, (lo, code[rows]), 1.0)
    np.add.at(steps, (hi, code[rows]), -1.0)
    return warned, np.cumsum(steps, axis=0)[:-1]  # (T, P) each


def matched_burden(y: np.ndarray, hours: np.ndarray, patient: np.ndarray,
                   scores: dict[str, np.ndarray], *, burdens: tuple[float, ...] = (0.5, 0.7, 1.0),
                   reference: str, resamples: int = 300, seed: int = 42,
                   window_h: float = WARNING_WINDOW_H, n_thresholds: int = 800) -> dict:
    """Septic patients warned before onset at a matched false-alert burden, per scorer.

    Comparing each score at its own shipped threshold compares two points at different
    alert rates. Here every score's threshold is set so that its raw false alerts per
    patient-day before onset stay within each burden in ``burdens`` (the best such
    threshold), on the evaluated data itself: a comparison of the curves at equal alert
    burden (like sensitivity at matched specificity), not a way to choose deployed levels.
    The differences to ``reference`` are paired on the same patient-level bootstrap
    resamples (within septic / non-septic), the threshold chosen again in each resample."""
    y = np.asarray(y).astype(bool)
    hours = np.asarray(hours, np.float64)
    uniq, code = np.unique(patient, return_inverse=True)
    P = len(uniq)
    ones = np.ones((1, P))
    sept_any = np.zeros(P, bool)
    np.logical_or.at(sept_any, code, y)
    counts = _resample_counts(code, sept_any, resamples, seed).astype(np.float64)
    weights = np.vstack([ones, counts])  # row 0: the data as it is
    in_window, false_region, septic, false_hours = _regions(y, hours, code, P, window_h)
    best: dict[str, np.ndarray] = {}  # name -> (1 + resamples, len(burdens))
    for name, risk in scores.items():
        risk = np.asarray(risk, np.float64)
        values = np.unique(risk)  # every distinct value when few, else a grid by rank,
        # finest in the top tail where alert burdens of ~1 a patient-day live
        thresholds = values if len(values) <= n_thresholds else np.unique(np.quantile(
            risk, 1.0 - np.geomspace(0.5, 1e-6, n_thresholds)))
        warned, starts = _curves(code, P, risk, thresholds, in_window, false_region)
        share = (weights * septic) @ warned.T / (weights @ septic)[:, None]  # (R, T)
        burden = weights @ starts.T / (weights @ false_hours / 24.0)[:, None]
        best[name] = np.stack([np.where(burden <= b, share, 0.0).max(axis=1) for b in burdens],
                              axis=1)
    out: dict = {"burdens_per_patient_day": list(burdens), "reference": reference,
                 "bootstrap": {"resamples": resamples, "seed": seed}, "scorers": {}}
    for name, b in best.items():
        row: dict = {"warned_share": [float(v) for v in b[0]]}
        if name != reference:
            d = b - best[reference]
            row["difference_to_reference"] = [float(v) for v in d[0]]
            row["difference_ci95"] = [interval(d[1:, k]) for k in range(len(burdens))]
        out["scorers"][name] = row
    return out

