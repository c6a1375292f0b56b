"""The published bedside scores: NEWS2, qSOFA, SIRS and the shock index.

Sources, each implemented at its published boundaries:

* NEWS2 - Royal College of Physicians. National Early Warning Score (NEWS) 2: Standardising
  the assessment of acute-illness severity in the NHS. London: RCP, 2017. Chart 1 (the
  scoring table), SpO2 scale 1; aggregate 5-6 "urgent", >= 7 "emergency response"; a score
  of 3 in any single parameter ("red score") also triggers an urgent review.
* qSOFA - Seymour CW et al. JAMA 2016;315(8):762-774 and Singer M et al. (Sepsis-3) JAMA
  2016;315(8):801-810: RR >= 22/min, systolic BP <= 100 mmHg, altered mentation (GCS < 15);
  >= 2 of 3 flags a patient with suspected infection as likely septic.
* SIRS - Bone RC et al. (ACCP/SCCM consensus). Chest 1992;101(6):1644-1655: temperature
  > 38 or < 36 °C; HR > 90/min; RR > 20/min or PaCO2 < 32 mmHg; WBC > 12 or < 4 x10^9/L
  (band forms are not in Vigil's code set); >= 2 criteria.
* Shock index - Allgöwer M, Burri C. Dtsch Med Wochenschr 1967;92(43):1947-1950: HR / SBP,
  >= 1.0 indicates shock.

Values are rounded to the table's resolution before lookup (integers for RR, SpO2, SBP, HR;
0.1 °C for temperature, half up), because the tables are defined on charted values: an
averaged RR of 20.4 is charted 20 and scores 0, 20.5 is charted 21 and scores 2.

Missing inputs are explicit. A core NEWS2 parameter with no value within its maximum age
scores NaN and is counted in ``news2_missing``; the aggregate is the sum of what is known (a
lower bound), never a silent zero. Oxygen and consciousness are charted at the bedside but
often absent from ICU feeds: with no FiO2 the patient is taken as on air, with no GCS as
alert, and ``news2_assumed`` counts these assumptions. PhysioNet 2012 has arterial SaO2 but
no SpO2, so SaO2 stands in for SpO2 when SpO2 is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vigil.models.base import Assessment, Context, Target

__all__ = [
    "news2_components",
    "qsofa_criteria",
    "sirs_criteria",
    "shock_index",
    "ClinicalInputs",
    "News2Scorer",
    "QsofaScorer",
    "NEWS2_MAX",
    "NEWS2_URGENT",
    "NEWS2_EMERGENCY",
    "QSOFA_MAX",
    "QSOFA_POSITIVE",
    "SIRS_MAX",
    "SIRS_POSITIVE",
    "SHOCK_INDEX_SHOCK",
    "clinical_details",
]

NEWS2_MAX = 20  # 3 (RR) + 3 (SpO2) + 2 (O2) + 3 (SBP) + 3 (HR) + 3 (ACVPU) + 3 (Temp)
NEWS2_URGENT = 5  # aggregate 5-6: urgent response (RCP 2017)
NEWS2_EMERGENCY = 7  # aggregate >= 7: emergency response (RCP 2017)
QSOFA_MAX = 3  # RR, SBP, mentation (Seymour 2016)
QSOFA_POSITIVE = 2  # >= 2 of 3 (Sepsis-3)
SIRS_MAX = 4  # temperature, HR, RR/PaCO2, WBC (Bone 1992)
SIRS_POSITIVE = 2  # >= 2 criteria (Bone 1992)
SHOCK_INDEX_SHOCK = 1.0  # HR / SBP >= 1.0 (Allgöwer 1967)

# How old a last value may be and still count (hours). Vigil's choice, not a published rule:
# NEWS2 asks for observations at least 12-hourly; monitor vitals older than the longest
# window are treated as unknown, labs and blood gases as valid for a day.
MAX_AGE_H = {"vital": 6.0, "GCS": 12.0, "lab": 24.0}


def _half_up(x: np.ndarray, decimals: int = 0) -> np.ndarray:
    f = 10.0 ** decimals
    return np.floor(x * f + 0.5 + 1e-9) / f


def _bands(x: np.ndarray, upper_bounds: list[float], points: list[float]) -> np.ndarray:
    """Points of the first band whose inclusive upper bound holds x; NaN stays NaN."""
    conds = [x <= b for b in upper_bounds] + [np.isfinite(x)]
    return np.select(conds, points, default=np.nan)


def news2_components(rr, spo2, on_oxygen, sbp, hr, alert, temp) -> dict[str, np.ndarray]:
    """NEWS2 points per parameter (RCP 2017, chart 1, SpO2 scale 1).

    ``on_oxygen`` and ``alert`` are 1.0/0.0 (NaN if unknown). Returns NaN where unknown.

    >>> c = news2_components(*(np.array([v]) for v in (21, 95, 0, 100, 131, 1, 39.1)))
    >>> {k: int(v[0]) for k, v in c.items()}
    {'rr': 2, 'spo2': 1, 'o2': 0, 'sbp': 2, 'hr': 3, 'consciousness': 0, 'temp': 2}
    """
    rr = _half_up(np.asarray(rr, float))
    spo2 = _half_up(np.asarray(spo2, float))
    sbp = _half_up(np.asarray(sbp, float))
    hr = _half_up(np.asarray(hr, float))
    temp = _half_up(np.asarray(temp, float), 1)
    on_oxygen = np.asarray(on_oxygen, float)
    alert = np.asarray(alert, float)
    return {
        "rr": _bands(rr, [8, 11, 20, 24], [3, 1, 0, 2, 3]),
        "spo2": _bands(spo2, [91, 93, 95], [3, 2, 1, 0]),
        "o2": np.where(np.isnan(on_oxygen), np.nan, np.where(on_oxygen > 0, 2.0, 0.0)),
        "sbp": _bands(sbp, [90, 100, 110, 219], [3, 2, 1, 0, 3]),
        "hr": _bands(hr, [40, 50, 90, 110, 130], [3, 1, 0, 1, 2, 3]),
        "consciousness": np.where(np.isnan(alert), np.nan, np.where(alert > 0, 0.0, 3.0)),
        "temp": _bands(temp, [35.0, 36.0, 38.0, 39.0], [3, 1, 0, 1, 2]),
    }


def qsofa_criteria(rr, sbp, gcs) -> dict[str, np.ndarray]:
    """qSOFA criteria as 1.0 met / 0.0 not met / NaN unknown (Seymour 2016).

    >>> {k: float(v[0]) for k, v in qsofa_criteria(np.array([22.]), np.array([100.]),
    ...                                         np.array([15.])).items()}
    {'rr': 1.0, 'sbp': 1.0, 'mentation': 0.0}
    """
    rr, sbp, gcs = (np.asarray(a, float) for a in (rr, sbp, gcs))
    return {
        "rr": _flag(rr, rr >= 22),
        "sbp": _flag(sbp, sbp <= 100),
        "mentation": _flag(gcs, gcs < 15),
    }


def sirs_criteria(temp, hr, rr, paco2, wbc) -> dict[str, np.ndarray]:
    """SIRS criteria as 1.0 / 0.0 / NaN (Bone 1992); strict inequalities as published.

    >>> {k: float(v[0]) for k, v in sirs_criteria(*(np.array([x]) for x in
    ...     (38.0, 91.0, 20.0, 31.9, 4.0))).items()}
    {'temp': 0.0, 'hr': 1.0, 'resp': 1.0, 'wbc': 0.0}
    """
    temp, hr, rr, paco2, wbc = (np.asarray(a, float) for a in (temp, hr, rr, paco2, wbc))
    resp_known = np.isfinite(rr) | np.isfinite(paco2)
    resp = (rr > 20) | (paco2 < 32)  # NaN compares False
    return {
        "temp": _flag(temp, (temp > 38.0) | (temp < 36.0)),
        "hr": _flag(hr, hr > 90),
        "resp": np.where(resp_known, resp.astype(float), np.nan),
        "wbc": _flag(wbc, (wbc > 12.0) | (wbc < 4.0)),
    }


def shock_index(hr, sbp) -> np.ndarray:
    """HR / SBP (Allgöwer 1967); NaN when either is missing or SBP is 0."""
    hr, sbp = np.asarray(hr, float), np.asarray(sbp, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sbp > 0, hr / sbp, np.nan)


def _flag(x: np.ndarray, cond: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(x), cond.astype(float), np.nan)


@dataclass(frozen=True)
class ClinicalInputs:
    """Picks the current bedside values out of feature rows, honouring maximum ages."""

    feature_names: tuple[str, ...]
    _idx: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_idx", {n: i for i, n in enumerate(self.feature_names)})

    def col(self, name: str) -> int:
        return self._idx[name]

    def current(self, X: np.ndarray, code: str, max_age_h: float) -> np.ndarray:
        last = X[:, self._idx[f"{code}_last"]]
        age = X[:, self._idx[f"{code}_hours_since"]]
        return np.where(age <= max_age_h, last, np.nan)  # NaN age compares False

    def vitals(self, X: np.ndarray) -> dict[str, np.ndarray]:
        v = MAX_AGE_H["vital"]
        lab = MAX_AGE_H["lab"]
        spo2 = self.current(X, "SpO2", v)
        sao2 = self.current(X, "SaO2", lab)
        fio2 = self.current(X, "FiO2", lab)
        gcs = self.current(X, "GCS", MAX_AGE_H["GCS"])
        return {
            "rr": self.current(X, "RR", v),
            "spo2": np.where(np.isnan(spo2), sao2, spo2),
            "fio2": fio2,
            "sbp": self.current(X, "SBP", v),
            "hr": self.current(X, "HR", v),
            "temp": self.current(X, "Temp", v),
            "gcs": gcs,
            "paco2": self.current(X, "PaCO2", lab),
            "wbc": self.current(X, "WBC", lab),
            "lactate": self.current(X, "Lactate", lab),
        }


_LAST: list = [None, None, None]  # (X, feature names, details): the last batch scored


def clinical_details(inputs: ClinicalInputs, X: np.ndarray) -> dict[str, np.ndarray]:
    """Every clinical score for a batch: the numbers alerts explain themselves with.

    The NEWS2 and qSOFA scorers both need them for the same batch; the result for the last
    batch (same array object, same schema) is reused rather than computed twice.
    """
    if _LAST[0] is X and _LAST[1] == inputs.feature_names:
        return _LAST[2]
    out = _clinical_details(inputs, X)
    _LAST[:] = [X, inputs.feature_names, out]
    return out


def _clinical_details(inputs: ClinicalInputs, X: np.ndarray) -> dict[str, np.ndarray]:
    v = inputs.vitals(X)
    on_o2 = np.where(np.isnan(v["fio2"]), 0.0, (v["fio2"] > 0.21).astype(float))
    alert = np.where(np.isnan(v["gcs"]), 1.0, (v["gcs"] >= 15).astype(float))
    comp = news2_components(v["rr"], v["spo2"], on_o2, v["sbp"], v["hr"], alert, v["temp"])
    core = np.stack([comp[k] for k in ("rr", "spo2", "sbp", "hr", "temp")], axis=1)
    all_pts = np.stack(list(comp.values()), axis=1)
    q = qsofa_criteria(v["rr"], v["sbp"], v["gcs"])
    s = sirs_criteria(v["temp"], v["hr"], v["rr"], v["paco2"], v["wbc"])
    q_arr = np.stack(list(q.values()), axis=1)
    s_arr = np.stack(list(s.values()), axis=1)
    out = {
        "news2": np.nansum(all_pts, axis=1),
        "news2_missing": np.isnan(core).sum(axis=1).astype(float),
        "news2_assumed": (np.isnan(v["fio2"]).astype(float) + np.isnan(v["gcs"])),
        "news2_red": (np.nan_to_num(all_pts, nan=0.0) >= 3).any(axis=1).astype(float),
        "qsofa": np.nansum(q_arr, axis=1),
        "qsofa_missing": np.isnan(q_arr).sum(axis=1).astype(float),
        "sirs": np.nansum(s_arr, axis=1),
        "sirs_missing": np.isnan(s_arr).sum(axis=1).astype(float),
        "shock_index": shock_index(v["hr"], v["sbp"]),
        "lactate": v["lactate"],
    }
    out.update({f"news2_{k}": p for k, p in comp.items()})
    out.update({f"qsofa_{k}": p for k, p in q.items()})
    out.update({f"sirs_{k}": p for k, p in s.items()})
    return out


# feature column each NEWS2 / qSOFA component is attributed to in explanations
_NEWS2_FEATURE = {"rr": "RR_last", "spo2": "SpO2_last", "o2": "FiO2_last", "sbp": "SBP_last",
                  "hr": "HR_last", "consciousness": "GCS_last", "temp": "Temp_last"}
_QSOFA_FEATURE = {"rr": "RR_last", "sbp": "SBP_last", "mentation": "GCS_last"}


class News2Scorer:
    """Deterioration risk from NEWS2: ``risk = NEWS2 / 20``; alert at >= 7 or a red score.

    Not a calibrated probability: it is the interim deterioration scorer until a model
    trained on outcomes replaces it, and the reference every model is measured against.
    """

    name = "news2"
    target: Target = "deterioration"
    attribution = "additive"  # each component's points: they sum to the risk
    levels = ((NEWS2_EMERGENCY / NEWS2_MAX, "high"),)
    floor_flag = "news2_red"

    def __init__(self, feature_names: tuple[str, ...]) -> None:
        self.feature_names = feature_names
        self.inputs = ClinicalInputs(feature_names)

    def score_batch(self, X: np.ndarray, context: Context | None = None) -> Assessment:
        d = _details(self.inputs, X, context)
        contrib = np.zeros_like(X)
        for comp, feat in _NEWS2_FEATURE.items():
            contrib[:, self.inputs.col(feat)] = np.nan_to_num(d[f"news2_{comp}"]) / NEWS2_MAX
        return Assessment(d["news2"] / NEWS2_MAX, contrib, d)

    def attribute(self, X: np.ndarray) -> np.ndarray:
        return self.score_batch(X).contributions  # type: ignore[return-value]


class QsofaScorer:
    """Interim sepsis risk from qSOFA: ``risk = qSOFA / 3``; alert at >= 2 (Sepsis-3 prompt)."""

    name = "qsofa"
    target: Target = "sepsis"
    attribution = "additive"
    levels = ((QSOFA_POSITIVE / QSOFA_MAX, "medium"), (QSOFA_MAX / QSOFA_MAX, "high"))
    floor_flag = None

    def __init__(self, feature_names: tuple[str, ...]) -> None:
        self.feature_names = feature_names
        self.inputs = ClinicalInputs(feature_names)

    def score_batch(self, X: np.ndarray, context: Context | None = None) -> Assessment:
        d = _details(self.inputs, X, context)
        contrib = np.zeros_like(X)
        for comp, feat in _QSOFA_FEATURE.items():
            contrib[:, self.inputs.col(feat)] += np.nan_to_num(d[f"qsofa_{comp}"]) / QSOFA_MAX
        return Assessment(d["qsofa"] / QSOFA_MAX, contrib, d)

    def attribute(self, X: np.ndarray) -> np.ndarray:
        return self.score_batch(X).contributions  # type: ignore[return-value]


def _details(inputs: ClinicalInputs, X: np.ndarray, context: Context | None) -> dict:
    """The clinical details of ``X``: the batch's own (computed once by the caller for every
    scorer, see :class:`~vigil.models.base.Context`) when given, else computed here."""
    if context is not None and context.details is not None and "news2" in context.details:
        return dict(context.details)
    return clinical_details(inputs, X)
