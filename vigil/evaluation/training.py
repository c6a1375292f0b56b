"""``vigil train``: a kind's models on its data set, one split, one seed, one report.

The recipe is the kind's :class:`~vigil.kinds.base.Training` (sepsis on PhysioNet 2019,
deterioration on PhysioNet 2012 with in-hospital death as a proxy label). Patients (never
rows) are split 80/20 into training and held-out test, stratified by whether their label is
ever positive (seed 42); the training patients are split again 80/20 into fit and validation
(seed 43). Every model sees the same rows and features:

* the hybrid quantum model (what the stream deploys), trained on the fit rows, epoch chosen
  on validation (PhysioNet utility for sepsis, AUROC for deterioration), Platt-calibrated;
* its ablation with the circuit replaced by a classical layer of the same parameter count;
* LightGBM on the raw features;
* the online River model warm-started on the fit rows, and the deployed stack of the hybrid,
  River and the kind's other members (LightGBM), fitted on validation (sepsis: on the
  hours before onset).

The artifact records the training and validation patients, so ``vigil evaluate`` can warn
when asked to score them; the held-out patients are what evaluation reports on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from vigil.evaluation.burden import levels_at
from vigil.evaluation.data import feature_table
from vigil.evaluation.metrics import (
    auprc,
    auroc,
    best_threshold,
    patient_groups,
    split_by_patient,
)
from vigil.evaluation.preonset import pre_onset_rows
from vigil.evaluation.run import comparator_paths
from vigil.kinds import Training, kind_named
from vigil.models.artifact import ModelArtifact
from vigil.models.calibration import apply_platt, fit_platt
from vigil.models.deployed import DeployedStack, Stack
from vigil.models.gbm import GbmModel
from vigil.models.hybrid import HybridSpec, param_count
from vigil.models.online import OnlineModel
from vigil.models.preprocess import Normaliser
from vigil.models.train import TrainConfig, fit_hybrid, predict_logits
from vigil.settings import VigilSettings
from vigil.stream.offline import FeatureTable

__all__ = ["Split", "patient_split", "run_training", "CITATION_2019", "recipe"]


def recipe(kind: str) -> Training:
    """The training recipe of the registered kind ``kind``."""
    training = kind_named(kind).training
    if training is None:
        raise ValueError(f"alert kind {kind!r} is not trained (a published rule)")
    return training


CITATION_2019 = recipe("sepsis").citation


class Split:
    """Patient indices of a feature table: fit / validation / test."""

    def __init__(self, table: FeatureTable, seed: int = 42, test_fraction: float = 0.2,
                 val_fraction: float = 0.2) -> None:
        septic = np.zeros(table.n_patients, bool)
        np.logical_or.at(septic, table.patient, table.label > 0)
        self.septic = septic
        train, self.test = split_by_patient(septic, test_fraction, seed)
        fit, val = split_by_patient(septic[train], val_fraction, seed + 1)
        self.fit, self.val = train[fit], train[val]


def patient_split(table: FeatureTable, seed: int = 42) -> Split:
    return Split(table, seed)


@dataclass
class _Rows:
    """The split's normalised inputs and labels, as every model of a training run sees them."""

    Xf: np.ndarray
    Xv: np.ndarray
    Xt: np.ndarray
    yf: np.ndarray
    yv: np.ndarray
    yt: np.ndarray
    pv: np.ndarray  # validation patients, per row
    hv: np.ndarray  # validation hours since admission, per row
    rf: np.ndarray  # row masks of the split (raw rows for LightGBM)
    rv: np.ndarray
    rt: np.ndarray


@dataclass
class _Task:
    """One training run's recipe with what it needs from settings."""

    kind: str
    training: Training
    settings: VigilSettings

    @property
    def stay_outcome(self) -> bool:
        """The label is the stay's outcome on every row (death), not an onset in time:
        what an AUROC objective means here (the utility needs an onset)."""
        return self.training.objective != "utility"

    def levels(self, y: np.ndarray, hours: np.ndarray, patient: np.ndarray,
               risk: np.ndarray) -> tuple[tuple[tuple[float, str], ...], float, list[dict]]:
        """(levels, medium threshold, levels by alert rate) chosen on validation rows.

        "utility": the PhysioNet 2019 utility's best threshold (no rate levels computed);
        "auroc": the levels of the recipe's alert-rate target under the full lifecycle.
        """
        if self.training.objective == "utility":
            threshold, _ = best_threshold(y, risk, patient)
            return levels_at(risk, threshold), threshold, []
        rate_levels = _rate_levels(self.settings, y, hours, patient, risk,
                                   stay_outcome=self.stay_outcome)
        target = self.training.alerts_per_patient_day
        fitting = [e for e in rate_levels if e["alerts_per_patient_day"] <= (target or 0)]
        entry = (max(fitting, key=lambda e: e["alerts_per_patient_day"]) if fitting
                 else min(rate_levels, key=lambda e: e["alerts_per_patient_day"]))
        levels = tuple((float(t), str(sv)) for t, sv in entry["levels"])
        return levels, levels[0][0], rate_levels


def run_training(data: Path, out: Path, settings: VigilSettings, *, kind: str = "sepsis",
                 config: TrainConfig | None = None, spec_overrides: dict | None = None,
                 limit: int | None = None, progress: bool = True,
                 cache_dir: Path | None = Path(".vigil-cache"), with_comparators: bool = True) -> dict:
    """Train ``kind``'s hybrid (and its same-size classical ablation and LightGBM), stack it
    with the warm-started online model, and write the versioned artifact to ``out``."""
    config = config or TrainConfig()
    task = _Task(kind, recipe(kind), settings)
    if "gbm" in task.training.stack and not with_comparators:
        raise ValueError(f"{kind}'s deployed stack holds LightGBM: train it with comparators")
    started = time.perf_counter()
    Path(out).mkdir(parents=True, exist_ok=True)
    table = feature_table(data, settings, limit=limit, cache_dir=cache_dir, progress=progress)
    wrong = {ds for ds in table.datasets if ds != task.training.dataset}
    if wrong:
        raise ValueError(f"{kind} trains on {task.training.dataset}, {data} holds {sorted(wrong)}")
    split = patient_split(table, config.seed)
    rf, rv, rt = table.rows_of(split.fit), table.rows_of(split.val), table.rows_of(split.test)
    norm = Normaliser.fit(table.X[rf], table.names)
    d = _Rows(*(norm.transform(table.X[r]) for r in (rf, rv, rt)),
              *(table.label[r] for r in (rf, rv, rt)), table.patient[rv], table.hours[rv],
              rf, rv, rt)
    report: dict = {"kind": kind, "label": task.training.label, "data": str(data),
                    "patients": table.n_patients, "rows": int(len(table.X)),
                    "split": {"fit": len(split.fit), "validation": len(split.val),
                              "test": len(split.test)}, "models": {}}
    kinds = ("quantum", "classical") if with_comparators else ("quantum",)
    trained = {k: _train_hybrid(task, k, norm, d, config, spec_overrides, progress, report)
               for k in kinds}
    gbm = _train_gbm(task, table, d, config, out, report) if with_comparators else None
    artifacts = {k: _artifact(task, k, trained[k], table, split, norm, settings, config,
                              report, data) for k in trained}
    artifacts["quantum"].save(Path(out))
    if "classical" in artifacts:
        artifacts["classical"].save(comparator_paths(out)["hybrid-classical"])
    artifact = artifacts["quantum"]
    t0 = time.perf_counter()
    deployed = _stack_deployed(task, trained["quantum"], gbm, table, d, config,
                               trained.get("classical"))
    deployed.save(Path(out))
    report["stack_s"] = round(time.perf_counter() - t0, 1)
    report["models"]["deployed"] = deployed.metrics
    report["artifact"] = {"path": str(out), "version": artifact.version,
                          "levels": [list(lv) for lv in artifact.levels]}
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["trained_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    (Path(out) / "training-report.json").write_text(json.dumps(report, indent=1))
    return report


def _validation_score(task: _Task, d: _Rows) -> Callable[[np.ndarray], float]:
    """Early stopping's yardstick: the best utility over the upper quantiles of the logits
    (sepsis), or the validation rows' AUROC (a stay-level label such as death)."""
    if task.training.objective == "auroc":
        return lambda logits: auroc(d.yv, logits)

    def validate(logits: np.ndarray) -> float:
        cands = np.quantile(logits, np.linspace(0.6, 0.99, 25))
        return best_threshold(d.yv, logits, d.pv, candidates=cands)[1]

    return validate


def _train_hybrid(task: _Task, kind: str, norm: Normaliser, d: _Rows, config: TrainConfig,
                  spec_overrides: dict | None, progress: bool, report: dict
                  ) -> tuple[HybridSpec, dict, tuple[float, float], tuple]:
    """One hybrid (the circuit, or its classical ablation), calibrated, with its levels."""
    spec = HybridSpec(n_inputs=norm.n_inputs, kind=kind, **(spec_overrides or {}))
    metric = task.training.objective
    res = fit_hybrid(spec, d.Xf, d.yf, d.Xv, _validation_score(task, d), config,
                     progress=progress, label=f"{task.kind} hybrid-{kind}", metric=metric)
    lv = predict_logits(spec, res.params, d.Xv)
    a, b = fit_platt(lv, d.yv)
    risk_v = apply_platt(lv, a, b)
    levels, threshold, _ = task.levels(d.yv, d.hv, d.pv, risk_v)
    lt = predict_logits(spec, res.params, d.Xt)
    report["models"][f"hybrid-{kind}"] = {
        "parameters": param_count(res.params), "circuit_parameters": spec.circuit_params,
        "best_epoch": res.best_epoch, "history": res.history,
        "compile_s": round(res.compile_s, 2), "train_s": round(res.seconds, 1),
        f"validation_{metric}": (best_threshold(d.yv, risk_v, d.pv)[1] if metric == "utility"
                                 else res.history[res.best_epoch][f"val_{metric}"]),
        "threshold": threshold,
        "test_auroc": auroc(d.yt, lt), "test_auprc": auprc(d.yt, lt)}
    return spec, res.params, (a, b), levels


def _train_gbm(task: _Task, table: FeatureTable, d: _Rows, config: TrainConfig, out: Path,
               report: dict) -> GbmModel:
    """LightGBM on the raw rows (NaNs included): the classical comparator, and a member of
    the deployed stack where the kind's recipe says so."""
    from vigil.models.gbm import train_gbm

    t0 = time.perf_counter()
    gbm = train_gbm(table.X[d.rf], d.yf, table.X[d.rv], d.yv, seed=config.seed)
    pt = gbm.predict(table.X[d.rt])
    report["models"]["gbm"] = {"trees": gbm.best_iteration,
                               "train_s": round(time.perf_counter() - t0, 1),
                               "test_auroc": auroc(d.yt, pt), "test_auprc": auprc(d.yt, pt)}
    _, gbm_threshold, _ = task.levels(d.yv, d.hv, d.pv, gbm.predict(table.X[d.rv]))
    report["models"]["gbm"]["threshold"] = gbm_threshold
    paths = comparator_paths(out)
    paths["gbm"].parent.mkdir(parents=True, exist_ok=True)
    gbm.booster.save_model(str(paths["gbm"]), num_iteration=gbm.best_iteration)  # type: ignore[attr-defined]
    paths["thresholds"].write_text(json.dumps({"gbm": gbm_threshold}))
    return gbm


def _stack_deployed(task: _Task, quantum: tuple[HybridSpec, dict, tuple[float, float], tuple],
                    gbm: GbmModel | None, table: FeatureTable, d: _Rows,
                    config: TrainConfig, classical: tuple | None = None) -> DeployedStack:
    """The deployed score: the hybrid stacked with the warm-started online model (and the
    recipe's other members), its levels chosen on the validation patients (also for target
    alert rates)."""
    online = OnlineModel.warm_start(d.Xf, d.yf, seed=config.seed)
    spec, params, calib, _ = quantum
    p_hybrid_v = apply_platt(predict_logits(spec, params, d.Xv), *calib)
    p_online_v = online.predict(d.Xv)
    members_v: dict[str, np.ndarray] = {}
    members_t: dict[str, np.ndarray] = {}
    files: dict[str, str] = {}
    if "gbm" in task.training.stack:
        assert gbm is not None
        members_v["gbm"] = gbm.predict(table.X[d.rv])
        members_t["gbm"] = gbm.predict(table.X[d.rt])
        files["gbm"] = "comparators/gbm.txt"
    fit = (pre_onset_rows(d.yv, d.hv, d.pv) if task.training.stack_on == "pre_onset"
           else np.ones(len(d.yv), bool))

    def fitted(p_fixed: np.ndarray, members: dict[str, np.ndarray]) -> Stack:
        return Stack.fit(p_fixed[fit], p_online_v[fit], d.yv[fit],
                         {n: v[fit] for n, v in members.items()} or None)

    stack = fitted(p_hybrid_v, members_v)
    risk_v = stack(p_hybrid_v, p_online_v, members_v)
    levels, threshold, rate_levels = task.levels(d.yv, d.hv, d.pv, risk_v)
    if not rate_levels:
        rate_levels = _rate_levels(task.settings, d.yv, d.hv, d.pv, risk_v,
                                   stay_outcome=task.stay_outcome)
    p_test = stack(apply_platt(predict_logits(spec, params, d.Xt), *calib), online.predict(d.Xt),
                   members_t)
    metrics = {"learns_from": task.training.learns_from, "threshold": threshold,
               "stack_fitted_on": task.training.stack_on,
               "online_validation_auroc": auroc(d.yv, p_online_v),
               "validation_auroc": auroc(d.yv, risk_v),
               "test_auroc_without_online_learning": auroc(d.yt, p_test),
               "test_auprc_without_online_learning": auprc(d.yt, p_test)}
    if task.training.objective == "utility":
        metrics["validation_utility"] = best_threshold(d.yv, risk_v, d.pv)[1]
        metrics["online_threshold"], metrics["online_validation_utility"] = best_threshold(
            d.yv, p_online_v, d.pv)
    ablations: dict[str, Stack] = {}
    if members_v:  # the circuit has company: what would the stack be without it?
        ablations["without the circuit"] = fitted(np.full(len(d.yv), 0.5), members_v)
    if classical is not None:
        c_spec, c_params, c_calib, _ = classical
        p_classical_v = apply_platt(predict_logits(c_spec, c_params, d.Xv), *c_calib)
        ablations["classical layer for the circuit"] = fitted(p_classical_v, members_v)
    return DeployedStack(stack, levels, online, metrics, tuple(rate_levels), files, ablations)


ALERT_RATE_TARGETS = (0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 1.5)  # alerts per patient-day, lifecycle


def _rate_levels(settings: VigilSettings, y: np.ndarray, hours: np.ndarray, patient: np.ndarray,
                 risk: np.ndarray, stay_outcome: bool = False) -> list[dict]:
    """Levels for target alert rates on the validation patients (VIGIL_*_ALERTS_PER_PATIENT_DAY)."""
    from vigil.evaluation.burden import levels_for_alert_rates
    from vigil.kinds import rules_from as alert_rules

    return levels_for_alert_rates(y, hours, patient_groups(patient), risk, ALERT_RATE_TARGETS,
                                  alert_rules(settings), settings.alert_clear_ratio,
                                  stay_outcome=stay_outcome)


def _artifact(task, kind, trained, table, split, norm, settings, config, report, data):  # type: ignore[no-untyped-def]
    spec, params, calib, levels = trained
    prefix = task.training.artifact.rsplit("-qnn", 1)[0]  # "sepsis-hybrid"
    return ModelArtifact(
        name=f"{prefix}-{'qnn' if kind == 'quantum' else 'classical-ablation'}",
        target=task.kind,
        feature_names=table.names,
        window_lengths_s=tuple(settings.window_lengths_s),
        allowed_lateness_s=settings.allowed_lateness_s,
        spec=spec,
        params={k: _np_tree(v) for k, v in params.items()},
        normaliser=norm,
        calibration=calib,
        levels=levels,
        metrics=timeless(report["models"][f"hybrid-{kind}"]),
        training={"data": task.training.citation, "label": task.training.label,
                  "source": str(data), "seed": config.seed,
                  "config": asdict(config),
                  "rows_fit": int(table.rows_of(split.fit).sum()),
                  "rows_validation": int(table.rows_of(split.val).sum()),
                  "split": "patient-level 80/20 (seed 42) then 80/20 of training (seed 43), "
                           f"stratified by {'septic' if task.kind == 'sepsis' else 'outcome'}"},
        training_patients=[table.source_ids[i] for i in np.concatenate([split.fit, split.val])],
    )


def timeless(metrics: dict) -> dict:
    """``metrics`` without wall-clock timings (keys ending in ``_s``, ``seconds``): an
    artifact holds only what the data and the seed decide, so it is reproducible bit for
    bit; the timings stay in ``training-report.json``."""
    def keep(k: str) -> bool:
        return not (k.endswith("_s") or k == "seconds")

    out: dict = {}
    for k, v in metrics.items():
        if not keep(k):
            continue
        if isinstance(v, list):
            v = [timeless(x) if isinstance(x, dict) else x for x in v]
        out[k] = timeless(v) if isinstance(v, dict) else v
    return out


def _np_tree(v):  # type: ignore[no-untyped-def]
    if isinstance(v, dict):
        return {k: _np_tree(x) for k, x in v.items()}
    return np.asarray(v)
