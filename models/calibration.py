"""Platt scaling: a logistic map from a model's logit to a calibrated probability.

Class-weighted training (needed for ~2% positive hours) inflates raw probabilities; a
two-parameter logistic fit on held-out validation rows (Platt, "Probabilistic outputs for
support vector machines", 1999) restores risks that mean what they say, without changing
the ranking.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fit_platt", "apply_platt"]


def fit_platt(logit: np.ndarray, y: np.ndarray, iters: int = 50) -> tuple[float, float]:
    """(a, b) minimising the log loss of sigmoid(a * logit + b) by Newton's method.

    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=5000); y = rng.random(5000) < 1 / (1 + np.exp(-(2 * z - 1)))
    >>> a, b = fit_platt(z, y); round(a, 1), round(b, 1)
    (2.0, -1.0)
    """
    x = np.asarray(logit, float)
    t = np.asarray(y, float)
    a, b = 1.0, 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(a * x + b)))
        w = p * (1 - p) + 1e-12
        g = np.array([np.sum((p - t) * x), np.sum(p - t)])
        h = np.array([[np.sum(w * x * x), np.sum(w * x)], [np.sum(w * x), np.sum(w)]])
        step = np.linalg.solve(h + 1e-9 * np.eye(2), g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-9:
            break
    return float(a), float(b)


def apply_platt(logit: np.ndarray, a: float, b: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(a * np.asarray(logit, float) + b)))
