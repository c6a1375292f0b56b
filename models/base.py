"""The scorer interface every model implements: fixed-shape batches in, risks out.

Uniform verbs (as River has ``predict_proba_one`` for every learner): the stream, training
and evaluation all call :meth:`Scorer.score_batch` on rows from the one feature function and
never know which model is behind it. Batches have a fixed shape so that a jitted model (the
JAX circuit) compiles once; :func:`score_padded` cuts and pads for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np

__all__ = ["Assessment", "Scorer", "Target", "padded_chunks", "score_chunks", "score_padded"]

Target = Literal["sepsis", "deterioration"]


@dataclass(frozen=True)
class Assessment:
    """Risks for a batch, with what drove each of them.

    ``contributions[i, j]`` is feature j's share of row i's risk (risk units; signed), or
    None when the scorer computes them only on request (:meth:`Scorer.attribute`: the
    model's gradients cost more than its risks, and only alerting rows need them);
    ``details`` holds named per-row numbers such as a clinical score's components.
    """

    risk: np.ndarray
    contributions: np.ndarray | None
    details: dict[str, np.ndarray] = field(default_factory=dict)

    def rows(self, sl: slice) -> Assessment:
        return Assessment(self.risk[sl],
                          None if self.contributions is None else self.contributions[sl],
                          {k: v[sl] for k, v in self.details.items()})


@runtime_checkable
class Scorer(Protocol):
    name: str
    target: Target
    feature_names: tuple[str, ...]
    #: default alert levels: ascending (risk threshold, severity) pairs
    levels: tuple[tuple[float, str], ...]
    #: a boolean detail that forces at least the lowest severity (e.g. NEWS2 red parameter)
    floor_flag: str | None

    def score_batch(self, X: np.ndarray) -> Assessment: ...

    def attribute(self, X: np.ndarray) -> np.ndarray:
        """Per-feature contributions (rows, features) for the rows an alert must explain."""
        ...


def padded_chunks(X: np.ndarray, batch_size: int) -> list[tuple[np.ndarray, int]]:
    """``X`` cut into NaN-padded chunks of exactly ``batch_size`` rows, with their real size."""
    if X.shape[0] == 0:
        return []
    out = []
    for start in range(0, X.shape[0], batch_size):
        chunk = X[start:start + batch_size]
        m = chunk.shape[0]
        if m < batch_size:
            chunk = np.vstack([chunk, np.full((batch_size - m, X.shape[1]), np.nan)])
        out.append((chunk, m))
    return out


def score_chunks(scorer: Scorer, chunks: list[tuple[np.ndarray, int]], n_features: int,
                 batch_size: int) -> Assessment:
    """Score pre-cut chunks (several scorers can share them) and join the real rows."""
    if not chunks:
        empty = scorer.score_batch(np.full((batch_size, n_features), np.nan))
        return empty.rows(slice(0, 0))
    parts = [scorer.score_batch(chunk).rows(slice(0, m)) for chunk, m in chunks]
    if len(parts) == 1:
        return parts[0]
    keys = parts[0].details.keys()
    return Assessment(
        np.concatenate([p.risk for p in parts]),
        None if parts[0].contributions is None else np.vstack([p.contributions for p in parts]),
        {k: np.concatenate([p.details[k] for p in parts]) for k in keys},
    )


def score_padded(scorer: Scorer, X: np.ndarray, batch_size: int) -> Assessment:
    """Score ``X`` in chunks of exactly ``batch_size`` rows (the last one NaN-padded)."""
    return score_chunks(scorer, padded_chunks(X, batch_size), X.shape[1], batch_size)
