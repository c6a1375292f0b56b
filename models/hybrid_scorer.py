"""The hybrid model as a stream scorer: fixed-shape jitted risk and gradient x input.

Risks are Platt-calibrated probabilities. Contributions are gradient x input of the
calibrated risk with respect to the normalised inputs, whose zero is the training median
patient: a feature's contribution is how much its deviation from the median moves this
patient's risk, to first order. Missingness indicators add to their feature's share. Both
come from one jitted, vmapped call per fixed-size batch, so the stream compiles once.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from vigil.models.artifact import ModelArtifact
from vigil.models.base import Assessment, Context, Target
from vigil.models.hybrid import make_logit_fn

__all__ = ["HybridScorer"]


class HybridScorer:
    floor_flag = None
    attribution = "gradient"  # gradient x input around reference_row() (see models.checks)

    def __init__(self, artifact: ModelArtifact, feature_names: tuple[str, ...]) -> None:
        self.artifact = artifact
        self.name = f"{artifact.name}@{artifact.version}"
        self.target: Target = artifact.target  # type: ignore[assignment]
        self.feature_names = tuple(feature_names)
        self.levels = artifact.levels
        self.norm = artifact.normaliser
        a, b = artifact.calibration
        logits = make_logit_fn(artifact.spec)
        params = jax.tree_util.tree_map(jnp.asarray, artifact.params)

        def risk_one(z):
            return jax.nn.sigmoid(a * logits(params, z[None, :])[0] + b)

        def risk_and_grad(Z):
            return jax.vmap(jax.value_and_grad(risk_one))(Z)

        self._fn = jax.jit(risk_and_grad)
        self._risk = jax.jit(lambda Z: jax.nn.sigmoid(a * logits(params, Z) + b))
        self._n = len(self.feature_names)
        self._ind = np.asarray(self.norm.indicator_columns)

    @classmethod
    def load(cls, directory: Path, feature_names: tuple[str, ...],
             window_lengths_s: tuple[int, ...] | None = None,
             allowed_lateness_s: int | None = None) -> HybridScorer:
        """The artifact in ``directory``; refused when it was trained on other features or
        (when given) other windows than this worker computes."""
        artifact = ModelArtifact.load(directory)
        artifact.check_compatible(feature_names,
                                  artifact.window_lengths_s if window_lengths_s is None
                                  else window_lengths_s,
                                  artifact.allowed_lateness_s if allowed_lateness_s is None
                                  else allowed_lateness_s)
        return cls(artifact, feature_names)

    def save(self, directory: Path) -> None:
        self.artifact.save(Path(directory))

    def reference_row(self) -> np.ndarray:
        """The feature row whose normalised input is zero: the training median patient."""
        return np.asarray(self.norm.median, np.float64)

    def score_batch(self, X: np.ndarray, context: Context | None = None) -> Assessment:
        risk = np.asarray(self._risk(jnp.asarray(self.norm.transform(X))), np.float64)
        return Assessment(risk, None, {f"{self.target}_risk": risk})

    def attribute(self, X: np.ndarray) -> np.ndarray:
        """Gradient x input of the calibrated risk, per original feature. The processor
        pads the rows to its fixed batch shape, so this compiles once as well."""
        Z = self.norm.transform(X)
        _, grad = self._fn(jnp.asarray(Z))
        gz = np.asarray(grad) * Z
        contrib = gz[:, :self._n].astype(np.float64)
        np.add.at(contrib, (slice(None), self._ind), gz[:, self._n:])
        return contrib

    def risk_batch(self, X: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """Risks only (no attributions), for evaluation: fixed padded chunks, one compile."""
        out = np.empty(len(X), np.float64)
        for start in range(0, len(X), chunk):
            Z = self.norm.transform(X[start:start + chunk])
            m = len(Z)
            if m < chunk:
                Z = np.vstack([Z, np.zeros((chunk - m, Z.shape[1]), np.float32)])
            out[start:start + m] = np.asarray(self._risk(jnp.asarray(Z)))[:m]
        return out
