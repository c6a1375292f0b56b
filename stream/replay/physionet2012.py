"""PhysioNet/CinC Challenge 2012 record files: irregular, time-stamped measurements.

Silva I et al. Predicting In-Hospital Mortality of ICU Patients: The PhysioNet/Computing in
Cardiology Challenge 2012. Comput Cardiol 2012;39:245-248.

Lines are ``HH:MM,Parameter,Value`` since ICU admission; the ``00:00`` descriptors (RecordID,
Age, Gender, Height, ICUType, Weight) describe the stay, ``-1`` means unknown. Values charted
at the same minute form one vitals record, as one monitor message would. Invasive and
non-invasive blood pressure are both kept, with the method. In-hospital death (from
``Outcomes-a.txt``) is the only outcome: a proxy for deterioration, known once the 48 h of
record end. No open data set labels cardiac arrest.
"""

from __future__ import annotations

from collections import defaultdict

from vigil.stream.replay.stays import Label, Measurement, Stay
from vigil.wire.records import whole_years

__all__ = ["parse_record", "parse_outcomes", "PARAMETER_CODES"]

# parameter -> (Vigil code, unit, method)
PARAMETER_CODES: dict[str, tuple[str, str, str | None]] = {
    "HR": ("HR", "/min", None), "RespRate": ("RR", "/min", None), "Temp": ("Temp", "Cel", None),
    "SysABP": ("SBP", "mm[Hg]", "invasive"), "NISysABP": ("SBP", "mm[Hg]", "non-invasive"),
    "DiasABP": ("DBP", "mm[Hg]", "invasive"), "NIDiasABP": ("DBP", "mm[Hg]", "non-invasive"),
    "MAP": ("MAP", "mm[Hg]", "invasive"), "NIMAP": ("MAP", "mm[Hg]", "non-invasive"),
    "SaO2": ("SaO2", "%", None), "GCS": ("GCS", "{score}", None), "FiO2": ("FiO2", "1", None),
    "PaO2": ("PaO2", "mm[Hg]", None), "PaCO2": ("PaCO2", "mm[Hg]", None), "pH": ("pH", "[pH]", None),
    "HCO3": ("HCO3", "mmol/L", None), "Lactate": ("Lactate", "mmol/L", None),
    "WBC": ("WBC", "10*9/L", None), "Creatinine": ("Creatinine", "mg/dL", None),
    "Platelets": ("Platelets", "10*9/L", None), "Bilirubin": ("Bilirubin", "mg/dL", None),
    "BUN": ("BUN", "mg/dL", None), "Glucose": ("Glucose", "mg/dL", None),
    "K": ("Potassium", "mmol/L", None), "Na": ("Sodium", "mmol/L", None),
    "Mg": ("Magnesium", "mg/dL", None), "HCT": ("Hct", "%", None), "Albumin": ("Albumin", "g/dL", None),
    "ALP": ("ALP", "U/L", None), "ALT": ("ALT", "U/L", None), "AST": ("AST", "U/L", None),
    "TroponinI": ("TroponinI", "ng/mL", None), "TroponinT": ("TroponinT", "ng/mL", None),
    "Urine": ("Urine", "mL", None),
}
ICU_TYPES = {1: "CCU", 2: "CSRU", 3: "MICU", 4: "SICU"}
DESCRIPTORS = {"RecordID", "Age", "Gender", "Height", "ICUType", "Weight"}
RECORD_HOURS = 48.0


def parse_outcomes(text: str) -> dict[str, int]:
    """RecordID -> in-hospital death (0/1)."""
    lines = text.strip().splitlines()
    header = lines[0].split(",")
    i_id, i_death = header.index("RecordID"), header.index("In-hospital_death")
    out = {}
    for line in lines[1:]:
        parts = line.split(",")
        out[parts[i_id]] = int(parts[i_death])
    return out


def parse_record(source_id: str, text: str, death: int | None = None) -> Stay:
    desc: dict[str, float] = {}
    charted: dict[float, list[tuple[str, float, str, str | None]]] = defaultdict(list)
    unmapped = 0
    for line in text.strip().splitlines()[1:]:
        parts = line.split(",")
        if len(parts) != 3 or not parts[1]:
            continue
        hhmm, param, raw = parts
        hh, mm = hhmm.split(":")
        hours = int(hh) + int(mm) / 60.0
        value = float(raw)
        if param in DESCRIPTORS and hours == 0.0:
            desc[param] = value
            continue
        mapped = PARAMETER_CODES.get(param)
        if mapped is None:
            unmapped += 1
            continue
        code, unit, method = mapped
        charted[hours].append((code, value, unit, method))
    gender = desc.get("Gender", -1)
    age = desc.get("Age", -1)
    stay = Stay(
        dataset="physionet2012",
        source_id=source_id,
        unit=ICU_TYPES.get(int(desc.get("ICUType", 0)), "ICU"),
        age_years=whole_years(age) if age >= 0 else None,
        sex="male" if gender == 1 else "female" if gender == 0 else None,
        hospital_admit_hours=None,
        measurements=[Measurement(h, tuple(obs)) for h, obs in sorted(charted.items())],
        unmapped=unmapped,
    )
    if death is not None:
        # the outcome describes the stay as last charted (the hour a worker can featurize:
        # a label ahead of the patient's vitals cannot be learned) and is known once the
        # 48 h record closes
        stay.labels.append(Label("death", stay.end_hours, death,
                                 max(stay.end_hours, RECORD_HOURS)))
    return stay
