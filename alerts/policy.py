"""Alert levels: how a risk (and a red-flag detail) becomes a severity, or none.

Levels come from the alert kind (the scorer's own, or those its artifact chose on training
data for a target alert rate; see :mod:`vigil.kinds`) and can be overridden in settings, so
a unit can tighten or loosen them without a new model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Policy", "SEVERITY_RANK"]

SEVERITY_RANK = {"": 0, "low": 1, "medium": 2, "high": 3}


@dataclass(frozen=True)
class Policy:
    """Ascending ``(threshold, severity)`` levels for one alert kind.

    >>> p = Policy("sepsis", ((0.5, "medium"), (0.8, "high")))
    >>> [p.severity(r) for r in (0.49, 0.5, 0.79, 0.8)]
    [None, 'medium', 'medium', 'high']
    >>> Policy("deterioration", ((0.35, "high"),), "red").severity(0.1, flag=1.0)
    'medium'

    Hysteresis: an active alert clears only below ``clear_ratio`` x the raise threshold
    (and with no red flag), so a risk hovering at the threshold does not flap.

    >>> [p.below_clear(r) for r in (0.45, 0.39, float("nan"))]
    [False, True, False]
    """

    kind: str
    levels: tuple[tuple[float, str], ...]
    floor_flag: str | None = None
    floor_severity: str = "medium"
    clear_ratio: float = 0.8

    def __post_init__(self) -> None:
        thresholds = [t for t, _ in self.levels]
        if not self.levels or thresholds != sorted(thresholds):
            raise ValueError(f"{self.kind}: levels must be non-empty and ascending")
        if any(s not in SEVERITY_RANK or not s for _, s in self.levels):
            raise ValueError(f"{self.kind}: unknown severity in {self.levels}")
        if not 0 < self.clear_ratio <= 1:
            raise ValueError(f"{self.kind}: clear_ratio must be in (0, 1]")

    @property
    def raise_threshold(self) -> float:
        return self.levels[0][0]

    @property
    def clear_level(self) -> float:
        return self.raise_threshold * self.clear_ratio

    def below_clear(self, risk: float, flag: float = 0.0) -> bool:
        """True when the row lets an active alert start clearing (NaN risk does not)."""
        return not np.isnan(risk) and risk < self.clear_level and not (flag and flag > 0)

    def severity(self, risk: float, flag: float = 0.0) -> str | None:
        found: str | None = None
        if not np.isnan(risk):
            for threshold, sev in self.levels:
                if risk >= threshold:
                    found = sev
        if flag and flag > 0 and SEVERITY_RANK[found or ""] < SEVERITY_RANK[self.floor_severity]:
            found = self.floor_severity
        return found

    def threshold_for(self, severity: str) -> float:
        for threshold, sev in self.levels:
            if sev == severity:
                return threshold
        return self.raise_threshold
