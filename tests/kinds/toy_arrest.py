"""A new alert kind defined in test code only: "arrest", scored by a toy heart-rate rule.

Nothing in Vigil names it: a worker given ``VIGIL_KINDS=[..., "tests.kinds.toy_arrest"]``
scores it, alerts on it, explains it and counts it (``tests/test_new_kind.py``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from vigil.kinds import AlertKind
from vigil.models.base import Assessment, Context


class HeartRateScorer:
    """risk = (HR - 60) / 100, clipped to [0, 1]: a toy, not a clinical rule."""

    name = "toy-hr"
    target = "arrest"
    levels = ((0.5, "medium"), (0.8, "high"))  # HR >= 110, >= 140
    floor_flag = None
    attribution = "additive"  # all of the risk is the heart rate's

    def __init__(self, feature_names: tuple[str, ...]) -> None:
        self.feature_names = feature_names
        self.col = feature_names.index("HR_last")

    def score_batch(self, X: np.ndarray, context: Context | None = None) -> Assessment:
        risk = np.clip((X[:, self.col] - 60.0) / 100.0, 0.0, 1.0)
        return Assessment(np.nan_to_num(risk), None, {"arrest_toy_hr": X[:, self.col]})

    def attribute(self, X: np.ndarray) -> np.ndarray:
        contrib = np.zeros_like(X)
        contrib[:, self.col] = np.nan_to_num(self.score_batch(X).risk)
        return contrib


def headline(scorer: str, risk: float, details: Mapping[str, float]) -> str:
    return f"toy arrest risk {risk:.0%}"


KIND = AlertKind(
    name="arrest",
    label="Arrest (toy)",
    build=lambda settings, names: HeartRateScorer(names),
    headline=headline,
    rules={"escalate_after_ms": 10 * 3_600_000},  # a lifecycle override of this kind only
)
