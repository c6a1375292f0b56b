"""Explanations a nurse reads in two seconds: "NEWS2 8: RR 28 ↑, SBP 92 ↓, HR 118 ↑".

Drivers are the features with the largest positive contribution to the risk (the scorer's
attributions), shown with their value and whether it is above or below the normal range.

Normal ranges: the zero-point bands of NEWS2 (RCP 2017) for RR, SpO2, SBP, HR, temperature
and consciousness; SIRS limits (Bone 1992) for WBC and PaCO2; lactate <= 2 mmol/L and
MAP >= 65 mmHg (Sepsis-3, Singer 2016); creatinine <= 1.2 mg/dL, platelets >= 150 x10^9/L
and bilirubin <= 1.2 mg/dL (the SOFA zero-point bands, Vincent 1996).
"""

from __future__ import annotations

import math

import numpy as np

from vigil.alerts.lifecycle import Rules
from vigil.wire.codes import CODES
from vigil.wire.durations import HOUR_MS
from vigil.wire.records import Driver

__all__ = ["NORMAL", "drivers", "resolved", "summary", "transition"]

NORMAL: dict[str, tuple[float, float]] = {
    "RR": (12, 20), "SpO2": (96, 100), "SBP": (111, 219), "HR": (51, 90),
    "Temp": (36.1, 38.0), "GCS": (15, 15), "FiO2": (0.21, 0.21), "Lactate": (0, 2.0),
    "WBC": (4, 12), "PaCO2": (32, 45), "MAP": (65, 110), "Creatinine": (0, 1.2),
    "Platelets": (150, 450), "Bilirubin": (0, 1.2), "SaO2": (96, 100),
}
_ARROW = {"up": "↑", "down": "↓"}


def _fmt(x: float) -> str:
    if abs(x) >= 10 or x == int(x):
        return f"{x:.0f}"
    return f"{x:.1f}" if abs(x) >= 1 else f"{x:.2f}"


def _driver(feature: str, value: float, contribution: float) -> Driver:
    code, _, stat = feature.partition("_")
    spec = CODES.get(code)
    if spec is None or math.isnan(value):
        return Driver(feature, feature.replace("_", " "), None if math.isnan(value) else value,
                      contribution)
    direction = None
    if stat == "last" and code in NORMAL:
        lo, hi = NORMAL[code]
        direction = "up" if value > hi else "down" if value < lo else None
    elif stat.startswith(("slope", "delta")):
        direction = "up" if value > 0 else "down" if value < 0 else None
    label = spec.label
    if stat == "last":
        text = f"{label} {_fmt(value)}"
    elif stat.startswith("slope"):
        text = f"{label} trend {value:+.1f}/h"
    else:
        text = f"{label} {stat.replace('_', ' ')} {_fmt(value)}"
    if direction:
        text += f" {_ARROW[direction]}"
    return Driver(feature, text, float(value), float(contribution), direction)


def drivers(feature_names: tuple[str, ...], x: np.ndarray, contributions: np.ndarray,
            top: int = 3) -> list[Driver]:
    """The top positive contributors of one row, largest first.

    >>> names = ("RR_last", "SBP_last", "HR_last")
    >>> [d.text for d in drivers(names, np.array([28., 92., 80.]), np.array([.15, .1, 0.]))]
    ['RR 28 ↑', 'SBP 92 ↓']
    """
    order = np.argsort(-contributions, kind="stable")[:top]
    return [_driver(feature_names[j], float(x[j]), float(contributions[j]))
            for j in order if contributions[j] > 0]


def summary(head: str, found: list[Driver]) -> str:
    """``head`` (the kind's headline, e.g. "NEWS2 8") and the drivers."""
    return f"{head}: {', '.join(d.text for d in found)}" if found else head


def resolved(head: str, clear_after_ms: int) -> str:
    """Why an alert closed: ``"NEWS2 3, below the clear level for 2 h"``."""
    return f"{head}, below the clear level for {_span(clear_after_ms)}"


def transition(state: str, cause: str, severity: str, risk: float, threshold: float,
               clear_level: float, rules: Rules) -> str:
    """Why the lifecycle moved, in words for the board: ``"unacknowledged for 30 min"``."""
    if state == "raised":
        return ("a red parameter" if cause == "flag" and not risk >= threshold
                else f"risk {risk:.3f} ≥ {threshold:.3f}")
    if state == "escalated":
        if cause == "unacknowledged":
            return f"unacknowledged for {_span(rules.escalate_after_ms)}, now {severity}"
        return f"risk rose to {severity} ({risk:.3f} ≥ {threshold:.3f})"
    if state == "resolved":
        return f"below {clear_level:.3f} for {_span(rules.clear_after_ms)}"
    return state


def _span(ms: int) -> str:
    """A duration as a nurse says it.

    >>> [_span(ms) for ms in (10_000, 1_800_000, 7_200_000)]
    ['10 s', '30 min', '2 h']
    """
    if ms < 60_000:
        return f"{ms / 1000:.0f} s"
    hours = ms / HOUR_MS
    return f"{hours:.0f} h" if hours >= 1 else f"{ms / 60_000:.0f} min"
