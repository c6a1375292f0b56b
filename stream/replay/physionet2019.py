"""PhysioNet/CinC Challenge 2019 ``.psv`` files: one row per ICU hour.

Reyna MA et al. Early Prediction of Sepsis From Clinical Data: the PhysioNet/Computing in
Cardiology Challenge 2019. Crit Care Med 2020;48(2):210-217. doi:10.13026/v64v-d857.

Row ``ICULOS = h`` holds what was measured during ICU hour h; it becomes one vitals record
at event time ``admission + h hours`` (the end of that hour, when all of it is known).
``SepsisLabel`` is already shifted by the organisers: it is 1 from 6 h before clinical onset
(Sepsis-3), so onset = first labelled hour + 6. When a label is *known* (for delayed-label
learning): a 0 at hour h is certain only once 6 more hours have passed without onset; a 1
once onset has happened; both at the latest at the end of the stay.
"""

from __future__ import annotations

import math

from vigil.stream.replay.stays import Label, Measurement, Stay
from vigil.wire.records import whole_years

__all__ = ["parse_psv", "COLUMN_CODES"]

LABEL_SHIFT_H = 6.0

# column -> (Vigil code, unit as the data set records it)
COLUMN_CODES: dict[str, tuple[str, str]] = {
    "HR": ("HR", "/min"), "O2Sat": ("SpO2", "%"), "Temp": ("Temp", "Cel"),
    "SBP": ("SBP", "mm[Hg]"), "MAP": ("MAP", "mm[Hg]"), "DBP": ("DBP", "mm[Hg]"),
    "Resp": ("RR", "/min"), "EtCO2": ("EtCO2", "mm[Hg]"), "BaseExcess": ("BaseExcess", "mmol/L"),
    "HCO3": ("HCO3", "mmol/L"), "FiO2": ("FiO2", "1"), "pH": ("pH", "[pH]"),
    "PaCO2": ("PaCO2", "mm[Hg]"), "SaO2": ("SaO2", "%"), "AST": ("AST", "U/L"),
    "BUN": ("BUN", "mg/dL"), "Alkalinephos": ("ALP", "U/L"), "Calcium": ("Calcium", "mg/dL"),
    "Chloride": ("Chloride", "mmol/L"), "Creatinine": ("Creatinine", "mg/dL"),
    "Bilirubin_direct": ("BilirubinDirect", "mg/dL"), "Glucose": ("Glucose", "mg/dL"),
    "Lactate": ("Lactate", "mmol/L"), "Magnesium": ("Magnesium", "mg/dL"),
    "Phosphate": ("Phosphate", "mg/dL"), "Potassium": ("Potassium", "mmol/L"),
    "Bilirubin_total": ("Bilirubin", "mg/dL"), "TroponinI": ("TroponinI", "ng/mL"),
    "Hct": ("Hct", "%"), "Hgb": ("Hgb", "g/dL"), "PTT": ("PTT", "s"), "WBC": ("WBC", "10*9/L"),
    "Fibrinogen": ("Fibrinogen", "mg/dL"), "Platelets": ("Platelets", "10*9/L"),
}


def _num(s: str) -> float:
    try:
        return float(s)
    except ValueError:
        return math.nan


def parse_psv(source_id: str, text: str) -> Stay:
    lines = text.strip().splitlines()
    header = lines[0].split("|")
    col = {name: i for i, name in enumerate(header)}
    rows = [[_num(x) for x in line.split("|")] for line in lines[1:] if line]
    if not rows:
        raise ValueError(f"{source_id}: no rows")
    first = rows[0]
    unit = ("MICU" if first[col["Unit1"]] == 1 else
            "SICU" if first[col["Unit2"]] == 1 else "ICU")
    gender = first[col["Gender"]]
    hosp = first[col["HospAdmTime"]]
    stay = Stay(
        dataset="physionet2019",
        source_id=source_id,
        unit=unit,
        age_years=None if math.isnan(first[col["Age"]]) else whole_years(first[col["Age"]]),
        sex=None if math.isnan(gender) else ("male" if gender == 1 else "female"),
        hospital_admit_hours=None if math.isnan(hosp) else hosp,
    )
    mapped = [(col[c], code, unit_) for c, (code, unit_) in COLUMN_CODES.items() if c in col]
    labels: list[tuple[float, int]] = []
    for row in rows:
        hours = row[col["ICULOS"]]
        obs = tuple((code, row[i], u, None) for i, code, u in mapped if not math.isnan(row[i]))
        if obs:
            stay.measurements.append(Measurement(hours, obs))
        if "SepsisLabel" in col and not math.isnan(row[col["SepsisLabel"]]):
            labels.append((hours, int(row[col["SepsisLabel"]])))
    end = max(h for h, _ in labels) if labels else stay.end_hours
    first_pos = next((h for h, lb in labels if lb), None)
    onset = None if first_pos is None else first_pos + LABEL_SHIFT_H
    for hours, lb in labels:
        known = max(hours, onset) if lb else hours + LABEL_SHIFT_H
        stay.labels.append(Label("sepsis", hours, lb, min(known, end)))
    return stay
