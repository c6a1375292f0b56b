"""Online learning in the stream: one River model per vitals partition, fed by delayed labels.

A label says what an hour turned out to be, up to 6 h after that hour (PhysioNet 2019's
shifted sepsis labels). The worker recomputes that hour's features from the patient's window
state with the one feature function (the state keeps enough history: the window horizon
covers ``VIGIL_LABEL_DELAY_S``), and the partition's model learns them. Models live in the
patients table under ``#online/<partition>`` (a key no patient can have), so a restarted or
rebalanced worker resumes from what the partition's model had learned.

In-process models are cached with the exact bytes object they came from (as patient states
are): a table recovery stores new bytes, which makes the cache reload them.
"""

from __future__ import annotations

import numpy as np

from vigil.models.deployed import DeployedSepsis
from vigil.models.online import OnlineModel
from vigil.models.preprocess import Normaliser

__all__ = ["OnlineSepsis", "online_key"]


def online_key(partition: int) -> bytes:
    return b"#online/%d" % partition


class OnlineSepsis:
    """Per-partition online models and the stacking that makes the deployed risk."""

    def __init__(self, deployed: DeployedSepsis, normaliser: Normaliser) -> None:
        self.deployed = deployed
        self.stack = deployed.stack
        self.levels = deployed.levels
        self.normaliser = normaliser
        self._warm = deployed.online.dumps()
        self._models: dict[int, tuple[bytes | None, OnlineModel]] = {}
        self.dirty: set[int] = set()

    def model(self, partition: int, stored: bytes | None) -> OnlineModel:
        """The partition's model, from ``stored`` (table bytes) or the warm start."""
        hit = self._models.get(partition)
        if hit is not None and hit[0] is stored:  # same bytes (or both unsaved): still valid
            return hit[1]
        m = OnlineModel.loads(stored if stored is not None else self._warm)
        self._models[partition] = (stored, m)
        return m

    def combine(self, p_hybrid: np.ndarray, X: np.ndarray, partitions: np.ndarray,
                stored: dict[int, bytes | None]) -> tuple[np.ndarray, np.ndarray]:
        """(deployed risk, online risk) for rows of ``X`` in the given partitions."""
        Z = self.normaliser.transform(X)
        p_online = np.empty(len(X))
        for p in np.unique(partitions):
            idx = np.flatnonzero(partitions == p)
            p_online[idx] = self.model(int(p), stored.get(int(p))).predict(Z[idx])
        return self.stack(p_hybrid, p_online), p_online

    def learn(self, partition: int, stored: bytes | None, features: list[float],
              label: int) -> None:
        m = self.model(partition, stored)
        m.learn(self.normaliser.transform(np.asarray([features]))[0], label)
        self.dirty.add(partition)

    def take_dirty(self) -> dict[int, bytes]:
        """Serialised models that learned since the last call; the cache now holds these bytes."""
        out = {}
        for p in sorted(self.dirty):
            raw = self._models[p][1].dumps()
            self._models[p] = (raw, self._models[p][1])
            out[p] = raw
        self.dirty.clear()
        return out
