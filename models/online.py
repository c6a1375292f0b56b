"""The online model: River logistic regression that keeps learning from delayed labels.

It reads the same normalised inputs as the hybrid model (the artifact's normaliser), is
warm-started on the training patients, and then learns one labelled hour at a time as
outcomes arrive on the labels topic, hours after the predictions they judge. Positive
hours weigh sqrt(n_neg / n_pos) more (a softer weighting than the hybrid's, because an
online learner sees no second epoch). Its state is a small pickle, kept per vitals partition
in the changelogged patients table, so it survives worker restarts and moves with the
partition's patients.

River's one-at-a-time verbs (``learn_one`` / ``predict_proba_one``) are the interface; the
model is plain ``river.linear_model.LogisticRegression``. :class:`OnlineScorer` puts it
behind Vigil's scorer interface (:mod:`vigil.models.base`): one model per group of rows,
read from and written back to the caller's table.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from river import linear_model, optim

from vigil.models.base import Assessment, Context
from vigil.models.preprocess import Normaliser

__all__ = ["OnlineModel", "OnlineScorer", "new_model", "replay_online"]


def new_model() -> linear_model.LogisticRegression:
    return linear_model.LogisticRegression(optimizer=optim.SGD(0.005), l2=1e-5,
                                           intercept_lr=0.005)


def _x(z: np.ndarray) -> dict[int, float]:
    return dict(enumerate(z.tolist()))


@dataclass
class OnlineModel:
    model: linear_model.LogisticRegression
    pos_weight: float
    labels_seen: int = 0

    def predict(self, Z: np.ndarray) -> np.ndarray:
        """Probabilities for normalised rows."""
        predict = self.model.predict_proba_one
        return np.fromiter((predict(_x(z)).get(True, 0.0) for z in Z), float, len(Z))

    def learn(self, z: np.ndarray, label: int) -> None:
        self.model.learn_one(_x(z), bool(label), w=self.pos_weight if label else 1.0)
        self.labels_seen += 1

    def dumps(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def loads(raw: bytes) -> OnlineModel:
        obj = pickle.loads(raw)  # noqa: S301 - our own changelog / artifact, never user input
        if not isinstance(obj, OnlineModel):
            raise TypeError("not a Vigil online model")
        return obj

    @classmethod
    def warm_start(cls, Z: np.ndarray, y: np.ndarray, *, seed: int = 42) -> OnlineModel:
        """One pass over training rows in a seeded random order."""
        n_pos = max(1, int(np.sum(y)))
        m = cls(new_model(), float(np.sqrt((len(y) - n_pos) / n_pos)))
        for i in np.random.default_rng(seed).permutation(len(Z)):
            m.learn(Z[i], int(y[i]))
        m.labels_seen = 0  # count what it learns online, after deployment
        return m


class OnlineScorer:
    """The online model as a scorer and learner: one River model per group (partition).

    A group's model lives in the caller's table under ``state_prefix + group``; until the
    group has learned anything it is the warm start. In-process models are cached with the
    exact bytes object they came from (as patient states are): a table recovery stores new
    bytes, which makes the cache reload them.
    """

    floor_flag = None
    attribution = "gradient"  # gradient x input of the warm model (see models.checks)

    def __init__(self, warm: OnlineModel, normaliser: Normaliser, *, target: str,
                 learns_from: str, name: str = "online-river",
                 levels: tuple[tuple[float, str], ...] = ((0.5, "medium"),),
                 state_prefix: bytes = b"#online/") -> None:
        self.name = name
        self.target = target
        self.learns_from = learns_from
        self.levels = levels
        self.normaliser = normaliser
        self.feature_names = tuple(normaliser.names)
        self.state_prefix = state_prefix
        self._warm = warm.dumps()
        self._models: dict[int, tuple[bytes | None, OnlineModel]] = {}
        self.dirty: set[int] = set()
        self._n = len(self.feature_names)
        self._ind = np.asarray(normaliser.indicator_columns)

    def save(self, directory: Path) -> None:
        """The warm start, its normaliser and what it learns, in ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "online-scorer.pkl").write_bytes(self._warm)
        np.savez(directory / "online-normaliser.npz", **self.normaliser.to_arrays(""))
        (directory / "online-scorer.json").write_text(json.dumps({
            "name": self.name, "target": self.target, "learns_from": self.learns_from,
            "levels": [list(lv) for lv in self.levels], "clip": self.normaliser.clip,
            "state_prefix": self.state_prefix.decode()}))

    @classmethod
    def load(cls, directory: Path, feature_names: tuple[str, ...]) -> OnlineScorer:
        directory = Path(directory)
        meta = json.loads((directory / "online-scorer.json").read_text())
        with np.load(directory / "online-normaliser.npz") as arrays:
            norm = Normaliser.from_arrays(tuple(feature_names), dict(arrays), "", meta["clip"])
        return cls(OnlineModel.loads((directory / "online-scorer.pkl").read_bytes()), norm,
                   target=meta["target"], learns_from=meta["learns_from"], name=meta["name"],
                   levels=tuple((float(t), str(s)) for t, s in meta["levels"]),
                   state_prefix=meta["state_prefix"].encode())

    def reference_row(self) -> np.ndarray:
        return np.asarray(self.normaliser.median, np.float64)

    def state_key(self, group: int) -> bytes:
        """The table key of a group's model (a key no patient pseudonym can have)."""
        return b"%s%d" % (self.state_prefix, group)

    def model(self, group: int, stored: bytes | None) -> OnlineModel:
        """The group's model, from ``stored`` (table bytes) or the warm start."""
        hit = self._models.get(group)
        if hit is not None and hit[0] is stored:  # same bytes (or both unsaved): still valid
            return hit[1]
        m = OnlineModel.loads(stored if stored is not None else self._warm)
        self._models[group] = (stored, m)
        return m

    def _model_for(self, group: int, read: Callable[[bytes], bytes | None] | None
                   ) -> OnlineModel:
        return self.model(group, read(self.state_key(group)) if read is not None else None)

    def score_batch(self, X: np.ndarray, context: Context | None = None) -> Assessment:
        n = context.real if context is not None and context.real is not None else len(X)
        Z = self.normaliser.transform(X[:n])
        groups = (context.groups[:n] if context is not None and context.groups is not None
                  else np.zeros(n, int))
        read = context.read if context is not None else None
        risk = np.full(len(X), np.nan)  # padding rows stay NaN: River predicts row by row
        for g in np.unique(groups):
            idx = np.flatnonzero(groups == g)
            risk[idx] = self._model_for(int(g), read).predict(Z[idx])
        return Assessment(risk, None, {f"{self.target}_online_risk": risk})

    def attribute(self, X: np.ndarray) -> np.ndarray:
        """Gradient x input of the warm model's probability: p(1-p) w_j z_j per feature
        (missingness indicators add to their feature), as for the hybrid."""
        m = OnlineModel.loads(self._warm)
        Z = self.normaliser.transform(X).astype(np.float64)
        w = np.array([m.model.weights.get(j, 0.0) for j in range(Z.shape[1])])
        p = m.predict(Z)
        gz = (p * (1 - p))[:, None] * w[None, :] * Z
        contrib = gz[:, :self._n].copy()
        np.add.at(contrib, (slice(None), self._ind), gz[:, self._n:])
        return contrib

    def learn(self, x: np.ndarray, label: int, group: int,
              read: Callable[[bytes], bytes | None] | None = None) -> None:
        m = self._model_for(group, read)
        m.learn(self.normaliser.transform(np.asarray([x]))[0], label)
        self.dirty.add(group)

    def take_state(self) -> list[tuple[int, bytes, bytes]]:
        """(group, table key, bytes) of the models that learned since the last call; the
        cache now holds these bytes."""
        out = []
        for g in sorted(self.dirty):
            raw = self._models[g][1].dumps()
            self._models[g] = (raw, self._models[g][1])
            out.append((g, self.state_key(g), raw))
        self.dirty.clear()
        return out


def replay_online(model: OnlineModel, Z: np.ndarray, labels: np.ndarray,
                  patient: np.ndarray, delay_rows: int = 6) -> np.ndarray:
    """Causal online predictions over a cohort, as the stream would make them.

    Patients one after another, each hour predicted before anything from that hour is
    learned; an hour's label is learned ``delay_rows`` hours later (PhysioNet 2019 labels are
    certain at most 6 h after the hour they describe), the rest at the end of the stay.
    Works on a copy: ``model`` is unchanged.
    """
    m = OnlineModel.loads(model.dumps())
    out = np.empty(len(Z))
    bounds = np.r_[0, np.flatnonzero(np.diff(patient)) + 1, len(Z)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        learned = a
        for k in range(a, b):
            out[k] = m.predict(Z[k:k + 1])[0]
            while learned <= k - delay_rows:
                m.learn(Z[learned], int(labels[learned]))
                learned += 1
        while learned < b:
            m.learn(Z[learned], int(labels[learned]))
            learned += 1
    return out
