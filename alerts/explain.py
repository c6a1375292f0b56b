"""Explanations a nurse reads in two seconds: "NEWS2 8: RR 28 ↑, BP 92/55 ↓, HR 118 ↑".

Drivers are the measurements with the largest positive contribution to the risk (the
scorer's attributions, summed over every feature of a measurement), said as a nurse reads
them: the value and whether it is above or below the normal range, a trend worth saying
("HR 128 ↑, rising over 6 h"), or missing data ("no BP for 18 h") - never a feature's name.

Normal ranges: the zero-point bands of NEWS2 (RCP 2017) for RR, SpO2, SBP, HR, temperature
and consciousness; SIRS limits (Bone 1992) for WBC and PaCO2; lactate <= 2 mmol/L and
MAP >= 65 mmHg (Sepsis-3, Singer 2016); creatinine <= 1.2 mg/dL, platelets >= 150 x10^9/L
and bilirubin <= 1.2 mg/dL (the SOFA zero-point bands, Vincent 1996).
"""

from __future__ import annotations

import functools
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


#: measurements a nurse reads as one: the blood pressure is "BP 92/55", not three numbers
_GROUP = {"SBP": "BP", "DBP": "BP", "MAP": "BP"}
#: features that are not a measurement's, by the words they are read in
_OTHER = {"age_years": "age", "sex_male": "sex", "hours_since_icu_admission": "stay",
          "hours_since_hospital_admission": "stay", "shock_index": "shock index"}
#: a last value older than this is reported as "no <measurement> for N h" (hours): monitor
#: vitals are charted at least hourly in an ICU; labs are drawn daily or so
_STALE_H = {"vital": 4.0, "lab": 36.0}
_TREND = 0.1  # a change over the window of at least a tenth of the value is worth saying


def _fmt(x: float) -> str:
    if abs(x) >= 10 or x == int(x):
        return f"{x:.0f}"
    return f"{x:.1f}" if abs(x) >= 1 else f"{x:.2f}"


def _group(feature: str) -> str | None:
    """The measurement (or patient fact) a feature describes, or None."""
    if feature in _OTHER:
        return _OTHER[feature]
    code = feature.partition("_")[0]
    return _GROUP.get(code, code) if code in CODES else None


def _direction(code: str, value: float) -> str | None:
    if code not in NORMAL or math.isnan(value):
        return None
    lo, hi = NORMAL[code]
    return "up" if value > hi else "down" if value < lo else None


def _with_arrow(text: str, direction: str | None) -> str:
    return f"{text} {_ARROW[direction]}" if direction else text


def _get(x: dict[str, float], name: str) -> float:
    return x.get(name, float("nan"))


def _measurement(code: str, x: dict[str, float], label: str | None = None
                 ) -> tuple[str, float | None, str | None]:
    """(text, value, direction) of one measurement: its last value with the arrow and a
    trend or change worth saying, or how long it has not been measured."""
    spec = CODES[code]
    label = label or spec.label
    last, since = _get(x, f"{code}_last"), _get(x, f"{code}_hours_since")
    if math.isnan(last):
        return f"no {label} measured", None, None
    if since > _STALE_H["lab" if spec.kind == "lab" else "vital"]:
        return f"no {label} for {since:.0f} h (last {_fmt(last)})", last, None
    direction = _direction(code, last)
    shown = f"{last:.1f}" if code == "Temp" else _fmt(last)  # 38.3 °C is not 38
    text = _with_arrow(f"{label} {shown}", direction)
    slopes = [k for k in x if k.startswith(f"{code}_slope_")]
    if slopes:
        window = slopes[-1].rpartition("_")[2]  # the longest window, e.g. "6h"
        hours = float(window.rstrip("h") or 1)
        change = _get(x, slopes[-1]) * hours
        if abs(change) >= _TREND * max(abs(last), 1e-9):
            text += f", {'rising' if change > 0 else 'falling'} over {window.rstrip('h')} h"
    delta = _get(x, f"{code}_delta")
    if not math.isnan(delta) and abs(delta) >= _TREND * max(abs(last), 1e-9):
        text += f", {'up' if delta > 0 else 'down'} {_fmt(abs(delta))} since the one before"
    return text, last, direction


def _blood_pressure(x: dict[str, float]) -> tuple[str, float | None, str | None]:
    sbp, dbp = _get(x, "SBP_last"), _get(x, "DBP_last")
    since = min((v for v in (_get(x, f"{c}_hours_since") for c in ("SBP", "DBP", "MAP"))
                 if not math.isnan(v)), default=float("nan"))
    if math.isnan(sbp):
        if math.isnan(_get(x, "MAP_last")):
            if math.isnan(since):
                return "no BP measured", None, None
            return f"no BP for {since:.0f} h", None, None
        return _measurement("MAP", x)
    text, value, direction = _measurement("SBP", x, "BP")
    if not math.isnan(dbp) and text.startswith("BP "):
        text = text.replace(f"BP {_fmt(sbp)}", f"BP {_fmt(sbp)}/{_fmt(dbp)}", 1)
    return text, value, direction


def _phrase(group: str, x: dict[str, float]) -> tuple[str, float | None, str | None]:
    if group == "BP":
        return _blood_pressure(x)
    if group == "age":
        age = _get(x, "age_years")
        return (f"age {age:.0f}", age, None) if not math.isnan(age) else ("age unknown", None,
                                                                           None)
    if group == "sex":
        male = _get(x, "sex_male")
        return ("male" if male == 1 else "female" if male == 0 else "sex unknown"), None, None
    if group == "stay":
        h = _get(x, "hours_since_icu_admission")
        if math.isnan(h):
            h = _get(x, "hours_since_hospital_admission")
            return (f"{h:.0f} h since hospital admission" if not math.isnan(h)
                    else "admission time unknown"), None, None
        return f"{h:.0f} h since ICU admission", h, None
    if group == "shock index":
        si = _get(x, "shock_index")
        if math.isnan(si):
            return "shock index unknown (no HR or SBP)", None, None
        return _with_arrow(f"shock index {si:.1f}", "up" if si >= 1.0 else None), si, (
            "up" if si >= 1.0 else None)
    return _measurement(group, x)


def drivers(feature_names: tuple[str, ...], x: np.ndarray, contributions: np.ndarray,
            top: int = 3) -> list[Driver]:
    """What drives one row's risk, in a nurse's words: contributions summed per measurement
    (every HR feature explains "HR"; SBP, DBP and MAP explain "BP"), the largest positive
    ones first, each as its value and direction, a trend worth saying, or how long it has
    not been measured ("no BP for 18 h"). Never a feature's name.

    >>> names = ("RR_last", "RR_hours_since", "SBP_last", "SBP_hours_since", "HR_last",
    ...          "HR_hours_since", "DBP_last", "DBP_hours_since")
    >>> x = np.array([28., 0.5, 92., 0.5, 80., 0.5, 55., 0.5])
    >>> [d.text for d in drivers(names, x, np.array([.1, .05, .1, 0, 0, 0, .01, 0]))]
    ['RR 28 ↑', 'BP 92/55 ↓']
    """
    groups, index = _groups_of(tuple(feature_names))
    c = np.asarray(contributions, np.float64)
    keep = (index >= 0) & ~np.isnan(c)
    totals = np.bincount(index[keep], weights=c[keep], minlength=len(groups))
    order = [g for g in np.argsort(-totals, kind="stable")[:top] if totals[g] > 0]
    values = _RowValues(feature_names, x)
    out = []
    for g in order:
        text, value, direction = _phrase(groups[g], values)
        out.append(Driver(groups[g], text, value, float(totals[g]), direction))
    return out


@functools.lru_cache(maxsize=8)
def _groups_of(feature_names: tuple[str, ...]) -> tuple[list[str], np.ndarray]:
    """Each feature's measurement group as an index (-1: none), computed once per schema:
    alerts are explained on the hot path."""
    groups: list[str] = []
    index = np.full(len(feature_names), -1, np.intp)
    for j, name in enumerate(feature_names):
        group = _group(name)
        if group is not None:
            if group not in groups:
                groups.append(group)
            index[j] = groups.index(group)
    return groups, index


class _RowValues(dict):
    """One row's values by feature name, read only for the few features a phrase needs."""

    def __init__(self, feature_names: tuple[str, ...], x: np.ndarray) -> None:
        super().__init__()
        self._pos = _positions(tuple(feature_names))
        self._x = x

    def get(self, name: str, default: float = float("nan")) -> float:  # type: ignore[override]
        j = self._pos.get(name)
        return default if j is None else float(self._x[j])

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._pos)


@functools.lru_cache(maxsize=8)
def _positions(feature_names: tuple[str, ...]) -> dict[str, int]:
    return {n: j for j, n in enumerate(feature_names)}


def summary(head: str, found: list[Driver]) -> str:
    """``head`` (the kind's headline, e.g. "NEWS2 8") and the drivers, one per measurement
    (a driver may say more than one thing: "HR 128 ↑, rising over 6 h")."""
    return f"{head}: {'; '.join(d.text for d in found)}" if found else head


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
