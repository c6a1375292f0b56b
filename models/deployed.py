"""A deployed score: a trained model (the hybrid quantum model) and its online River model,
stacked, with other fixed models beside them where they help (LightGBM for deterioration).

    risk = sigmoid(w_q * logit(p_hybrid) + w_r * logit(p_online) [+ w_g * logit(p_gbm)] + b)

The numbers are a logistic regression fitted on the validation patients (stacking,
Wolpert 1992), so each model weighs what it adds there; the alert levels are chosen on the
same patients. The hybrid supplies the ranking and the explanations (its gradients); the
online model follows the unit it runs in, learning from labels as they arrive.

Stored next to the hybrid's artifact: ``deployed.json`` (weights, levels, validation
figures) and ``online.pkl`` (the warm-started River model) - :class:`DeployedStack`;
:class:`StackedScorer` is the same thing behind the scorer interface, for the stream.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
    """The stacking regression: one weight per member's logit, plus a bias.

    ``members`` are fixed models stacked beside the hybrid and the online model (LightGBM
    for deterioration), each ``(name, weight)``.
    """

    w_hybrid: float
    w_online: float
    bias: float
    members: tuple[tuple[str, float], ...] = ()

    def __call__(self, p_hybrid: np.ndarray, p_online: np.ndarray,
                 others: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        z = self.w_hybrid * logit(p_hybrid) + self.w_online * logit(p_online) + self.bias
        for name, w in self.members:
            if others is None or name not in others:
                raise ValueError(f"the stack needs {name!r}'s probabilities")
            z = z + w * logit(others[name])
        return 1.0 / (1.0 + np.exp(-z))

    @classmethod
    def fit(cls, p_hybrid: np.ndarray, p_online: np.ndarray, y: np.ndarray,
            others: Mapping[str, np.ndarray] | None = None, iters: int = 50) -> Stack:
        """Logistic regression on the members' logits (Newton's method).

        >>> rng = np.random.default_rng(1); y = rng.random(4000) < 0.2
        >>> a = np.where(y, 0.6, 0.3) + rng.normal(0, .1, 4000).clip(-.25, .25)
        >>> Stack.fit(a, np.full(4000, 0.5), y).w_hybrid > 1
        True
        """
        names = tuple(others or ())
        X = np.c_[logit(p_hybrid), logit(p_online), np.ones(len(y)),
                  *[logit(others[n]) for n in names]]  # type: ignore[index]
        t = np.asarray(y, float)
        k = X.shape[1]
        beta = np.zeros(k)
        for _ in range(iters):
            p = 1.0 / (1.0 + np.exp(-(X @ beta)))
            w = p * (1 - p) + 1e-9
            step = np.linalg.solve((X * w[:, None]).T @ X + 1e-6 * np.eye(k), X.T @ (p - t))
            beta -= step
            if np.abs(step).max() < 1e-10:
                break
        return cls(float(beta[0]), float(beta[1]), float(beta[2]),
                   tuple((n, float(b)) for n, b in zip(names, beta[3:])))

    def to_json(self) -> dict:
        out: dict = {"w_hybrid": self.w_hybrid, "w_online": self.w_online, "bias": self.bias}
        if self.members:
            out["members"] = {n: w for n, w in self.members}
        return out

    @classmethod
    def from_json(cls, d: dict) -> Stack:
        return cls(float(d["w_hybrid"]), float(d["w_online"]), float(d["bias"]),
                   tuple((str(n), float(w)) for n, w in d.get("members", {}).items()))


@dataclass
class DeployedStack:
    stack: Stack
    levels: tuple[tuple[float, str], ...]
    online: OnlineModel
    metrics: dict
    # levels chosen on the training patients for target alert rates under the lifecycle:
    # [{"alerts_per_patient_day": target, "levels": [[t, "medium"], [h, "high"]], ...}]
    rate_levels: tuple[dict, ...] = ()
    #: files of the stack's other fixed members, relative to the artifact ({"gbm": ...})
    member_files: Mapping[str, str] = field(default_factory=dict)
    #: the same stack refitted without the circuit ("without the circuit": the hybrid's
    #: column left out; "classical layer for the circuit": the same-size ablation in its
    #: place), so evaluation can report what the circuit adds on held-out patients
    ablations: Mapping[str, Stack] = field(default_factory=dict)

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
            "combination": "sigmoid(w_hybrid*logit(p_hybrid) + w_online*logit(p_online)"
                           + "".join(f" + w_{n}*logit(p_{n})" for n, _ in self.stack.members)
                           + " + bias)",
            "stack": self.stack.to_json(),
            **({"member_files": dict(self.member_files)} if self.member_files else {}),
            **({"ablations": {n: st.to_json() for n, st in self.ablations.items()}}
               if self.ablations else {}),
            "levels": [list(lv) for lv in self.levels],
            "online_model": "online.pkl",
            "metrics": self.metrics,
            "levels_by_alert_rate": list(self.rate_levels),
        }, indent=1))

    @classmethod
    def load(cls, directory: Path) -> DeployedStack:
        directory = Path(directory)
        meta = json.loads((directory / "deployed.json").read_text())
        return cls(Stack.from_json(meta["stack"]),
                   tuple((float(t), str(s)) for t, s in meta["levels"]),
                   OnlineModel.loads((directory / meta["online_model"]).read_bytes()),
                   meta.get("metrics", {}), tuple(meta.get("levels_by_alert_rate", ())),
                   dict(meta.get("member_files", {})),
                   {n: Stack.from_json(d) for n, d in meta.get("ablations", {}).items()})

    @staticmethod
    def present(directory: Path) -> bool:
        return (Path(directory) / "deployed.json").exists()


DeployedSepsis = DeployedStack  # the name the sepsis artifact was written under


class StackedScorer:
    """The deployed score as a scorer: the fixed models' risks stacked with the online one's.

    The explanations come from the stack's heaviest fixed member (largest weight on its
    logit: the hybrid for sepsis, LightGBM where it carries more of the deterioration
    stack), so what a nurse reads is what moves the deployed risk most; the check suite
    holds them to that member's promise (``explained_risk``). The online model learns the
    delayed labels (this scorer is a :class:`~vigil.models.base.Learner` through it).
    """

    floor_flag = None

    def __init__(self, fixed: Scorer, online: OnlineScorer, deployed: DeployedStack,
                 members: Mapping[str, Scorer] | None = None) -> None:
        self.fixed = fixed
        self.online = online
        self.members = dict(members or {})
        missing = {n for n, _ in deployed.stack.members} - set(self.members)
        if missing:
            raise ValueError(f"the deployed stack needs its members {sorted(missing)}")
        self.deployed = deployed
        self.stack = deployed.stack
        self.name = "+".join([fixed.name, *self.members, "online"])
        self.target = fixed.target
        self.feature_names = tuple(fixed.feature_names)
        self.levels = deployed.levels
        self.learns_from = online.learns_from
        self.artifact = getattr(fixed, "artifact", None)
        weights = {n: abs(w) for n, w in deployed.stack.members}
        heaviest = max(weights, key=weights.__getitem__, default=None)
        self.explainer: Scorer = (self.members[heaviest] if heaviest is not None
                                  and weights[heaviest] > abs(deployed.stack.w_hybrid)
                                  else fixed)
        self.attribution = getattr(self.explainer, "attribution", "gradient")

    def score_batch(self, X: np.ndarray, context: Context | None = None) -> Assessment:
        a = self.fixed.score_batch(X, context)
        o = self.online.score_batch(X, context)
        others = {n: m.score_batch(X, context) for n, m in self.members.items()}
        details = {**a.details, f"{self.target}_hybrid_risk": a.risk, **o.details}
        for n, m in others.items():
            details[f"{self.target}_{n}_risk"] = m.risk
        return Assessment(self.stack(a.risk, o.risk, {n: m.risk for n, m in others.items()}),
                          None, details)

    def attribute(self, X: np.ndarray) -> np.ndarray:
        return self.explainer.attribute(X)

    def explained_risk(self, X: np.ndarray) -> np.ndarray:
        """The risk the attributions explain: the explaining member's (see models.checks)."""
        explained = getattr(self.explainer, "explained_risk", None)
        return explained(X) if explained is not None else self.explainer.score_batch(X).risk

    def reference_row(self) -> np.ndarray:
        return self.explainer.reference_row()  # type: ignore[attr-defined]

    def save(self, directory: Path) -> None:
        self.fixed.save(directory)  # type: ignore[attr-defined]
        self.deployed.save(directory)
        for n, f in self.deployed.member_files.items():
            self.members[n].save_file(Path(directory) / f)  # type: ignore[attr-defined]

    @classmethod
    def load(cls, directory: Path, feature_names: tuple[str, ...]) -> StackedScorer:
        """The hybrid artifact and its deployed stack in ``directory`` (as vigil train
        writes them); the online model reads the hybrid's normalised inputs."""
        from vigil.models.hybrid_scorer import HybridScorer

        return cls.around(HybridScorer.load(directory, feature_names), directory)

    @classmethod
    def around(cls, fixed: Scorer, directory: Path, learns_from: str | None = None,
               state_prefix: bytes = b"#online/") -> StackedScorer:
        """``fixed`` (a loaded hybrid) stacked with the deployed stack stored beside it; the
        online model learns ``learns_from`` labels (default: the kind's own) from the
        hybrid's normalised inputs, and keeps its per-partition models in the table under
        ``state_prefix`` (one per kind)."""
        from vigil.models.gbm import GbmScorer

        deployed = DeployedStack.load(directory)
        learns = learns_from or deployed.metrics.get("learns_from") or fixed.target
        online = OnlineScorer(deployed.online, fixed.norm,  # type: ignore[attr-defined]
                              target=fixed.target, learns_from=learns,
                              state_prefix=state_prefix)
        loaders = {"gbm": GbmScorer.load_file}
        members = {n: loaders[n](Path(directory) / f, fixed.feature_names, fixed.target)
                   for n, f in deployed.member_files.items()}
        return cls(fixed, online, deployed, members)

    def levels_for_rate(self, target: float) -> tuple[tuple[float, str], ...]:
        return self.deployed.levels_for_rate(target)

    def learn(self, x: np.ndarray, label: int, group: int,
              read: Callable[[bytes], bytes | None] | None = None) -> None:
        self.online.learn(x, label, group, read)

    def take_state(self) -> list[tuple[int, bytes, bytes]]:
        return self.online.take_state()
