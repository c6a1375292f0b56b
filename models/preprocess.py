"""Turning feature rows with honest NaNs into the dense, bounded inputs a network needs.

Fitted on training rows only and stored in the model artifact, so that the stream applies
exactly the training-time transformation: median imputation, standardisation, clipping to
+-5 standard deviations, plus a "was missing" indicator for every feature that is missing
in some but not (nearly) all rows, because in ICU data *whether* a lab was drawn is itself
a signal (Agniel et al., BMJ 2018;361:k1479).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Normaliser"]


@dataclass(frozen=True)
class Normaliser:
    names: tuple[str, ...]
    median: np.ndarray
    scale: np.ndarray
    indicator_columns: np.ndarray  # indices of features that get a missingness indicator
    clip: float = 5.0

    @classmethod
    def fit(cls, X: np.ndarray, names: tuple[str, ...], *, clip: float = 5.0,
            min_missing: float = 0.01, max_missing: float = 0.995) -> Normaliser:
        median = np.nanmedian(X, axis=0)
        median = np.where(np.isnan(median), 0.0, median)
        filled = np.where(np.isnan(X), median, X)
        scale = filled.std(axis=0)
        scale = np.where(scale > 1e-9, scale, 1.0)
        missing = np.isnan(X).mean(axis=0)
        ind = np.flatnonzero((missing >= min_missing) & (missing <= max_missing))
        return cls(tuple(names), median.astype(np.float32), scale.astype(np.float32),
                   ind.astype(np.int32), clip)

    @property
    def n_inputs(self) -> int:
        return len(self.names) + len(self.indicator_columns)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """(rows, features) with NaNs -> (rows, n_inputs) float32, finite and bounded.

        >>> n = Normaliser.fit(np.array([[1.0, np.nan], [3.0, 2.0], [5.0, 4.0]]), ("a", "b"))
        >>> n.transform(np.array([[np.nan, 100.0], [3.0, np.nan]])).round(2).tolist()
        [[0.0, 5.0, 0.0], [0.0, 0.0, 1.0]]
        """
        X = np.asarray(X, np.float32)
        nan = np.isnan(X)
        z = (np.where(nan, self.median, X) - self.median) / self.scale
        z = np.clip(z, -self.clip, self.clip)
        return np.concatenate([z, nan[:, self.indicator_columns]], axis=1).astype(np.float32)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}median": self.median, f"{prefix}scale": self.scale,
                f"{prefix}indicators": self.indicator_columns}

    @classmethod
    def from_arrays(cls, names: tuple[str, ...], arrays: dict[str, np.ndarray], prefix: str,
                    clip: float = 5.0) -> Normaliser:
        return cls(tuple(names), arrays[f"{prefix}median"], arrays[f"{prefix}scale"],
                   arrays[f"{prefix}indicators"], clip)
