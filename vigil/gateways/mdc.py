"""Device and laboratory codes to Vigil's codes; device units to UCUM.

Sources of the numbers (each entry below is one published term, nothing is guessed from a
pattern):

- **IEEE 11073-10101** (Health informatics - Point-of-care medical device communication -
  Nomenclature), as published in the **NIST RTMMS** (Rosetta Terminology Mapping Management
  System, https://rtmms.nist.gov) and the **IHE PCD Rosetta Terminology Mapping** (the
  harmonized Rosetta table that IHE PCD-01 refers to, IHE PCD TF-2 appendix A). An MDC term
  has a reference id (``MDC_ECG_HEART_RATE``) and a 32-bit context-free code
  ``partition * 65536 + term code``: partition 2 (SCADA) for measurements, e.g. 147842 =
  2 * 65536 + 16770, and partition 4 (DIM) for units, e.g. 264864 = 4 * 65536 + 2720
  (``MDC_DIM_BEAT_PER_MIN``). HL7 OBX-3 / OBX-6 carry them as ``code^refid^MDC``.
- **LOINC** (Regenstrief, https://loinc.org), the codes of the FHIR R4 vital-signs profiles
  (8867-4 heart rate, 59408-5 SpO2 by pulse oximetry, 2708-6 arterial O2 saturation, 9279-1
  respiratory rate, 8480-6 / 8462-4 / 8478-0 systolic / diastolic / mean blood pressure,
  8310-5 body temperature) and the monitor terms used by PCD-01 gateways that send LOINC
  (76215-3 / 76213-8 / 76214-6 invasive arterial pressures, 19889-5 end-tidal CO2, 3150-0
  inhaled O2 concentration).
- **UCUM** (https://ucum.org) for the units Vigil's :mod:`vigil.wire.codes` converts from.

Deliberately *not* mapped, so that they are refused as ``unknown_code`` instead of being
scored as something they are not: generic invasive pressures (MDC_PRESS_BLD_SYS/DIA/MEAN,
150017-150019: the channel may be a pulmonary artery or central venous line), skin
temperature (MDC_TEMP_SKIN, 150388: several degrees below core) and anything Vigil has no
code for (ST segments, PVC rate, perfusion index, ventilator settings, alarm limits).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CodeMap", "MDC_CODES", "MDC_REFIDS", "LOINC_CODES", "MDC_UNITS", "lookup", "unit_of",
           "is_mdc_system", "is_loinc_system"]


@dataclass(frozen=True, slots=True)
class CodeMap:
    """What one device or lab code means in Vigil: its code and, where it matters, method."""

    code: str  # a key of vigil.wire.codes.CODES
    method: str | None  # "invasive" / "non-invasive" pressure, temperature site, HR source
    refid: str  # the MDC reference id or the LOINC long name, for messages and the docs


def _m(code: str, method: str | None, refid: str) -> CodeMap:
    return CodeMap(code, method, refid)


# IEEE 11073-10101 context-free codes (partition 2, SCADA) -> Vigil
MDC_CODES: dict[int, CodeMap] = {
    # heart rate and pulse rate
    147842: _m("HR", "ecg", "MDC_ECG_HEART_RATE"),
    149514: _m("HR", "pulse", "MDC_PULS_RATE"),
    149522: _m("HR", "pulse-invasive", "MDC_BLD_PULS_RATE_INV"),
    149530: _m("HR", "pulse-oximetry", "MDC_PULS_OXIM_PULS_RATE"),
    149546: _m("HR", "pulse-non-invasive", "MDC_PULS_RATE_NON_INV"),
    # oxygen saturation
    150456: _m("SpO2", None, "MDC_PULS_OXIM_SAT_O2"),
    150324: _m("SaO2", None, "MDC_SAT_O2_ART"),
    # respiration rate
    151562: _m("RR", None, "MDC_RESP_RATE"),
    151570: _m("RR", "airway", "MDC_AWAY_RESP_RATE"),
    151578: _m("RR", "impedance", "MDC_TTHOR_RESP_RATE"),
    151594: _m("RR", "capnography", "MDC_CO2_RESP_RATE"),
    # non-invasive blood pressure (NIBP)
    150021: _m("SBP", "non-invasive", "MDC_PRESS_BLD_NONINV_SYS"),
    150022: _m("DBP", "non-invasive", "MDC_PRESS_BLD_NONINV_DIA"),
    150023: _m("MAP", "non-invasive", "MDC_PRESS_BLD_NONINV_MEAN"),
    150301: _m("SBP", "non-invasive", "MDC_PRESS_CUFF_SYS"),
    150302: _m("DBP", "non-invasive", "MDC_PRESS_CUFF_DIA"),
    150303: _m("MAP", "non-invasive", "MDC_PRESS_CUFF_MEAN"),
    # invasive arterial blood pressure
    150033: _m("SBP", "invasive", "MDC_PRESS_BLD_ART_SYS"),
    150034: _m("DBP", "invasive", "MDC_PRESS_BLD_ART_DIA"),
    150035: _m("MAP", "invasive", "MDC_PRESS_BLD_ART_MEAN"),
    150037: _m("SBP", "invasive", "MDC_PRESS_BLD_ART_ABP_SYS"),
    150038: _m("DBP", "invasive", "MDC_PRESS_BLD_ART_ABP_DIA"),
    150039: _m("MAP", "invasive", "MDC_PRESS_BLD_ART_ABP_MEAN"),
    # temperatures (body / core sites; not skin)
    150344: _m("Temp", None, "MDC_TEMP"),
    150364: _m("Temp", "body", "MDC_TEMP_BODY"),
    150368: _m("Temp", "core", "MDC_TEMP_CORE"),
    150392: _m("Temp", "tympanic", "MDC_TEMP_TYMP"),
    188420: _m("Temp", "rectal", "MDC_TEMP_RECT"),
    188424: _m("Temp", "oral", "MDC_TEMP_ORAL"),
    188428: _m("Temp", "ear", "MDC_TEMP_EAR"),
    188452: _m("Temp", "axillary", "MDC_TEMP_AXIL"),
    # capnography and inspired oxygen
    151708: _m("EtCO2", None, "MDC_AWAY_CO2_ET"),  # also published as MDC_CONC_AWAY_CO2_ET
    151712: _m("EtCO2", "expired", "MDC_CONC_AWAY_CO2_EXP"),  # GE's end-tidal CO2 term
    152196: _m("FiO2", None, "MDC_CONC_AWAY_O2_INSP"),
}

MDC_REFIDS: dict[str, int] = {m.refid: code for code, m in MDC_CODES.items()}
MDC_REFIDS["MDC_CONC_AWAY_CO2_ET"] = 151708

# LOINC -> Vigil
LOINC_CODES: dict[str, CodeMap] = {
    "8867-4": _m("HR", None, "Heart rate"),
    "8889-8": _m("HR", "pulse-oximetry", "Heart rate by Pulse oximetry"),
    "59408-5": _m("SpO2", None, "Oxygen saturation in Arterial blood by Pulse oximetry"),
    "2708-6": _m("SaO2", None, "Oxygen saturation in Arterial blood"),
    "9279-1": _m("RR", None, "Respiratory rate"),
    "8480-6": _m("SBP", None, "Systolic blood pressure"),
    "8462-4": _m("DBP", None, "Diastolic blood pressure"),
    "8478-0": _m("MAP", None, "Mean blood pressure"),
    "76215-3": _m("SBP", "invasive", "Invasive Systolic blood pressure"),
    "76213-8": _m("DBP", "invasive", "Invasive Diastolic blood pressure"),
    "76214-6": _m("MAP", "invasive", "Invasive Mean blood pressure"),
    "8310-5": _m("Temp", None, "Body temperature"),
    "8331-1": _m("Temp", "oral", "Oral temperature"),
    "8332-9": _m("Temp", "rectal", "Rectal temperature"),
    "8328-7": _m("Temp", "axillary", "Axillary temperature"),
    "8333-7": _m("Temp", "tympanic", "Tympanic membrane temperature"),
    "19889-5": _m("EtCO2", None, "Carbon dioxide [Partial pressure] in Exhaled gas --at end "
                  "expiration"),
    "3150-0": _m("FiO2", None, "Inhaled oxygen concentration"),
}

# IEEE 11073-10101 units (partition 4, DIM): context-free code -> (refid, UCUM)
MDC_UNITS: dict[int, tuple[str, str]] = {
    262656: ("MDC_DIM_DIMLESS", "1"),
    262688: ("MDC_DIM_PERCENT", "%"),
    264864: ("MDC_DIM_BEAT_PER_MIN", "/min"),
    264928: ("MDC_DIM_RESP_PER_MIN", "/min"),
    265987: ("MDC_DIM_KILO_PASCAL", "kPa"),
    266016: ("MDC_DIM_MMHG", "mm[Hg]"),
    266528: ("MDC_DIM_KELVIN", "K"),
    266560: ("MDC_DIM_FAHR", "[degF]"),
    268192: ("MDC_DIM_DEGC", "Cel"),
}
_UNIT_REFIDS: dict[str, str] = {refid: ucum for refid, ucum in MDC_UNITS.values()}

_MDC_SYSTEMS = {"MDC", "IEEE 11073-10101", "URN:ISO:STD:ISO:11073:10101", "99MDC"}
_LOINC_SYSTEMS = {"LN", "LOINC", "HTTP://LOINC.ORG"}


def is_mdc_system(system: str) -> bool:
    return system.strip().upper() in _MDC_SYSTEMS


def is_loinc_system(system: str) -> bool:
    return system.strip().upper() in _LOINC_SYSTEMS


def _mdc(ident: str, text: str) -> CodeMap | None:
    ident, text = ident.strip(), text.strip()
    if ident.isdigit():
        hit = MDC_CODES.get(int(ident))
        if hit is not None:
            return hit
    for refid in (ident, text):
        code = MDC_REFIDS.get(refid.upper())
        if code is not None:
            return MDC_CODES[code]
    return None


def lookup(triplets: list[tuple[str, str, str]]) -> CodeMap | None:
    """The Vigil meaning of a coded element given as (identifier, text, system) triplets.

    HL7 CWE / CE carry a primary and an alternate coding (OBX-3.1-3 and OBX-3.4-6); FHIR a
    list of codings. The first triplet Vigil knows wins, so a monitor sending
    ``147842^MDC_ECG_HEART_RATE^MDC^8867-4^Heart rate^LN`` is read by its MDC code. An MDC
    term is matched by its numeric code or its reference id; a triplet without a system is
    tried as MDC (PCD-01 requires MDC, some gateways leave OBX-3.3 empty) and as LOINC.

    >>> lookup([("147842", "MDC_ECG_HEART_RATE", "MDC")]).code
    'HR'
    >>> lookup([("", "MDC_PRESS_BLD_NONINV_SYS", "MDC")]).method
    'non-invasive'
    >>> lookup([("8480-6", "Systolic blood pressure", "LN")]).code
    'SBP'
    >>> lookup([("150388", "MDC_TEMP_SKIN", "MDC")]) is None
    True
    """
    for ident, text, system in triplets:
        if not (ident or text):
            continue
        if is_mdc_system(system):
            hit = _mdc(ident, text)
        elif is_loinc_system(system):
            hit = LOINC_CODES.get(ident.strip())
        elif not system.strip():
            hit = _mdc(ident, text) or LOINC_CODES.get(ident.strip())
        else:
            hit = None
        if hit is not None:
            return hit
    return None


def unit_of(ident: str, text: str, system: str) -> str:
    """The unit string handed to Vigil's conversions: MDC units become UCUM, others pass.

    A UCUM unit (``mm[Hg]``, ``/min``, ``Cel``) or a common spelling Vigil converts from is
    used as sent; an MDC unit, by numeric code or reference id, becomes its UCUM code. An
    MDC unit Vigil does not know stays its reference id so the refusal names it.

    >>> unit_of("266016", "MDC_DIM_MMHG", "MDC"), unit_of("", "MDC_DIM_DEGC", "MDC")
    ('mm[Hg]', 'Cel')
    >>> unit_of("mm[Hg]", "mmHg", "UCUM")
    'mm[Hg]'
    """
    ident, text = ident.strip(), text.strip()
    if is_mdc_system(system) or ident.isdigit() or ident.upper().startswith("MDC_DIM"):
        if ident.isdigit() and int(ident) in MDC_UNITS:
            return MDC_UNITS[int(ident)][1]
        for refid in (ident, text):
            if refid.upper() in _UNIT_REFIDS:
                return _UNIT_REFIDS[refid.upper()]
        return (text or ident)[:32]
    return (ident or text)[:32]
