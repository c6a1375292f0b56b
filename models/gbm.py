"""Gradient-boosted trees (LightGBM) on the very same features: the classical comparator.

Trees take the raw feature rows, NaNs included (LightGBM routes missing values itself), so
this is the strongest simple classical baseline for tabular ICU data; the evaluation puts
the hybrid quantum model next to it, trained on the same patients.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vigil.models.base import Assessment, Context

__all__ = ["GbmModel", "GbmScorer", "train_gbm", "GBM_PARAMS"]

GBM_PARAMS = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 63,
    "min_data_in_leaf": 200,
    "feature_fraction": 0.7,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "metric": "auc",
    "verbose": -1,
}


@dataclass
class GbmModel:
    booster: object  # lightgbm.Booster
    best_iteration: int

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.booster.predict(X, num_iteration=self.best_iteration)  # type: ignore[attr-defined]

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-feature SHAP values in log-odds (TreeSHAP), without the bias column."""
        c = self.booster.predict(X, num_iteration=self.best_iteration, pred_contrib=True)  # type: ignore[attr-defined]
        return c[:, :-1]


def train_gbm(X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray, *,
              seed: int = 42, threads: int = 2, max_rounds: int = 2000) -> GbmModel:
    import lightgbm as lgb

    params = dict(GBM_PARAMS, seed=seed, num_threads=threads, deterministic=True)
    train = lgb.Dataset(X, y)
    val = lgb.Dataset(X_val, y_val, reference=train)
    booster = lgb.train(params, train, max_rounds, valid_sets=[val],
                        callbacks=[lgb.early_stopping(50, verbose=False)])
    return GbmModel(booster, booster.best_iteration)


class GbmScorer:
    """A trained LightGBM model behind the scorer interface (a member of a deployed stack).

    Its contributions are TreeSHAP values, exact in log-odds; scaled into probability they
    add up to the risk's departure from the model's base rate (``explained_risk``), which
    is what an additive explanation of a tree ensemble can promise.
    """

    floor_flag = None
    attribution = "additive"

    def __init__(self, booster: object, feature_names: tuple[str, ...], target: str,
                 levels: tuple[tuple[float, str], ...] = ((0.5, "medium"),),
                 name: str = "gbm") -> None:
        self.booster = booster
        self.feature_names = tuple(feature_names)
        n_model = booster.num_feature()  # type: ignore[attr-defined]
        if n_model != len(self.feature_names):
            raise ValueError(f"LightGBM model has {n_model} features, the stream "
                             f"{len(self.feature_names)}")
        self.target = target
        self.levels = levels
        self.name = name

    @classmethod
    def load_file(cls, path: Path, feature_names: tuple[str, ...], target: str) -> GbmScorer:
        import lightgbm as lgb

        return cls(lgb.Booster(model_file=str(path)), feature_names, target)

    def save_file(self, path: Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(path))  # type: ignore[attr-defined]

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        self.save_file(directory / "gbm.txt")
        (directory / "gbm-scorer.json").write_text(json.dumps(
            {"target": self.target, "name": self.name,
             "levels": [list(lv) for lv in self.levels]}))

    @classmethod
    def load(cls, directory: Path, feature_names: tuple[str, ...]) -> GbmScorer:
        meta = json.loads((Path(directory) / "gbm-scorer.json").read_text())
        s = cls.load_file(Path(directory) / "gbm.txt", feature_names, meta["target"])
        s.name = meta["name"]
        s.levels = tuple((float(t), str(v)) for t, v in meta["levels"])
        return s

    def _raw(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(X, raw_score=True), np.float64)  # type: ignore[attr-defined]

    def score_batch(self, X: np.ndarray, context: Context | None = None) -> Assessment:
        risk = 1.0 / (1.0 + np.exp(-self._raw(X)))
        return Assessment(risk, None, {f"{self.target}_gbm_risk": risk})

    def _base(self, X: np.ndarray) -> np.ndarray:
        c = self.booster.predict(X[:1], pred_contrib=True)  # type: ignore[attr-defined]
        return float(c[0, -1])  # the expected raw score (the same for every row)

    def explained_risk(self, X: np.ndarray) -> np.ndarray:
        """The risk minus the base rate's: what the contributions share out."""
        base = 1.0 / (1.0 + np.exp(-self._base(X)))
        return self.score_batch(X).risk - base

    def attribute(self, X: np.ndarray) -> np.ndarray:
        """TreeSHAP costs ~1-2 ms a row: the all-NaN padding rows of the processor's fixed
        batch shape (a JAX model's need, not a tree's) are skipped and get zeros."""
        X = np.asarray(X, np.float64)
        out = np.zeros(X.shape)
        real = np.flatnonzero(~np.isnan(X).all(axis=1))
        if not len(real):
            return out
        c = np.asarray(self.booster.predict(X[real], pred_contrib=True), np.float64)  # type: ignore[attr-defined]
        shap, base = c[:, :-1], c[:, -1]
        raw = shap.sum(axis=1) + base
        dp = 1.0 / (1.0 + np.exp(-raw)) - 1.0 / (1.0 + np.exp(-base))
        dz = raw - base
        scale = np.divide(dp, dz, out=np.zeros_like(dp), where=np.abs(dz) > 1e-12)
        out[real] = shap * scale[:, None]
        return out
