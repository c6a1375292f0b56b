"""``vigil evaluate``: every sepsis scorer on the same causal feature rows, one report.

Rows come from :func:`vigil.evaluation.data.feature_table`: the stream's own validation,
windows and feature function, one row per ICU hour, each computed only from data up to that
hour. Each scorer turns rows into risks; an alert is risk >= the scorer's threshold
(NEWS2 >= 5, qSOFA >= 2, SIRS >= 2 as published; the models' thresholds from their
artifact, chosen on training patients). The report (``metrics.json``) and PNG plots go to
``--out``.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np

from vigil.evaluation.data import feature_table
from vigil.evaluation.metrics import alert_stats, auprc, auroc, best_threshold
from vigil.models.artifact import ModelArtifact
from vigil.models.clinical import ClinicalInputs, clinical_details
from vigil.models.deployed import DeployedSepsis
from vigil.models.hybrid_scorer import HybridScorer
from vigil.models.online import replay_online
from vigil.settings import VigilSettings
from vigil.stream.offline import FeatureTable

__all__ = ["evaluate_sepsis", "comparator_paths", "AGE_BANDS"]

AGE_BANDS = ((0, 45, "<45"), (45, 65, "45-64"), (65, 80, "65-79"), (80, 200, ">=80"))


def comparator_paths(model_dir: Path) -> dict[str, Path]:
    d = Path(model_dir) / "comparators"
    return {"hybrid-classical": d / "hybrid-classical", "gbm": d / "gbm.txt",
            "thresholds": d / "thresholds.json"}


def _clinical_risks(table: FeatureTable, rows: np.ndarray) -> dict[str, np.ndarray]:
    inputs = ClinicalInputs(table.names)
    out: dict[str, list[np.ndarray]] = {"news2": [], "qsofa": [], "sirs": []}
    for start in range(0, len(rows), 65536):
        d = clinical_details(inputs, table.X[rows[start:start + 65536]].astype(np.float64))
        for k in out:
            out[k].append(d[k])
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}


def evaluate_sepsis(data: Path, out: Path, settings: VigilSettings, model_dir: Path, *,
                    exclude_training: bool = False, progress: bool = True,
                    cache_dir: Path | None = Path(".vigil-cache"), limit: int | None = None,
                    plots: bool = True) -> dict:
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = feature_table(data, settings, limit=limit, cache_dir=cache_dir, progress=progress)
    artifact = ModelArtifact.load(model_dir)
    trained = set(artifact.training_patients)
    overlap = [i for i, sid in enumerate(table.source_ids) if sid in trained]
    notes: list[str] = []
    if overlap:
        msg = (f"{len(overlap)} of {table.n_patients} patients were used to train "
               f"{artifact.name} {artifact.version}; their scores are optimistic")
        if exclude_training:
            msg += " and they are left out (--exclude-training)"
        warnings.warn(msg, stacklevel=1)
        notes.append(msg)
    keep = np.ones(table.n_patients, bool)
    if exclude_training and overlap:
        keep[overlap] = False
    patients = np.flatnonzero(keep)
    rows = np.flatnonzero(np.isin(table.patient, patients))
    y = table.label[rows]
    pat = table.patient[rows]

    clinical = _clinical_risks(table, rows)
    risks: dict[str, tuple[np.ndarray, float]] = {
        "NEWS2>=5": (clinical["news2"] / 20.0, 5 / 20.0),
        "qSOFA>=2": (clinical["qsofa"] / 3.0, 2 / 3.0),
        "SIRS>=2": (clinical["sirs"] / 4.0, 2 / 4.0),
    }
    qnn = HybridScorer(artifact, table.names)
    risks["hybrid-quantum"] = (qnn.risk_batch(table.X[rows]), artifact.levels[0][0])
    paths = comparator_paths(model_dir)
    if paths["hybrid-classical"].exists():
        classical = ModelArtifact.load(paths["hybrid-classical"])
        risks["hybrid-classical"] = (HybridScorer(classical, table.names).risk_batch(table.X[rows]),
                                     classical.levels[0][0])
    if paths["gbm"].exists():
        import lightgbm as lgb

        thresholds = json.loads(paths["thresholds"].read_text()) if paths["thresholds"].exists() else {}
        booster = lgb.Booster(model_file=str(paths["gbm"]))
        risks["gbm"] = (booster.predict(table.X[rows]), float(thresholds.get("gbm", 0.02)))
    deployed = "hybrid-quantum"
    if DeployedSepsis.present(model_dir):
        combo = DeployedSepsis.load(model_dir)
        p_hybrid = risks["hybrid-quantum"][0]
        Z = artifact.normaliser.transform(table.X[rows])
        risks["deployed (hybrid + online)"] = (
            combo.stack(p_hybrid, replay_online(combo.online, Z, y, pat)), combo.levels[0][0])
        risks["deployed, no online learning"] = (
            combo.stack(p_hybrid, combo.online.predict(Z)), combo.levels[0][0])
        deployed = "deployed (hybrid + online)"

    groups = _patient_groups(pat)
    report: dict = {"deployed": deployed, "patients": int(len(patients)), "rows": int(len(rows)),
                    "data": str(data), "model": {"name": artifact.name, "version": artifact.version},
                    "notes": notes, "scorers": {}, "subgroups": {}}
    for name, (risk, threshold) in risks.items():
        stats = alert_stats(y, risk >= threshold, pat, groups)
        report["scorers"][name] = {
            "auroc": auroc(y, risk), "auprc": auprc(y, risk), "threshold": float(threshold),
            **{k: v for k, v in asdict(stats).items() if k != "alert_rows"},
            "alert_hours_fraction": stats.alert_rows,
        }
    report["oracle_threshold_utility"] = {
        name: best_threshold(y, risk, pat)[1] for name, (risk, _) in risks.items()
        if name.startswith(("hybrid", "gbm", "deployed"))}
    report["subgroups"] = _subgroups(table, patients, rows, y, pat, risks)
    report["seconds"] = round(time.perf_counter() - started, 1)
    if plots:
        from vigil.evaluation.plots import write_plots

        report["plots"] = write_plots(out, y, pat, risks, deployed)
    (out / "metrics.json").write_text(json.dumps(_clean(report), indent=1))
    return report


def _patient_groups(pat: np.ndarray) -> list[np.ndarray]:
    bounds = np.flatnonzero(np.diff(pat)) + 1
    return np.split(np.arange(len(pat)), bounds)


def _subgroups(table: FeatureTable, patients: np.ndarray, rows: np.ndarray, y: np.ndarray,
               pat: np.ndarray, risks: dict) -> dict:
    sex = np.array([table.sexes[p] or "unknown" for p in pat])
    age = table.ages[pat]
    unit = np.array([table.units[p] for p in pat])
    band = np.full(len(pat), "unknown", dtype=object)
    for lo, hi, label in AGE_BANDS:
        band[(age >= lo) & (age < hi)] = label
    out: dict = {}
    for dim, values in (("sex", sex), ("age_band", band), ("unit", unit)):
        out[dim] = {}
        for value in sorted(set(values.tolist())):
            m = values == value
            if m.sum() < 50 or y[m].sum() == 0 or y[m].sum() == m.sum():
                continue
            entry: dict = {"patients": int(len(np.unique(pat[m]))), "rows": int(m.sum())}
            for name, (risk, threshold) in risks.items():
                alerts = (risk[m] >= threshold)
                episodes = int(alerts[0]) + int(np.sum(alerts[1:] & ~alerts[:-1]
                                                       & (pat[m][1:] == pat[m][:-1])))
                entry[name] = {"auroc": auroc(y[m], risk[m]),
                               "alerts_per_patient_day": episodes / (m.sum() / 24.0)}
            out[dim][str(value)] = entry
    return out


def _clean(obj):  # type: ignore[no-untyped-def]
    """JSON without NaN (null instead) and with plain floats."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if not np.isfinite(obj) else round(float(obj), 5)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj

