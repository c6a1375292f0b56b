"""The evaluation's pictures: ROC, precision-recall, calibration, lead time, utility curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vigil.evaluation.metrics import (
    best_threshold,
    patient_groups,
    pr_curve,
    roc_curve,
    warning_hours,
)
from vigil.models.utility import normalized_utility

__all__ = ["burden_plot", "calibration_plot", "flagged_plot", "horizon_plot", "patient_roc",
           "pre_onset_plot", "time_to_alert_plot", "write_plots"]


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(out: Path, y: np.ndarray, pat: np.ndarray, risks: dict, deployed: str) -> list[str]:
    plt = _plt()
    out = Path(out)
    files: list[str] = []

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, (risk, _) in risks.items():
        fpr, tpr, _ = roc_curve(y, risk)
        ax.plot(fpr, tpr, lw=2 if name == deployed else 1, label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate (hours)", ylabel="true positive rate (hours)",
           title="ROC, hourly sepsis risk")
    ax.legend(fontsize=8, loc="lower right")
    files.append(_save(fig, out / "roc.png"))

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, (risk, _) in risks.items():
        recall, precision = pr_curve(y, risk)
        ax.plot(recall, precision, lw=2 if name == deployed else 1, label=name)
    ax.axhline(y.mean(), color="k", ls=":", lw=0.8)
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall, hourly", ylim=(0, 0.5))
    ax.legend(fontsize=8, loc="upper right")
    files.append(_save(fig, out / "precision_recall.png"))

    risk, threshold = risks[deployed]
    fig, ax = plt.subplots(figsize=(5, 5))
    bins = np.quantile(risk, np.linspace(0, 1, 11))
    idx = np.clip(np.searchsorted(bins, risk, side="right") - 1, 0, 9)
    pred = [risk[idx == b].mean() for b in range(10) if np.any(idx == b)]
    obs = [y[idx == b].mean() for b in range(10) if np.any(idx == b)]
    ax.plot(pred, obs, "o-", label=deployed)
    lim = max(max(pred), max(obs)) * 1.1
    ax.plot([0, lim], [0, lim], "k:", lw=0.8)
    ax.set(xlabel="predicted risk (decile mean)", ylabel="observed positive hours",
           title="Calibration (deciles of risk)")
    ax.legend(fontsize=8)
    files.append(_save(fig, out / "calibration.png"))

    groups = patient_groups(pat)
    leads = []
    for g in groups:
        lab = y[g]
        if not lab.any():
            continue
        lead = warning_hours(lab, risk[g] >= threshold)
        if lead is not None:
            leads.append(lead)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(leads, bins=np.arange(-3, 26, 1), color="tab:blue")
    ax.set(xlabel="hours of warning: first alert in the 24 h before onset",
           ylabel="septic patients", title=f"Warning time, {deployed}")
    files.append(_save(fig, out / "lead_time.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    labels_by = [y[g] for g in groups]
    cands = np.quantile(risk, np.linspace(0.3, 0.995, 40))
    us = [normalized_utility(labels_by, [risk[g] >= c for g in groups]) for c in cands]
    ax.plot(cands, us, "-", label=deployed)
    ax.axvline(threshold, color="tab:red", ls="--", lw=1, label="deployed threshold")
    best, _ = best_threshold(y, risk, pat, candidates=cands)
    ax.axvline(best, color="tab:green", ls=":", lw=1, label="best on this data")
    ax.set(xlabel="risk threshold", ylabel="normalised utility", xscale="log",
           title="PhysioNet 2019 utility vs threshold")
    ax.legend(fontsize=8)
    files.append(_save(fig, out / "utility_vs_threshold.png"))
    return files


def _save(fig, path: Path) -> str:  # type: ignore[no-untyped-def]
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path.name


def patient_roc(path: Path, y: np.ndarray, scores: dict[str, np.ndarray], title: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, lw=1.5, label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate (patients)", ylabel="true positive rate (patients)",
           title=title)
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, Path(path))


def burden_plot(path: Path, burden: dict[str, dict[str, dict]]) -> str:
    """Alerts per patient-day by mode (every hour / crossings / full policy), per score,
    with the sensitivity each reaches written on its bar."""
    plt = _plt()
    names = list(burden)
    modes = list(next(iter(burden.values())))
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(modes)
    for j, mode in enumerate(modes):
        xs = np.arange(len(names)) + (j - (len(modes) - 1) / 2) * width
        vals = [burden[n][mode]["alerts_per_patient_day"] for n in names]
        bars = ax.bar(xs, vals, width, label=mode)
        for b, n in zip(bars, names):
            ax.annotate(f"sens {burden[n][mode]['sensitivity']:.2f}",
                        (b.get_x() + b.get_width() / 2, b.get_height()), ha="center",
                        va="bottom", fontsize=7)
    ax.set_xticks(np.arange(len(names)), names)
    ax.set(ylabel="alerts per patient-day",
           title="Alert burden: raw threshold vs the alert lifecycle (held-out patients)")
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, Path(path))


def pre_onset_plot(path: Path, section: dict, deployed: str) -> str:
    """Before onset only: septic patients warned in the 12 h before onset against false
    alerts per patient-day (each scorer at its threshold, and the deployed score and NEWS2
    through the lifecycle), and the lead time of the deployed score's warnings."""
    plt = _plt()
    fig, (ax, hx) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    shown = [n for n in section["scorers"] if not n.startswith("online River, ")
             and not n.endswith("own labels withheld")]
    markers = "os^vD<>pPX*h"
    for j, name in enumerate(shown):
        m = section["scorers"][name]
        x, yv = m["false_alerts_per_patient_day"], m["warned_share"]
        if x is None or yv is None or not np.isfinite(x):
            continue
        ax.scatter([x], [yv], s=60 if name == deployed else 30, marker=markers[j % len(markers)],
                   label=f"{name} (threshold)")
    for name, edge in ((deployed, "k"), ("NEWS2>=5", "tab:blue"),
                       ("deployed, event time", "tab:cyan")):
        m = section["lifecycle"].get(name)
        if m:
            ax.scatter([m["false_alerts_per_patient_day"]], [m["warned_share"]], marker="s",
                       s=55, facecolors="none", edgecolors=edge, linewidths=1.5,
                       label=f"{name} (lifecycle)")
    ax.set(xlabel="false alerts per patient-day before onset",
           ylabel="septic patients warned in [onset - 12 h, onset)",
           title="Before onset: warnings vs false alerts (alerts after onset warn of nothing)",
           ylim=(0, 1.02))
    ax.title.set_fontsize(9)
    ax.legend(fontsize=6.5, loc="lower right")
    counts = {f"{deployed}, lifecycle": section["lifecycle"].get(deployed, {}).get(
        "lead_hours_counts"), deployed: section["scorers"][deployed]["lead_hours_counts"]}
    if "gbm" in section["scorers"]:
        counts["gbm"] = section["scorers"]["gbm"]["lead_hours_counts"]
    width = 0.8 / len(counts)
    for j, (name, c) in enumerate(counts.items()):
        if not c:
            continue
        xs = np.arange(1, len(c) + 1) + (j - (len(counts) - 1) / 2) * width
        hx.bar(xs, c, width, label=name)
    hx.set(xlabel="hours of warning before onset (12: in alert when the window opens)",
           ylabel="septic patients", title="Lead time before onset")
    hx.title.set_fontsize(9)
    hx.legend(fontsize=7, loc="upper left")
    return _save(fig, Path(path))


def calibration_plot(path: Path, y: np.ndarray, risks: dict[str, np.ndarray], title: str) -> str:
    """Observed outcome rate against the mean predicted risk, by decile of each risk."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    lim = 0.0
    for name, risk in risks.items():
        bins = np.quantile(risk, np.linspace(0, 1, 11))
        idx = np.clip(np.searchsorted(bins, risk, side="right") - 1, 0, 9)
        pred = [risk[idx == b].mean() for b in range(10) if np.any(idx == b)]
        obs = [y[idx == b].mean() for b in range(10) if np.any(idx == b)]
        ax.plot(pred, obs, "o-", ms=3, label=name)
        lim = max(lim, max(pred), max(obs))
    ax.plot([0, lim * 1.1], [0, lim * 1.1], "k:", lw=0.8)
    ax.set(xlabel="predicted risk (decile mean)", ylabel="observed rate", title=title)
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    return _save(fig, Path(path))


def horizon_plot(path: Path, scorers: dict[str, dict], names: list[str],
                 horizons: tuple[float, ...]) -> str:
    """Stay AUROC of the highest score so far, by hours since admission."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in names:
        ax.plot(horizons, [scorers[name][f"auroc_{h:g}h"] for h in horizons], "o-", label=name)
    ax.set(xlabel="hours since ICU admission", ylabel="AUROC (stays)", xticks=horizons,
           title="Highest score so far vs in-hospital death (a proxy)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    return _save(fig, Path(path))


def flagged_plot(path: Path, scorers: dict[str, dict], curve: list[dict] | None = None,
                 curve_name: str = "") -> str:
    """Deaths flagged against survivors flagged (each score at its levels, through the
    lifecycle), with the deployed score's trade-off over its alert-rate settings."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    if curve:
        pts = sorted((e["survivors_flagged"], e["deaths_flagged"]) for e in curve)
        ax.plot(*zip(*pts), "-", color="0.6", lw=1, zorder=1,
                label=f"{curve_name} at other alert-rate settings")
    markers = "osD^vP*Xh"
    for i, (name, m) in enumerate((n, m) for n, m in scorers.items() if "deaths_flagged" in m):
        ax.scatter(m["survivors_flagged"], m["deaths_flagged"], s=40, zorder=2,
                   marker=markers[i % len(markers)],
                   label=f"{name}: {m['alerts_per_patient_day']:.2f} pages/patient-day")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.axvline(0.5, color="tab:red", ls="--", lw=0.8)
    ax.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="survivors flagged (any alert)",
           ylabel="deaths flagged (any alert)",
           title="Who gets an alert in 48 h: deaths vs survivors (a proxy label)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, Path(path))


def time_to_alert_plot(path: Path, first_alert_h: dict[str, list[float]]) -> str:
    """Hours since admission of the first alert, in stays that ended in death."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, hours in first_alert_h.items():
        if hours:
            ax.hist(hours, bins=np.arange(0, 49, 2), histtype="step", lw=1.5, label=name)
    ax.set(xlabel="hours since admission of the first alert", ylabel="deaths",
           title="When deaths were first flagged")
    ax.legend(fontsize=7)
    return _save(fig, Path(path))
