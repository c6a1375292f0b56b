"""Gradient-boosted trees (LightGBM) on the very same features: the classical comparator.

Trees take the raw feature rows, NaNs included (LightGBM routes missing values itself), so
this is the strongest simple classical baseline for tabular ICU data; the evaluation puts
the hybrid quantum model next to it, trained on the same patients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["GbmModel", "train_gbm", "GBM_PARAMS"]

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
