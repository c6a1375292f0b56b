"""``vigil train``: the sepsis models on PhysioNet 2019, one split, one seed, one report.

Patients (never rows) are split 80/20 into training and held-out test, stratified by
whether they become septic (seed 42); the training patients are split again 80/20 into
fit and validation (seed 43). Every model sees the same rows and features:

* the hybrid quantum model (what the stream deploys for sepsis), trained on the fit rows,
  epoch chosen on validation utility, Platt-calibrated on validation;
* its ablation with the circuit replaced by a classical layer of the same parameter count;
* LightGBM on the raw features.

The artifact records the training and validation patients, so ``vigil evaluate`` can warn
when asked to score them; the held-out patients are what evaluation reports on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
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
from vigil.evaluation.run import comparator_paths
from vigil.models.artifact import ModelArtifact
from vigil.models.calibration import apply_platt, fit_platt
from vigil.models.deployed import DeployedSepsis, Stack
from vigil.models.hybrid import HybridSpec, param_count
from vigil.models.online import OnlineModel
from vigil.models.preprocess import Normaliser
from vigil.models.train import TrainConfig, fit_hybrid, predict_logits
from vigil.settings import VigilSettings
from vigil.stream.offline import FeatureTable

__all__ = ["Split", "patient_split", "run_training", "CITATION_2019"]

CITATION_2019 = ("Reyna MA et al. Early Prediction of Sepsis From Clinical Data: the "
                 "PhysioNet/Computing in Cardiology Challenge 2019. Crit Care Med "
                 "2020;48(2):210-217. doi:10.13026/v64v-d857")


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
    rf: np.ndarray  # row masks of the split (raw rows for LightGBM)
    rv: np.ndarray
    rt: np.ndarray


def run_training(data: Path, out: Path, settings: VigilSettings, *,
                 config: TrainConfig | None = None, spec_overrides: dict | None = None,
                 limit: int | None = None, progress: bool = True,
                 cache_dir: Path | None = Path(".vigil-cache"), with_comparators: bool = True) -> dict:
    """Train the hybrid (and its same-size classical ablation and LightGBM), stack it with
    the warm-started online model, and write the versioned artifact to ``out``."""
    config = config or TrainConfig()
    started = time.perf_counter()
    Path(out).mkdir(parents=True, exist_ok=True)
    table = feature_table(data, settings, limit=limit, cache_dir=cache_dir, progress=progress)
    split = patient_split(table, config.seed)
    rf, rv, rt = table.rows_of(split.fit), table.rows_of(split.val), table.rows_of(split.test)
    norm = Normaliser.fit(table.X[rf], table.names)
    d = _Rows(*(norm.transform(table.X[r]) for r in (rf, rv, rt)),
              *(table.label[r] for r in (rf, rv, rt)), table.patient[rv], rf, rv, rt)
    report: dict = {"data": str(data), "patients": table.n_patients, "rows": int(len(table.X)),
                    "split": {"fit": len(split.fit), "validation": len(split.val),
                              "test": len(split.test)}, "models": {}}
    kinds = ("quantum", "classical") if with_comparators else ("quantum",)
    trained = {kind: _train_hybrid(kind, norm, d, config, spec_overrides, progress, report)
               for kind in kinds}
    if with_comparators:
        _train_gbm(table, d, config, out, report)
    artifacts = {kind: _artifact(kind, trained[kind], table, split, norm, settings, config,
                                 report, data, d.Xv) for kind in trained}
    artifacts["quantum"].save(Path(out))
    if "classical" in artifacts:
        artifacts["classical"].save(comparator_paths(out)["hybrid-classical"])
    artifact = artifacts["quantum"]
    deployed = _stack_deployed(trained["quantum"], table, d, settings, config)
    deployed.save(Path(out))
    report["models"]["deployed"] = deployed.metrics
    report["artifact"] = {"path": str(out), "version": artifact.version,
                          "levels": [list(lv) for lv in artifact.levels]}
    report["seconds"] = round(time.perf_counter() - started, 1)
    (Path(out) / "training-report.json").write_text(json.dumps(report, indent=1))
    return report


def _validation_utility(d: _Rows) -> Callable[[np.ndarray], float]:
    """Early stopping's yardstick: the best utility over the upper quantiles of the logits."""
    def validate(logits: np.ndarray) -> float:
        cands = np.quantile(logits, np.linspace(0.6, 0.99, 25))
        return best_threshold(d.yv, logits, d.pv, candidates=cands)[1]

    return validate


def _train_hybrid(kind: str, norm: Normaliser, d: _Rows, config: TrainConfig,
                  spec_overrides: dict | None, progress: bool, report: dict
                  ) -> tuple[HybridSpec, dict, tuple[float, float], float]:
    """One hybrid (the circuit, or its classical ablation), calibrated, with its threshold."""
    spec = HybridSpec(n_inputs=norm.n_inputs, kind=kind, **(spec_overrides or {}))
    res = fit_hybrid(spec, d.Xf, d.yf, d.Xv, _validation_utility(d), config, progress=progress,
                     label=f"hybrid-{kind}")
    lv = predict_logits(spec, res.params, d.Xv)
    a, b = fit_platt(lv, d.yv)
    threshold, val_u = best_threshold(d.yv, apply_platt(lv, a, b), d.pv)
    lt = predict_logits(spec, res.params, d.Xt)
    report["models"][f"hybrid-{kind}"] = {
        "parameters": param_count(res.params), "circuit_parameters": spec.circuit_params,
        "best_epoch": res.best_epoch, "history": res.history,
        "compile_s": round(res.compile_s, 2), "train_s": round(res.seconds, 1),
        "validation_utility": val_u, "threshold": threshold,
        "test_auroc": auroc(d.yt, lt), "test_auprc": auprc(d.yt, lt)}
    return spec, res.params, (a, b), threshold


def _train_gbm(table: FeatureTable, d: _Rows, config: TrainConfig, out: Path,
               report: dict) -> None:
    """LightGBM on the raw rows (NaNs included), the classical comparator."""
    from vigil.models.gbm import train_gbm

    t0 = time.perf_counter()
    gbm = train_gbm(table.X[d.rf], d.yf, table.X[d.rv], d.yv, seed=config.seed)
    pt = gbm.predict(table.X[d.rt])
    report["models"]["gbm"] = {"trees": gbm.best_iteration,
                               "train_s": round(time.perf_counter() - t0, 1),
                               "test_auroc": auroc(d.yt, pt), "test_auprc": auprc(d.yt, pt)}
    gbm_threshold, _ = best_threshold(d.yv, gbm.predict(table.X[d.rv]), d.pv)
    report["models"]["gbm"]["threshold"] = gbm_threshold
    paths = comparator_paths(out)
    paths["gbm"].parent.mkdir(parents=True, exist_ok=True)
    gbm.booster.save_model(str(paths["gbm"]))  # type: ignore[attr-defined]
    paths["thresholds"].write_text(json.dumps({"gbm": gbm_threshold}))


def _stack_deployed(quantum: tuple[HybridSpec, dict, tuple[float, float], float],
                    table: FeatureTable, d: _Rows, settings: VigilSettings,
                    config: TrainConfig) -> DeployedSepsis:
    """The deployed score: the hybrid stacked with the warm-started online model, its
    levels chosen on the validation patients (also for target alert rates)."""
    t0 = time.perf_counter()
    online = OnlineModel.warm_start(d.Xf, d.yf, seed=config.seed)
    spec, params, calib, _ = quantum
    p_hybrid_v = apply_platt(predict_logits(spec, params, d.Xv), *calib)
    p_online_v = online.predict(d.Xv)
    stack = Stack.fit(p_hybrid_v, p_online_v, d.yv)
    risk_v = stack(p_hybrid_v, p_online_v)
    threshold, val_u = best_threshold(d.yv, risk_v, d.pv)
    p_test = stack(apply_platt(predict_logits(spec, params, d.Xt), *calib), online.predict(d.Xt))
    online_threshold, online_u = best_threshold(d.yv, p_online_v, d.pv)
    rate_levels = _rate_levels(settings, d.yv, table.hours[d.rv], d.pv, risk_v)
    return DeployedSepsis(stack, levels_at(risk_v, threshold), online, {
        "validation_utility": val_u, "threshold": threshold,
        "online_threshold": online_threshold, "online_validation_utility": online_u,
        "online_warm_start_s": round(time.perf_counter() - t0, 1),
        "online_validation_auroc": auroc(d.yv, p_online_v),
        "test_auroc_without_online_learning": auroc(d.yt, p_test),
        "test_auprc_without_online_learning": auprc(d.yt, p_test)}, tuple(rate_levels))


ALERT_RATE_TARGETS = (0.25, 0.5, 0.75, 1.0, 1.5)  # alerts per patient-day, full lifecycle


def _rate_levels(settings: VigilSettings, y: np.ndarray, hours: np.ndarray, patient: np.ndarray,
                 risk: np.ndarray) -> list[dict]:
    """Levels for target alert rates on the validation patients (VIGIL_SEPSIS_ALERTS_PER_PATIENT_DAY)."""
    from vigil.evaluation.burden import levels_for_alert_rates
    from vigil.kinds import rules_from as alert_rules

    return levels_for_alert_rates(y, hours, patient_groups(patient), risk, ALERT_RATE_TARGETS,
                                  alert_rules(settings), settings.alert_clear_ratio)


def _artifact(kind, trained, table, split, norm, settings, config, report, data, Xv):  # type: ignore[no-untyped-def]
    spec, params, calib, threshold = trained
    risk_v = apply_platt(predict_logits(spec, params, Xv), *calib)
    return ModelArtifact(
        name=f"sepsis-hybrid-{'qnn' if kind == 'quantum' else 'classical-ablation'}",
        target="sepsis",
        feature_names=table.names,
        window_lengths_s=tuple(settings.window_lengths_s),
        allowed_lateness_s=settings.allowed_lateness_s,
        spec=spec,
        params={k: _np_tree(v) for k, v in params.items()},
        normaliser=norm,
        calibration=calib,
        levels=levels_at(risk_v, threshold),
        metrics=report["models"][f"hybrid-{kind}"],
        training={"data": CITATION_2019, "source": str(data), "seed": config.seed,
                  "config": asdict(config),
                  "rows_fit": int(table.rows_of(split.fit).sum()),
                  "rows_validation": int(table.rows_of(split.val).sum()),
                  "split": "patient-level 80/20 (seed 42) then 80/20 of training (seed 43), "
                           "stratified by septic"},
        training_patients=[table.source_ids[i] for i in np.concatenate([split.fit, split.val])],
    )


def _np_tree(v):  # type: ignore[no-untyped-def]
    if isinstance(v, dict):
        return {k: _np_tree(x) for k, x in v.items()}
    return np.asarray(v)
