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

from vigil.alerts.policy import Policy
from vigil.evaluation.data import feature_table
from vigil.evaluation.metrics import (
    alert_stats,
    auprc,
    auroc,
    best_threshold,
    episodes,
    patient_groups,
)
from vigil.evaluation.online_replay import (
    replay_online,
    replay_online_event_time,
    replay_online_withheld,
    stream_placement,
)
from vigil.evaluation.preonset import (
    ONLINE_EVENT_TIME,
    ONLINE_EVENT_TIME_WITHHELD,
    ONLINE_WITHHELD,
    pre_onset_report,
)
from vigil.evaluation.scores import write_scores
from vigil.kinds.sepsis import shipped_model
from vigil.models.artifact import ModelArtifact
from vigil.models.clinical import (
    NEWS2_EMERGENCY,
    NEWS2_MAX,
    NEWS2_URGENT,
    QSOFA_MAX,
    QSOFA_POSITIVE,
    SIRS_MAX,
    SIRS_POSITIVE,
    ClinicalInputs,
    clinical_details,
)
from vigil.models.deployed import DeployedSepsis, DeployedStack
from vigil.models.hybrid_scorer import HybridScorer
from vigil.settings import VigilSettings
from vigil.stream.offline import FeatureTable

__all__ = ["AGE_BANDS", "PROXY_NOTE", "ablation_risks", "comparator_paths", "comparator_risks",
           "deployed_name",
           "evaluate_sepsis", "stack_members"]

AGE_BANDS = ((0, 45, "<45"), (45, 65, "45-64"), (65, 80, "65-79"), (80, 200, ">=80"))


def comparator_paths(model_dir: Path) -> dict[str, Path]:
    d = Path(model_dir) / "comparators"
    return {"hybrid-classical": d / "hybrid-classical", "gbm": d / "gbm.txt",
            "thresholds": d / "thresholds.json"}


def comparator_risks(model_dir: Path, table: FeatureTable, X: np.ndarray
                     ) -> tuple[dict[str, tuple[np.ndarray, float]], dict[str, tuple]]:
    """The artifact's comparators on rows ``X``: (risk, alert threshold) and levels of the
    hybrid's classical ablation and of LightGBM, where the artifact has them."""
    risks: dict[str, tuple[np.ndarray, float]] = {}
    levels: dict[str, tuple] = {}
    paths = comparator_paths(model_dir)
    if paths["hybrid-classical"].exists():
        classical = ModelArtifact.load(paths["hybrid-classical"])
        risks["hybrid-classical"] = (HybridScorer(classical, table.names).risk_batch(X),
                                     classical.levels[0][0])
        levels["hybrid-classical"] = tuple(classical.levels)
    if paths["gbm"].exists():
        import lightgbm as lgb

        thresholds = (json.loads(paths["thresholds"].read_text())
                      if paths["thresholds"].exists() else {})
        booster = lgb.Booster(model_file=str(paths["gbm"]))
        risks["gbm"] = (booster.predict(X), float(thresholds.get("gbm", 0.02)))
        levels["gbm"] = ((risks["gbm"][1], "medium"),)
    return risks, levels


def _clinical_risks(table: FeatureTable, rows: np.ndarray) -> dict[str, np.ndarray]:
    inputs = ClinicalInputs(table.names)
    out: dict[str, list[np.ndarray]] = {"news2": [], "qsofa": [], "sirs": []}
    for start in range(0, len(rows), 65536):
        d = clinical_details(inputs, table.X[rows[start:start + 65536]].astype(np.float64))
        for k in out:
            out[k].append(d[k])
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}


def evaluate_sepsis(data: Path, out: Path, settings: VigilSettings,
                    model_dir: Path | None = None, *,
                    exclude_training: bool = False, progress: bool = True,
                    cache_dir: Path | None = Path(".vigil-cache"), limit: int | None = None,
                    plots: bool = True, bootstrap_resamples: int = 300,
                    stagger_hours: float = 24.0) -> dict:
    """Every sepsis scorer on the PhysioNet 2019 stays of ``data``, hour by hour; thresholds
    from the artifact (chosen on training patients), never from these patients.

    Beside the all-hours figures, ``pre_onset`` judges what each score says before sepsis is
    known (:mod:`vigil.evaluation.preonset`), splits the online model's gain by whose labels
    it learned (:mod:`vigil.evaluation.online_replay`; ``stagger_hours`` places the stays
    on the stream's timeline), with patient-level bootstrap intervals; ``scores.csv.gz``
    holds every scored hour so each figure can be recomputed without Vigil.
    """
    started = time.perf_counter()
    model_dir = Path(model_dir) if model_dir is not None else shipped_model()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = feature_table(data, settings, limit=limit, cache_dir=cache_dir, progress=progress)
    artifact = ModelArtifact.load(model_dir)
    patients, notes = _sepsis_patients(table, artifact, data, exclude_training)
    rows = np.flatnonzero(np.isin(table.patient, patients))
    y = table.label[rows]
    pat = table.patient[rows]
    risks, deployed, levels = _sepsis_risks(table, rows, artifact, model_dir)
    groups = patient_groups(pat)
    report: dict = {"deployed": deployed, "patients": int(len(patients)), "rows": int(len(rows)),
                    "data": str(data), "model": {"name": artifact.name, "version": artifact.version},
                    "notes": notes, "scorers": _hourly_scorers(y, pat, groups, risks)}
    report["oracle_threshold_utility"] = {
        name: best_threshold(y, risk, pat)[1] for name, (risk, _) in risks.items()
        if name.startswith(("hybrid", "gbm", "deployed"))}
    report["subgroups"] = _subgroups(table, patients, rows, y, pat, risks)
    hours = table.hours[rows]
    report["alert_burden"] = _burden(settings, y, hours, groups, risks, deployed, levels)
    variants, replay_notes = _online_variants(table, rows, artifact, model_dir, settings,
                                              risks, stagger_hours)
    policies = _policies(settings, deployed, levels, variants)
    lifecycle = {name: _lifecycle({**risks, **variants}[name][0], hours, groups, policy,
                                  settings) for name, policy in policies.items()}
    report["pre_onset"] = pre_onset_report(
        y, hours, pat, risks, variants, {n: (e, a) for n, (e, a, _) in lifecycle.items()},
        deployed=deployed, resamples=bootstrap_resamples)
    report["pre_onset"]["online_learning"]["replays"] = replay_notes
    report["scores_csv"] = write_scores(
        out / "scores.csv.gz", table, rows, {**risks, **variants},
        lifecycle[deployed][2] if deployed in lifecycle else None)
    report["seconds"] = round(time.perf_counter() - started, 1)
    if plots:
        from vigil.evaluation.plots import burden_plot, pre_onset_plot, write_plots

        report["plots"] = write_plots(out, y, pat, risks, deployed) + [
            burden_plot(out / "alert_burden.png", report["alert_burden"]),
            pre_onset_plot(out / "pre_onset.png", report["pre_onset"], deployed)]
    (out / "metrics.json").write_text(json.dumps(_clean(report), indent=1))
    return report


def _sepsis_patients(table: FeatureTable, artifact: ModelArtifact, data: Path,
                     exclude_training: bool) -> tuple[np.ndarray, list[str]]:
    """The 2019 stays to judge (sepsis labels exist only there), and a note when some were
    the artifact's training patients (their scores are optimistic)."""
    trained = set(artifact.training_patients)
    overlap = [i for i, sid in enumerate(table.source_ids) if sid in trained]
    notes: list[str] = []
    if overlap:
        msg = (f"{len(overlap)} of {table.n_patients} patients were used to train "
               f"{artifact.name} {artifact.version}; their scores are optimistic")
        if exclude_training:
            msg += " and they are left out (--exclude-training)"
        warnings.warn(msg, stacklevel=2)
        notes.append(msg)
    keep = np.array([d == "physionet2019" for d in table.datasets])
    if not keep.any():
        raise SystemExit(f"no PhysioNet 2019 stays in {data}")
    if exclude_training and overlap:
        keep[overlap] = False
    return np.flatnonzero(keep), notes


def _sepsis_risks(table: FeatureTable, rows: np.ndarray, artifact: ModelArtifact,
                  model_dir: Path) -> tuple[dict[str, tuple[np.ndarray, float]], str,
                                            tuple[tuple[float, str], ...]]:
    """(risk, alert threshold) of every scorer on ``rows``: the published scores, the hybrid,
    its comparators, the online model replayed causally and the deployed stack; and which
    one is deployed, with its levels."""
    y, pat = table.label[rows], table.patient[rows]
    clinical = _clinical_risks(table, rows)
    risks: dict[str, tuple[np.ndarray, float]] = {
        "NEWS2>=5": (clinical["news2"] / NEWS2_MAX, NEWS2_URGENT / NEWS2_MAX),
        "qSOFA>=2": (clinical["qsofa"] / QSOFA_MAX, QSOFA_POSITIVE / QSOFA_MAX),
        "SIRS>=2": (clinical["sirs"] / SIRS_MAX, SIRS_POSITIVE / SIRS_MAX),
    }
    qnn = HybridScorer(artifact, table.names)
    risks["hybrid-quantum"] = (qnn.risk_batch(table.X[rows]), artifact.levels[0][0])
    found, _ = comparator_risks(model_dir, table, table.X[rows])
    risks.update(found)
    if not DeployedSepsis.present(model_dir):
        return risks, "hybrid-quantum", tuple(artifact.levels)
    combo = DeployedSepsis.load(model_dir)
    p_hybrid = risks["hybrid-quantum"][0]
    others = stack_members(combo, risks)
    Z = artifact.normaliser.transform(table.X[rows])
    p_online = replay_online(combo.online, Z, y, pat)
    if "online_threshold" in combo.metrics:
        risks["online River"] = (p_online, float(combo.metrics["online_threshold"]))
    deployed = deployed_name(combo)
    risks[deployed] = (combo.stack(p_hybrid, p_online, others), combo.levels[0][0])
    risks["deployed, no online learning"] = (
        combo.stack(p_hybrid, combo.online.predict(Z), others), combo.levels[0][0])
    risks.update(ablation_risks(combo, risks, p_online, others, len(rows)))
    return risks, deployed, tuple(combo.levels)


def deployed_name(combo: DeployedStack) -> str:
    """The deployed stack as reports name it: ``"deployed (hybrid + gbm + online)"``."""
    return f"deployed ({' + '.join(['hybrid', *(n for n, _ in combo.stack.members), 'online'])})"


def stack_members(combo: DeployedStack, risks: dict[str, tuple[np.ndarray, float]]
                  ) -> dict[str, np.ndarray]:
    """The risks of the stack's other fixed members, from the comparators scored beside it."""
    missing = [n for n, _ in combo.stack.members if n not in risks]
    if missing:
        raise ValueError(f"the deployed stack needs {missing}: its comparators are missing")
    return {n: risks[n][0] for n, _ in combo.stack.members}


def ablation_risks(combo: DeployedStack, risks: dict[str, tuple[np.ndarray, float]],
                   p_online: np.ndarray, others: dict[str, np.ndarray], n: int
                   ) -> dict[str, tuple[np.ndarray, float]]:
    """The stack refitted without the circuit, or with its classical ablation in its place
    (fitted at training time on the same validation rows): what the circuit adds."""
    out = {}
    for name, stack in combo.ablations.items():
        if name.startswith("classical"):
            if "hybrid-classical" not in risks:
                continue
            p_fixed = risks["hybrid-classical"][0]
        else:
            p_fixed = np.full(n, 0.5)
        out[f"deployed, {name}"] = (stack(p_fixed, p_online, others), combo.levels[0][0])
    return out


def _online_variants(table: FeatureTable, rows: np.ndarray, artifact: ModelArtifact,
                     model_dir: Path, settings: VigilSettings,
                     risks: dict[str, tuple[np.ndarray, float]], stagger_hours: float
                     ) -> tuple[dict[str, tuple[np.ndarray, float]], dict[str, str]]:
    """The online model (and the deployed stack over it) replayed with other label flows.

    Today's replay (patients one after another, a stay's own labels learned 6 h after each
    hour) is ``risks["online River"]``; here the same warm start learns (a) with each
    stay's own labels withheld until it ends, (b) in event time across the stays as the
    stream's timeline overlaps them, one model per vitals partition, and (c) both. The gap
    between today's replay and (a) is what it learned from the same patient; the gap
    between (a) and no online learning is adaptation to the unit.
    """
    if not DeployedSepsis.present(model_dir):
        return {}, {}
    combo = DeployedSepsis.load(model_dir)
    y, pat, hours = table.label[rows], table.patient[rows], table.hours[rows]
    Z = artifact.normaliser.transform(table.X[rows])
    p_hybrid = risks["hybrid-quantum"][0]
    others = stack_members(combo, risks)
    online_t = float(combo.metrics.get("online_threshold", np.nan))
    admit, partition = stream_placement(table.source_ids, table.datasets,
                                        settings.pseudonym_key.get_secret_value(),
                                        stagger_hours=stagger_hours,
                                        partitions=settings.partitions)
    replays = {
        ONLINE_WITHHELD: replay_online_withheld(combo.online, Z, y, pat),
        ONLINE_EVENT_TIME: replay_online_event_time(combo.online, Z, y, pat, hours, admit,
                                                    partition=partition),
        ONLINE_EVENT_TIME_WITHHELD: replay_online_event_time(
            combo.online, Z, y, pat, hours, admit, partition=partition, withhold_own=True),
    }
    out: dict[str, tuple[np.ndarray, float]] = {}
    for mode, p_online in replays.items():
        out[f"online River, {mode}"] = (p_online, online_t)
        out[f"deployed, {mode}"] = (combo.stack(p_hybrid, p_online, others), combo.levels[0][0])
    notes = {
        "today": "patients one after another; each hour's label learned 6 h after the hour, "
                 "the rest at the end of the stay (vigil.models.online.replay_online)",
        ONLINE_WITHHELD: "patients one after another; a stay's own labels learned only after "
                         "its last hour: it learns from other patients only",
        ONLINE_EVENT_TIME: f"stays interleaved in event time (Timeline admission stagger "
                           f"{stagger_hours:g} h), one model per vitals partition "
                           f"({settings.partitions}), each label learned when the replay's "
                           "labels topic delivers it (negative hours 6 h later, positive "
                           "hours at onset, never after the stay's end)",
        ONLINE_EVENT_TIME_WITHHELD: "as event time, with a stay's own labels learned only "
                                    "after its last hour",
    }
    return out, notes


def _policies(settings: VigilSettings, deployed: str, levels: tuple[tuple[float, str], ...],
              variants: dict) -> dict[str, Policy]:
    """Alert policies replayed through the lifecycle for the pre-onset figures: the deployed
    score and its online-learning variants with the deployed levels (what nurses would be
    paged by under each label flow), NEWS2 >= 5 with its published levels."""
    ratio = settings.alert_clear_ratio
    names = [deployed]
    if variants:
        names += ["deployed, no online learning", *(n for n in variants if n.startswith("deployed"))]
    out = {n: Policy("sepsis", tuple(levels), clear_ratio=ratio) for n in names}
    out["NEWS2>=5"] = Policy("sepsis", ((NEWS2_URGENT / NEWS2_MAX, "medium"),
                                        (NEWS2_EMERGENCY / NEWS2_MAX, "high")), clear_ratio=ratio)
    return out


def _lifecycle(risk: np.ndarray, hours: np.ndarray, groups: list[np.ndarray], policy: Policy,
               settings: VigilSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(alert pages, active, severity) per row: the stream's lifecycle over each patient."""
    from vigil.evaluation.burden import policy_states
    from vigil.kinds import rules_from as alert_rules

    rules = alert_rules(settings)
    events = np.zeros(len(risk), bool)
    active = np.zeros(len(risk), bool)
    severity = np.full(len(risk), "", dtype=object)
    for g in groups:
        events[g], active[g], severity[g] = policy_states(risk[g], hours[g], policy, rules)
    return events, active, severity


def _hourly_scorers(y: np.ndarray, pat: np.ndarray, groups: list[np.ndarray],
                    risks: dict[str, tuple[np.ndarray, float]]) -> dict[str, dict]:
    """Ranking and alerting figures of each scorer over the hours."""
    out = {}
    for name, (risk, threshold) in risks.items():
        stats = alert_stats(y, risk >= threshold, pat, groups)
        out[name] = {
            "auroc": auroc(y, risk), "auprc": auprc(y, risk), "threshold": float(threshold),
            **{k: v for k, v in asdict(stats).items() if k != "alert_rows"},
            "alert_hours_fraction": stats.alert_rows,
        }
    return out


PROXY_NOTE = ("In-hospital death is a proxy for deterioration / cardiac arrest: no open data "
              "set labels arrest. Scores are judged on whether they flagged patients who later "
              "died, as NEWS and eCART were validated.")


def _burden(settings: VigilSettings, y: np.ndarray, hours: np.ndarray, groups: list[np.ndarray],
            risks: dict[str, tuple[np.ndarray, float]], deployed: str,
            levels: tuple[tuple[float, str], ...]) -> dict[str, dict]:
    """The lifecycle's effect on what nurses receive (see :mod:`vigil.evaluation.burden`)."""
    from vigil.alerts.policy import Policy
    from vigil.evaluation.burden import burden_table
    from vigil.kinds import rules_from as alert_rules

    ratio = settings.alert_clear_ratio
    scores = {deployed: (risks[deployed][0], Policy("sepsis", tuple(levels), clear_ratio=ratio)),
              "NEWS2>=5": (risks["NEWS2>=5"][0],
                           Policy("sepsis", ((NEWS2_URGENT / NEWS2_MAX, "medium"),
                                             (NEWS2_EMERGENCY / NEWS2_MAX, "high")),
                                  clear_ratio=ratio))}
    return burden_table(y, hours, groups, scores, alert_rules(settings))


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
                n_episodes = episodes(alerts, patient_groups(pat[m]))
                entry[name] = {"auroc": auroc(y[m], risk[m]),
                               "alerts_per_patient_day": n_episodes / (m.sum() / 24.0)}
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

