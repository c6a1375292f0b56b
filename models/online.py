"""The online model: River logistic regression that keeps learning from delayed labels.

It reads the same normalised inputs as the hybrid model (the artifact's normaliser), is
warm-started on the training patients, and then learns one labelled hour at a time as
outcomes arrive on the labels topic, hours after the predictions they judge. Positive
hours weigh sqrt(n_neg / n_pos) more (a softer weighting than the hybrid's, because an
online learner sees no second epoch). Its state is a small pickle, kept per vitals partition
in the changelogged patients table, so it survives worker restarts and moves with the
partition's patients.

River's one-at-a-time verbs (``learn_one`` / ``predict_proba_one``) are the interface; the
model is plain ``river.linear_model.LogisticRegression``.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import numpy as np
from river import linear_model, optim

__all__ = ["OnlineModel", "new_model", "replay_online"]


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
