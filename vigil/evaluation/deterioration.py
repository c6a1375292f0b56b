"""``vigil evaluate`` for deterioration: every score per stay on PhysioNet 2012, against death.

No open data set labels cardiac arrest; in-hospital death is the proxy (as NEWS and eCART
were validated), and every figure says so. The rows are the stream's own (one per charted
time, features only from data up to it). What a nurse gets is judged per stay:

* **ranking**: AUROC / AUPRC of each score's *highest value so far* at 12, 24 and 48 h
  after admission and over the stay (the alert a nurse has seen by then), with
  patient-level bootstrap intervals for the deployed score and its comparators;
* **alerting**: each model's levels (chosen on training patients) through the stream's
  alert lifecycle: deaths flagged vs survivors flagged, alert pages per patient-day, hours
  to the first alert; the NEWS2 rule as deployed before (NEWS2 >= 7 or a red parameter) and
  NEWS2 >= 5 beside them;
* **online learning** replayed in event time across overlapping stays, one model per
  vitals partition, each stay's outcome learned at its end as the stream learns it;
* subgroups (unit, sex, age band) and ``scores.csv.gz`` with every scored row.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np

from vigil.alerts.policy import Policy
from vigil.evaluation.data import feature_table
from vigil.evaluation.metrics import auprc, auroc, patient_days, patient_groups
from vigil.evaluation.online_replay import replay_outcomes_event_time, stream_placement
from vigil.evaluation.preonset import bootstrap_ranking, interval, rising_by_patient
from vigil.evaluation.run import (
    AGE_BANDS,
    PROXY_NOTE,
    _clean,
    _lifecycle,
    ablation_risks,
    comparator_risks,
    deployed_name,
    stack_members,
)
from vigil.evaluation.scores import write_scores
from vigil.kinds.deterioration import shipped_model
from vigil.models.artifact import ModelArtifact
from vigil.models.clinical import (
    NEWS2_EMERGENCY,
    NEWS2_MAX,
    NEWS2_URGENT,
    QSOFA_MAX,
    QSOFA_POSITIVE,
    SHOCK_INDEX_SHOCK,
    SIRS_MAX,
    SIRS_POSITIVE,
    ClinicalInputs,
    clinical_details,
)
from vigil.models.deployed import DeployedStack
from vigil.models.hybrid_scorer import HybridScorer
from vigil.settings import VigilSettings
from vigil.stream.offline import FeatureTable
from vigil.stream.replay.physionet2012 import RECORD_HOURS

__all__ = ["HORIZONS_H", "evaluate_deterioration", "highest_so_far"]

HORIZONS_H = (12.0, 24.0, 48.0)  # hours since admission (2012 records end at 48 h)
DEPLOYED = "deployed (hybrid + gbm + online)"  # the shipped stack, as reports name it
NEWS2_RULE = "NEWS2>=7 or red (rule)"


def highest_so_far(risk: np.ndarray, hours: np.ndarray, groups: list[np.ndarray],
                   horizon_h: float | None) -> np.ndarray:
    """Per stay, the highest risk among rows up to ``horizon_h`` (None: the whole stay);
    a stay with no row by then gets its first row's risk (what the nurse sees first).

    >>> g = [np.arange(3), np.arange(3, 5)]
    >>> highest_so_far(np.array([.1, .5, .2, .3, .9]), np.array([1., 13, 30, 2, 20]), g, 12)
    array([0.1, 0.3])
    """
    out = np.empty(len(groups))
    for i, g in enumerate(groups):
        r = risk[g] if horizon_h is None else risk[g][hours[g] <= horizon_h]
        out[i] = np.nanmax(r) if len(r) and not np.all(np.isnan(r)) else risk[g][0]
    return np.nan_to_num(out)


def evaluate_deterioration(data: Path, out: Path, settings: VigilSettings, *,
                           progress: bool = True, cache_dir: Path | None = Path(".vigil-cache"),
                           limit: int | None = None, plots: bool = True,
                           model_dir: Path | None = None, exclude_training: bool = False,
                           bootstrap_resamples: int = 300, stagger_hours: float = 24.0) -> dict:
    """The deterioration scores on the PhysioNet 2012 stays of ``data``, judged per stay
    against in-hospital death; levels from the artifact, never from these patients."""
    started = time.perf_counter()
    model_dir = Path(model_dir) if model_dir is not None else shipped_model()
    if not (model_dir / "artifact.json").exists():
        model_dir = None  # NEWS2 only: the rule the stream falls back to
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = feature_table(data, settings, limit=limit, cache_dir=cache_dir, progress=progress)
    artifact = ModelArtifact.load(model_dir) if model_dir is not None else None
    patients, notes = _stays(table, artifact, data, exclude_training)
    rows = np.flatnonzero(np.isin(table.patient, patients))
    pat, hours, died = table.patient[rows], table.hours[rows], table.label[rows]
    groups = patient_groups(pat)
    y = np.array([died[g[0]] for g in groups])
    risks, levels, rule_alert = _risks(table, rows, artifact, model_dir, settings, stagger_hours)
    deployed = next((n for n in risks if n.startswith("deployed (")),
                    "hybrid-quantum" if "hybrid-quantum" in risks else NEWS2_RULE)
    days = patient_days(hours, groups)
    report: dict = {
        "deployed": deployed, "label": "in-hospital death", "notes": [PROXY_NOTE, *notes],
        "patients": len(groups), "rows": int(len(rows)), "deaths": int(y.sum()),
        "patient_days": round(days, 1), "data": str(data),
        "model": ({"name": artifact.name, "version": artifact.version} if artifact else None),
        "ranking": "AUROC / AUPRC of each score's highest value so far, per stay",
        "scorers": {}}
    tops = {name: {h: highest_so_far(r, hours, groups, h) for h in (*HORIZONS_H, None)}
            for name, (r, _) in risks.items()}
    lifecycle = {name: _lifecycle(risks[name][0], hours, groups,
                                  Policy("deterioration", lv, clear_ratio=settings.alert_clear_ratio),
                                  settings) for name, lv in levels.items()}
    for name in risks:
        m: dict = {}
        for h in HORIZONS_H:
            m[f"auroc_{h:g}h"] = auroc(y, tops[name][h])
        m["auroc"] = auroc(y, tops[name][None])
        m["auprc"] = auprc(y, tops[name][None])
        if name in lifecycle:
            m.update(_alerting(lifecycle[name][0], hours, groups, y, days))
            m["levels"] = [list(lv) for lv in levels[name]]
        elif name == NEWS2_RULE:
            m.update(_alerting(rising_by_patient(rule_alert, pat), hours, groups, y, days))
        report["scorers"][name] = m
    if model_dir is not None and DeployedStack.present(model_dir) and deployed.startswith("deployed ("):
        report["by_alert_rate"] = _by_alert_rate(DeployedStack.load(model_dir),
                                                 risks[deployed][0], hours, groups, y, days,
                                                 settings)
    report["bootstrap"] = _bootstrap(y, {n: tops[n][None] for n in risks}, deployed,
                                     bootstrap_resamples)
    report["subgroups"] = _subgroups(table, groups, pat, y, tops, lifecycle)
    if deployed in lifecycle:
        report["scores_csv"] = write_scores(out / "scores.csv.gz", table, rows, risks,
                                            lifecycle[deployed][2])
    report["seconds"] = round(time.perf_counter() - started, 1)
    if plots:
        report["plots"] = _plots(out, y, tops, report, risks, hours, groups, died, deployed,
                                 lifecycle)
    (out / "metrics.json").write_text(json.dumps(_clean(report), indent=1))
    return report


def _stays(table: FeatureTable, artifact: ModelArtifact | None, data: Path,
           exclude_training: bool) -> tuple[np.ndarray, list[str]]:
    keep = np.array([d == "physionet2012" for d in table.datasets])
    if not keep.any():
        raise SystemExit(f"no PhysioNet 2012 stays in {data}")
    notes: list[str] = []
    if artifact is not None:
        trained = set(artifact.training_patients)
        overlap = [i for i, sid in enumerate(table.source_ids) if keep[i] and sid in trained]
        if overlap:
            msg = (f"{len(overlap)} of {int(keep.sum())} stays were used to train "
                   f"{artifact.name} {artifact.version}; their scores are optimistic")
            if exclude_training:
                msg += " and they are left out (--exclude-training)"
                keep[overlap] = False
            warnings.warn(msg, stacklevel=3)
            notes.append(msg)
    return np.flatnonzero(keep), notes


def _risks(table: FeatureTable, rows: np.ndarray, artifact: ModelArtifact | None,
           model_dir: Path | None, settings: VigilSettings, stagger_hours: float
           ) -> tuple[dict[str, tuple[np.ndarray, float]], dict[str, tuple], np.ndarray]:
    """Every score's risk per row, the levels of those that page through the lifecycle,
    and the old NEWS2 rule's alert per row."""
    d = clinical_details(ClinicalInputs(table.names), table.X[rows].astype(np.float64))
    news2 = d["news2"] / NEWS2_MAX
    risks: dict[str, tuple[np.ndarray, float]] = {
        NEWS2_RULE: (news2, NEWS2_EMERGENCY / NEWS2_MAX),
        "qSOFA": (d["qsofa"] / QSOFA_MAX, QSOFA_POSITIVE / QSOFA_MAX),
        "SIRS": (d["sirs"] / SIRS_MAX, SIRS_POSITIVE / SIRS_MAX),
        "shock index": (np.nan_to_num(d["shock_index"]) / 2, SHOCK_INDEX_SHOCK / 2),
    }
    rule_alert = (d["news2"] >= NEWS2_EMERGENCY) | (d["news2_red"] > 0)
    levels: dict[str, tuple] = {"NEWS2>=5": ((NEWS2_URGENT / NEWS2_MAX, "medium"),
                                             (NEWS2_EMERGENCY / NEWS2_MAX, "high"))}
    risks["NEWS2>=5"] = (news2, NEWS2_URGENT / NEWS2_MAX)
    if artifact is None or model_dir is None:
        return risks, levels, rule_alert
    X = table.X[rows]
    risks["hybrid-quantum"] = (HybridScorer(artifact, table.names).risk_batch(X),
                               artifact.levels[0][0])
    levels["hybrid-quantum"] = tuple(artifact.levels)
    found, found_levels = comparator_risks(model_dir, table, X)
    risks.update(found)
    levels.update(found_levels)
    if not DeployedStack.present(model_dir):
        return risks, levels, rule_alert
    combo = DeployedStack.load(model_dir)
    pat, hours, died = table.patient[rows], table.hours[rows], table.label[rows]
    Z = artifact.normaliser.transform(X)
    admit, partition = stream_placement(table.source_ids, table.datasets,
                                        settings.pseudonym_key.get_secret_value(),
                                        stagger_hours=stagger_hours,
                                        partitions=settings.partitions)
    p_online = replay_outcomes_event_time(combo.online, Z, died, pat, hours, admit, partition,
                                          known_after_h=RECORD_HOURS)
    others = stack_members(combo, risks)
    p_hybrid = risks["hybrid-quantum"][0]
    risks["online River"] = (p_online, 0.5)
    risks[deployed_name(combo)] = (combo.stack(p_hybrid, p_online, others), combo.levels[0][0])
    risks["deployed, no online learning"] = (
        combo.stack(p_hybrid, combo.online.predict(Z), others), combo.levels[0][0])
    for name in (deployed_name(combo), "deployed, no online learning"):
        levels[name] = tuple(combo.levels)
    risks.update(ablation_risks(combo, risks, p_online, others, len(rows)))
    return risks, levels, rule_alert


def _alerting(pages: np.ndarray, hours: np.ndarray, groups: list[np.ndarray], y: np.ndarray,
              days: float) -> dict:
    """Deaths flagged vs survivors flagged, pages per patient-day, hours to first alert."""
    flagged = np.array([pages[g].any() for g in groups])
    first = [float(hours[g][np.argmax(pages[g])]) for g, f, d in zip(groups, flagged, y)
             if f and d]
    return {"deaths_flagged": float(flagged[y == 1].mean()),
            "survivors_flagged": float(flagged[y == 0].mean()),
            "alerts_per_patient_day": float(sum(int(pages[g].sum()) for g in groups) / days),
            "median_hours_to_first_alert_in_deaths": float(np.median(first)) if first else None}


def _by_alert_rate(combo: DeployedStack, risk: np.ndarray, hours: np.ndarray,
                   groups: list[np.ndarray], y: np.ndarray, days: float,
                   settings: VigilSettings) -> list[dict]:
    """What each alert-rate setting (``VIGIL_DETERIORATION_ALERTS_PER_PATIENT_DAY``) gives
    on these stays: its levels (chosen on the training patients) through the lifecycle."""
    out = []
    for entry in combo.rate_levels:
        lv = tuple((float(t), str(sv)) for t, sv in entry["levels"])
        pages = _lifecycle(risk, hours, groups, Policy("deterioration", lv,
                                                       clear_ratio=settings.alert_clear_ratio),
                           settings)[0]
        out.append({"target_alerts_per_patient_day": entry["alerts_per_patient_day"],
                    "medium": lv[0][0], "default": lv == tuple(combo.levels),
                    **_alerting(pages, hours, groups, y, days)})
    return out


def _bootstrap(y: np.ndarray, tops: dict[str, np.ndarray], deployed: str, resamples: int) -> dict:
    """Patient-level bootstrap of the stay AUROC: each score and its paired difference
    from the deployed one (the circuit's ablation among them)."""
    stays = np.arange(len(y))
    boot = bootstrap_ranking(y, tops, stays, resamples=resamples)
    out: dict = {"resamples": resamples, "interval": "percentile 95%",
                 "stratified_by": "outcome", "auroc": {}, "auroc_minus_deployed": {}}
    for name, b in boot.items():
        out["auroc"][name] = interval(b["auroc"])
        if name != deployed:
            diff = b["auroc"] - boot[deployed]["auroc"]
            out["auroc_minus_deployed"][name] = [float(np.mean(diff)), *interval(diff)]
    return out


def _subgroups(table: FeatureTable, groups: list[np.ndarray], pat: np.ndarray, y: np.ndarray,
               tops: dict, lifecycle: dict) -> dict:
    first = np.array([g[0] for g in groups])
    stay = pat[first]
    age = table.ages[stay]
    band = np.full(len(stay), "unknown", dtype=object)
    for lo, hi, label in AGE_BANDS:
        band[(age >= lo) & (age < hi)] = label
    dims = {"unit": np.array([table.units[p] or "unknown" for p in stay], dtype=object),
            "sex": np.array([table.sexes[p] or "unknown" for p in stay], dtype=object),
            "age_band": band}
    out: dict = {}
    for dim, values in dims.items():
        out[dim] = {}
        for value in sorted(set(values.tolist())):
            m = values == value
            if m.sum() < 30 or y[m].sum() == 0 or y[m].all():
                continue
            entry: dict = {"stays": int(m.sum()), "deaths": int(y[m].sum())}
            for name, t in tops.items():
                e = {"auroc": auroc(y[m], t[None][m])}
                if name in lifecycle:
                    flagged = np.array([lifecycle[name][0][g].any() for g in groups])[m]
                    e["deaths_flagged"] = float(flagged[y[m] == 1].mean())
                    e["survivors_flagged"] = float(flagged[y[m] == 0].mean())
                entry[name] = e
            out[dim][str(value)] = entry
    return out


def _plots(out: Path, y: np.ndarray, tops: dict, report: dict, risks: dict, hours: np.ndarray,
           groups: list[np.ndarray], died: np.ndarray, deployed: str, lifecycle: dict
           ) -> list[str]:
    from vigil.evaluation.plots import (
        calibration_plot,
        flagged_plot,
        horizon_plot,
        patient_roc,
        time_to_alert_plot,
    )

    shown = [n for n in (deployed, "gbm", "hybrid-quantum", "hybrid-classical", NEWS2_RULE,
                         "qSOFA") if n in tops]
    files = [patient_roc(out / "deterioration_roc.png", y, {n: tops[n][None] for n in shown},
                         "Highest score in the stay vs in-hospital death (a proxy)"),
             horizon_plot(out / "deterioration_horizons.png", report["scorers"], shown,
                          HORIZONS_H),
             flagged_plot(out / "deterioration_flagged.png", report["scorers"],
                          report.get("by_alert_rate"), deployed)]
    models = {n: risks[n][0] for n in (deployed, "gbm", "hybrid-quantum") if n in risks}
    if models:
        files.append(calibration_plot(out / "deterioration_calibration.png", died, models,
                                      "Risk per row vs in-hospital death"))
        files.append(time_to_alert_plot(out / "deterioration_first_alert.png", {
            n: [float(hours[g][np.argmax(lifecycle[n][0][g])]) for g, d in zip(groups, y)
                if d and lifecycle[n][0][g].any()] for n in lifecycle}))
    return files
