"""A deployed score: a trained model (the hybrid quantum model) and its online River model,
stacked.

    risk = sigmoid(w_q * logit(p_hybrid) + w_r * logit(p_online) + b)

The three numbers are a logistic regression fitted on the validation patients (stacking,
Wolpert 1992), so each model weighs what it adds there; the alert levels are chosen on the
same patients. The hybrid supplies the ranking and the explanations (its gradients); the
online model follows the unit it runs in, learning from labels as they arrive.

Stored next to the hybrid's artifact: ``deployed.json`` (weights, levels, validation
figures) and ``online.pkl`` (the warm-started River model) - :class:`DeployedStack`;
:class:`StackedScorer` is the same thing behind the scorer interface, for the stream.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vigil.models.base import Assessment, Context, Scorer
from vigil.models.online import OnlineModel, OnlineScorer

__all__ = ["Stack", "DeployedStack", "DeployedSepsis", "StackedScorer", "logit"]

_EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, float), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class Stack:
    w_hybrid: float
    w_online: float
    bias: float

    def __call__(self, p_hybrid: np.ndarray, p_online: np.ndarray) -> np.ndarray:
        z = self.w_hybrid * logit(p_hybrid) + self.w_online * logit(p_online) + self.bias
        return 1.0 / (1.0 + np.exp(-z))

    @classmethod
    def fit(cls, p_hybrid: np.ndarray, p_online: np.ndarray, y: np.ndarray,
            iters: int = 50) -> Stack:
        """Logistic regression on the two logits (Newton's method).

        >>> rng = np.random.default_rng(1); y = rng.random(4000) < 0.2
        >>> a = np.where(y, 0.6, 0.3) + rng.normal(0, .1, 4000).clip(-.25, .25)
        >>> Stack.fit(a, np.full(4000, 0.5), y).w_hybrid > 1
        True
        """
        X = np.c_[logit(p_hybrid), logit(p_online), np.ones(len(y))]
        t = np.asarray(y, float)
        beta = np.zeros(3)
        for _ in range(iters):
            p = 1.0 / (1.0 + np.exp(-(X @ beta)))
            w = p * (1 - p) + 1e-9
            step = np.linalg.solve((X * w[:, None]).T @ X + 1e-6 * np.eye(3), X.T @ (p - t))
            beta -= step
            if np.abs(step).max() < 1e-10:
                break
        return cls(float(beta[0]), float(beta[1]), float(beta[2]))


@dataclass
class DeployedStack:
    stack: Stack
    levels: tuple[tuple[float, str], ...]
    online: OnlineModel
    metrics: dict
    # levels chosen on the training patients for target alert rates under the lifecycle:
    # [{"alerts_per_patient_day": target, "levels": [[t, "medium"], [h, "high"]], ...}]
    rate_levels: tuple[dict, ...] = ()

    def levels_for_rate(self, target: float) -> tuple[tuple[float, str], ...]:
        """The levels whose validation alert rate fits ``target`` alerts per patient-day:
        the entry with the largest target not above it (else the strictest one)."""
        if not self.rate_levels:
            raise ValueError("this artifact has no levels by alert rate: retrain it")
        fitting = [e for e in self.rate_levels if e["alerts_per_patient_day"] <= target]
        entry = (max(fitting, key=lambda e: e["alerts_per_patient_day"]) if fitting
                 else min(self.rate_levels, key=lambda e: e["alerts_per_patient_day"]))
        return tuple((float(t), str(s)) for t, s in entry["levels"])

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        (directory / "online.pkl").write_bytes(self.online.dumps())
        (directory / "deployed.json").write_text(json.dumps({
            "combination": "sigmoid(w_hybrid*logit(p_hybrid) + w_online*logit(p_online) + bias)",
            "stack": {"w_hybrid": self.stack.w_hybrid, "w_online": self.stack.w_online,
                      "bias": self.stack.bias},
            "levels": [list(lv) for lv in self.levels],
            "online_model": "online.pkl",
            "metrics": self.metrics,
            "levels_by_alert_rate": list(self.rate_levels),
        }, indent=1))

    @classmethod
    def load(cls, directory: Path) -> DeployedStack:
        directory = Path(directory)
        meta = json.loads((directory / "deployed.json").read_text())
        return cls(Stack(**meta["stack"]),
                   tuple((float(t), str(s)) for t, s in meta["levels"]),
                   OnlineModel.loads((directory / meta["online_model"]).read_bytes()),
                   meta.get("metrics", {}), tuple(meta.get("levels_by_alert_rate", ())))

    @staticmethod
    def present(directory: Path) -> bool:
        return (Path(directory) / "deployed.json").exists()


DeployedSepsis = DeployedStack  # the name the sepsis artifact was written under


class StackedScorer:
    """The deployed score as a scorer: the fixed model's risk stacked with the online one's.

    The fixed model supplies the explanations (its attributions); the online model learns
    the delayed labels (this scorer is a :class:`~vigil.models.base.Learner` through it).
    """

    floor_flag = None
    #: the explanations are the fixed model's (its gradients): they add up to its risk
    attribution = "gradient"

    def __init__(self, fixed: Scorer, online: OnlineScorer, deployed: DeployedStack) -> None:
        self.fixed = fixed
        self.online = online
        self.deployed = deployed
        self.stack = deployed.stack
        self.name = f"{fixed.name}+online"
        self.target = fixed.target
        self.feature_names = tuple(fixed.feature_names)
        self.levels = deployed.levels
        self.learns_from = online.learns_from
        self.artifact = getattr(fixed, "artifact", None)

    def score_batch(self, X: np.ndarray, context: Context | None = None) -> Assessment:
        a = self.fixed.score_batch(X, context)
        o = self.online.score_batch(X, context)
        return Assessment(self.stack(a.risk, o.risk), a.contributions,
                          {**a.details, f"{self.target}_hybrid_risk": a.risk, **o.details})

    def attribute(self, X: np.ndarray) -> np.ndarray:
        return self.fixed.attribute(X)

    def explained_risk(self, X: np.ndarray) -> np.ndarray:
        """The risk the attributions explain: the fixed model's (see models.checks)."""
        return self.fixed.score_batch(X).risk

    def reference_row(self) -> np.ndarray:
        return self.fixed.reference_row()  # type: ignore[attr-defined]

    def save(self, directory: Path) -> None:
        self.fixed.save(directory)  # type: ignore[attr-defined]
        self.deployed.save(directory)

    @classmethod
    def load(cls, directory: Path, feature_names: tuple[str, ...]) -> StackedScorer:
        """The hybrid artifact and its deployed stack in ``directory`` (as vigil train
        writes them); the online model reads the hybrid's normalised inputs."""
        from vigil.models.hybrid_scorer import HybridScorer

        return cls.around(HybridScorer.load(directory, feature_names), directory)

    @classmethod
    def around(cls, fixed: Scorer, directory: Path) -> StackedScorer:
        """``fixed`` (a loaded hybrid) stacked with the deployed stack stored beside it; the
        online model learns the kind's own labels from the hybrid's normalised inputs."""
        deployed = DeployedStack.load(directory)
        online = OnlineScorer(deployed.online, fixed.norm,  # type: ignore[attr-defined]
                              target=fixed.target, learns_from=fixed.target)
        return cls(fixed, online, deployed)

    def levels_for_rate(self, target: float) -> tuple[tuple[float, str], ...]:
        return self.deployed.levels_for_rate(target)

    def learn(self, x: np.ndarray, label: int, group: int,
              read: Callable[[bytes], bytes | None] | None = None) -> None:
        self.online.learn(x, label, group, read)

    def take_state(self) -> list[tuple[int, bytes, bytes]]:
        return self.online.take_state()
