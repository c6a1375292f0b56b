"""The canonical observation codes Vigil understands, their units and plausible ranges.

A bedside integration may send a value in any unit listed for its code; the value is
converted to the canonical unit at the door so that windows, features and models only ever
see one unit per code. Plausibility limits are Vigil's own engineering bounds: values a
living adult can physically show, wide enough that a real extreme (HR 0 in asystole, SpO2 40
in a failing patient) passes and narrow enough that a unit or sensor error (HR 900, a
temperature of -17.8 °C, pH 735) does not. An implausible value is rejected, never clipped.

Conversion factors: 1 kPa = 7.50062 mmHg; creatinine 88.42 µmol/L per mg/dL; glucose
18.016 mg/dL per mmol/L; lactate 9.008 mg/dL per mmol/L; urea nitrogen 2.801 mg/dL per
mmol/L; bilirubin 17.1 µmol/L per mg/dL (standard SI conversion tables, e.g. AMA Manual of
Style, SI conversion calculator).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Code", "CODES", "VITAL_CODES", "LAB_CODES", "convert", "UnknownUnit"]


class UnknownUnit(ValueError):
    """The unit is not one Vigil can convert for this code."""


def _scale(f: float) -> Callable[[float], float]:
    return lambda v: v * f


def _identity(v: float) -> float:
    return v


def _f_to_c(v: float) -> float:
    return (v - 32.0) * 5.0 / 9.0


def _k_to_c(v: float) -> float:
    return v - 273.15


@dataclass(frozen=True, slots=True)
class Code:
    """One canonical observation code: its unit, accepted units, and plausible range."""

    name: str
    label: str
    unit: str
    low: float
    high: float
    kind: str  # "vital" (monitor, frequent) or "lab" (sparse, slow)
    units: dict[str, Callable[[float], float]] = field(default_factory=dict)

    def to_canonical(self, value: float, unit: str) -> float:
        conv = self.units.get(unit.strip().lower())
        if conv is None:
            raise UnknownUnit(f"{self.name}: unit {unit!r} not in {sorted(self.units)}")
        return conv(value)

    def plausible(self, value: float) -> bool:
        return self.low <= value <= self.high


def _c(name: str, label: str, unit: str, low: float, high: float, kind: str,
       **units: Callable[[float], float]) -> Code:
    table = {unit.lower(): _identity}
    table.update({k.lower(): v for k, v in units.items()})
    return Code(name, label, unit, low, high, kind, table)


_MMHG = {"mmHg": _identity, "mm[Hg]": _identity, "kPa": _scale(7.50062)}
_PER_MIN = {"/min": _identity, "bpm": _identity, "{beats}/min": _identity,
            "beats/min": _identity, "1/min": _identity}
_BREATHS = {"/min": _identity, "br/min": _identity, "{breaths}/min": _identity,
            "breaths/min": _identity, "1/min": _identity}
_PCT = {"%": _identity}
_PER_NL = {"10*9/L": _identity, "10^9/L": _identity, "10*3/uL": _identity,
           "10^3/uL": _identity, "K/uL": _identity, "10*3/mm3": _identity}

_ALL: tuple[Code, ...] = (
    # --- monitor vitals ---------------------------------------------------------------
    _c("HR", "HR", "/min", 0, 350, "vital", **_PER_MIN),
    _c("SpO2", "SpO2", "%", 0, 100, "vital", **_PCT),
    _c("Temp", "Temp", "Cel", 10, 46, "vital",
       **{"°C": _identity, "C": _identity, "degC": _identity, "[degF]": _f_to_c,
          "°F": _f_to_c, "F": _f_to_c, "degF": _f_to_c, "K": _k_to_c}),
    _c("SBP", "SBP", "mm[Hg]", 0, 350, "vital", **_MMHG),
    _c("DBP", "DBP", "mm[Hg]", 0, 250, "vital", **_MMHG),
    _c("MAP", "MAP", "mm[Hg]", 0, 300, "vital", **_MMHG),
    _c("RR", "RR", "/min", 0, 120, "vital", **_BREATHS),
    _c("EtCO2", "EtCO2", "mm[Hg]", 0, 150, "vital", **_MMHG),
    # --- neuro / respiratory support --------------------------------------------------
    _c("GCS", "GCS", "{score}", 3, 15, "lab", **{"": _identity, "score": _identity, "1": _identity}),
    _c("FiO2", "FiO2", "1", 0.21, 1.0, "lab", **{"%": _scale(0.01), "fraction": _identity}),
    # --- blood gas --------------------------------------------------------------------
    _c("PaO2", "PaO2", "mm[Hg]", 10, 800, "lab", **_MMHG),
    _c("PaCO2", "PaCO2", "mm[Hg]", 5, 200, "lab", **_MMHG),
    _c("SaO2", "SaO2", "%", 0, 100, "lab", **_PCT),
    _c("pH", "pH", "[pH]", 6.3, 8.0, "lab", **{"": _identity, "pH": _identity}),
    _c("HCO3", "HCO3", "mmol/L", 0, 80, "lab", **{"mEq/L": _identity}),
    _c("BaseExcess", "BE", "mmol/L", -40, 40, "lab", **{"mEq/L": _identity}),
    # --- laboratory -------------------------------------------------------------------
    _c("Lactate", "lactate", "mmol/L", 0, 40, "lab", **{"mg/dL": _scale(1 / 9.008)}),
    _c("WBC", "WBC", "10*9/L", 0, 500, "lab", **_PER_NL),
    _c("Creatinine", "creat", "mg/dL", 0, 40,
       "lab", **{"umol/L": _scale(1 / 88.42), "µmol/L": _scale(1 / 88.42)}),
    _c("Platelets", "plt", "10*9/L", 0, 3000, "lab", **_PER_NL),
    _c("Bilirubin", "bili", "mg/dL", 0, 80,
       "lab", **{"umol/L": _scale(1 / 17.1), "µmol/L": _scale(1 / 17.1)}),
    _c("BilirubinDirect", "dbili", "mg/dL", 0, 60,
       "lab", **{"umol/L": _scale(1 / 17.1), "µmol/L": _scale(1 / 17.1)}),
    _c("BUN", "BUN", "mg/dL", 0, 300, "lab", **{"mmol/L": _scale(2.801)}),
    _c("Glucose", "gluc", "mg/dL", 5, 3000, "lab", **{"mmol/L": _scale(18.016)}),
    _c("Potassium", "K", "mmol/L", 0.5, 15, "lab", **{"mEq/L": _identity}),
    _c("Sodium", "Na", "mmol/L", 80, 200, "lab", **{"mEq/L": _identity}),
    _c("Chloride", "Cl", "mmol/L", 50, 180, "lab", **{"mEq/L": _identity}),
    _c("Calcium", "Ca", "mg/dL", 1, 25, "lab", **{"mmol/L": _scale(4.008)}),
    _c("Magnesium", "Mg", "mg/dL", 0.2, 15, "lab", **{"mmol/L": _scale(2.431)}),
    _c("Phosphate", "phos", "mg/dL", 0.1, 25, "lab", **{"mmol/L": _scale(3.097)}),
    _c("Hct", "Hct", "%", 5, 80, "lab", **_PCT),
    _c("Hgb", "Hgb", "g/dL", 1, 25, "lab", **{"g/L": _scale(0.1)}),
    _c("PTT", "PTT", "s", 10, 250, "lab", **{"sec": _identity}),
    _c("Fibrinogen", "fibrinogen", "mg/dL", 20, 2000, "lab", **{"g/L": _scale(100.0)}),
    _c("AST", "AST", "U/L", 0, 50000, "lab", **{"IU/L": _identity}),
    _c("ALT", "ALT", "U/L", 0, 50000, "lab", **{"IU/L": _identity}),
    _c("ALP", "ALP", "U/L", 0, 10000, "lab", **{"IU/L": _identity}),
    _c("Albumin", "alb", "g/dL", 0.5, 8, "lab", **{"g/L": _scale(0.1)}),
    _c("TroponinI", "TnI", "ng/mL", 0, 1000, "lab", **{"ug/L": _identity}),
    _c("TroponinT", "TnT", "ng/mL", 0, 1000, "lab", **{"ug/L": _identity}),
    # --- fluid balance ----------------------------------------------------------------
    _c("Urine", "urine", "mL", 0, 10000, "lab", **{"ml": _identity, "L": _scale(1000.0)}),
)

CODES: dict[str, Code] = {c.name: c for c in _ALL}
VITAL_CODES: tuple[str, ...] = tuple(c.name for c in _ALL if c.kind == "vital")
LAB_CODES: tuple[str, ...] = tuple(c.name for c in _ALL if c.kind == "lab")


def convert(code: str, value: float, unit: str) -> float:
    """Convert ``value`` in ``unit`` to the canonical unit of ``code``.

    >>> round(convert("Temp", 101.3, "[degF]"), 2)
    38.5
    >>> round(convert("SBP", 16.0, "kPa"), 1)
    120.0
    """
    return CODES[code].to_canonical(value, unit)
