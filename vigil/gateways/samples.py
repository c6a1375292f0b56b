"""Realistic IHE PCD-01 ORU^R01 messages, as a Philips IntelliBridge-style gateway sends them.

One builder for the gateway tests, ``bench/hl7.py`` and anyone who wants to try a listener
by hand, so that what is measured is what is tested. The patient identifiers and names here
are invented; tests check that none of them reaches Kafka, a log line or ``/metrics``.

- :func:`oru`: one multi-OBX message (the MDS / VMD device rows of PCD-01, then HR, SpO2, RR,
  NIBP systolic / diastolic and temperature with MDC codes and units), with the knobs the
  tests turn (control id, time, HR value, version, extra segments, segment end, OBR groups);
- :func:`bedside_stream`: a stream of such messages from several beds, each bed a patient
  of its own, with times moving forward and values drifting as monitors report them. A
  benchmark that resent one message with only its control id changed would measure caches
  that a real ward never hits (every message has new timestamps and new values).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

__all__ = ["PATIENT_MRN", "PATIENT_NAME", "BIRTH", "PCD01_PROFILE", "obx", "oru",
           "bedside_stream", "HR", "SPO2", "RR", "NIBP_SYS", "NIBP_DIA", "TEMP", "BPM", "PCT",
           "RPM", "MMHG", "DEGC", "VITALS_PER_MESSAGE"]

PATIENT_MRN = "4711-0815"
PATIENT_NAME = "Mustermann^Erika^Q"
BIRTH = "19560312"
PCD01_PROFILE = "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"

MSH = ("MSH|^~\\&|GW_PHILIPS^00095F0000ABCDEF^EUI-64|MICU_A|VIGIL|HOSP|{time}||ORU^R01^ORU_R01|"
       "{ctrl}|P|{version}|||NE|AL||UNICODE UTF-8|||" + PCD01_PROFILE)
PID = "PID|||{mrn}^^^HOSP^MR~{national}^^^NATIONAL^PI||{name}||{birth}|{sex}"
PV1 = "PV1||I|{bed}"
OBR = "OBR|{n}|{ctrl}^GW_PHILIPS||182777000^monitoring of patient^SNOMED-CT|||{time}"

HR = "147842^MDC_ECG_HEART_RATE^MDC"
SPO2 = "150456^MDC_PULS_OXIM_SAT_O2^MDC"
RR = "151562^MDC_RESP_RATE^MDC"
NIBP_SYS = "150021^MDC_PRESS_BLD_NONINV_SYS^MDC"
NIBP_DIA = "150022^MDC_PRESS_BLD_NONINV_DIA^MDC"
TEMP = "150344^MDC_TEMP^MDC"
BPM = "264864^MDC_DIM_BEAT_PER_MIN^MDC"
PCT = "262688^MDC_DIM_PERCENT^MDC"
RPM = "264928^MDC_DIM_RESP_PER_MIN^MDC"
MMHG = "266016^MDC_DIM_MMHG^MDC"
DEGC = "268192^MDC_DIM_DEGC^MDC"

# (OBX-3, OBX-6, the value the single-message builder sends in its first OBR group)
_ROWS: tuple[tuple[str, str, str], ...] = ((HR, BPM, "82"), (SPO2, PCT, "97"), (RR, RPM, "18"),
                                           (NIBP_SYS, MMHG, "121"), (NIBP_DIA, MMHG, "77"),
                                           (TEMP, DEGC, "37.1"))
VITALS_PER_MESSAGE = len(_ROWS)


def obx(n: int, code: str, value: str, unit: str, *, status: str = "R", time: str = "",
        vtype: str = "NM", where: str = "1.1.1.1") -> str:
    """One OBX: set id, value type, code, device hierarchy (OBX-4), value, unit, OBX-11, -14."""
    return f"OBX|{n}|{vtype}|{code}|{where}|{value}|{unit}|||||{status}|||{time}"


def oru(ctrl: str = "MSG0001", *, time: str = "20260301115900+0100", hr: str = "82",
        version: str = "2.6", extra: list[str] | None = None, sep: str = "\r",
        obr_groups: int = 1, mrn: str = PATIENT_MRN, name: str = PATIENT_NAME,
        birth: str = BIRTH, sex: str = "F", bed: str = "MICU^12^B",
        values: dict[str, str] | None = None) -> bytes:
    """A multi-OBX PCD-01 message: the MDS/VMD rows, HR, SpO2, RR, NIBP, temp.

    ``values`` overrides the first group's values by OBX-3 (e.g. ``{SPO2: "91"}``); later
    OBR groups send HR 84 and no OBX-14, so that they take OBR-7's time.
    """
    segs = [MSH.format(time=time, ctrl=ctrl, version=version),
            PID.format(mrn=mrn, national="999888", name=name, birth=birth, sex=sex),
            PV1.format(bed=bed)]
    n = 0
    for g in range(1, obr_groups + 1):
        segs.append(OBR.format(n=g, ctrl=ctrl, time=time))
        segs.append(f"OBX|{n + 1}||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X")
        segs.append(f"OBX|{n + 2}||69798^MDC_DEV_ECG_VMD^MDC|1.1.0.0|||||||X")
        n += 2
        for code, unit, value in _ROWS:
            n += 1
            if g == 1:
                value = hr if code == HR else (values or {}).get(code, value)
            elif code == HR:
                value = "84"
            segs.append(obx(n, code, value, unit, time=time if g == 1 else ""))
    segs.extend(extra or [])
    return (sep.join(segs) + sep).encode()


def _dtm(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y%m%d%H%M%S") + "+0000"


# plausible adult ICU ranges the drifting values stay inside: (low, high, step, decimals)
_DRIFT: dict[str, tuple[float, float, float, int]] = {
    HR: (55, 125, 3, 0), SPO2: (90, 100, 1, 0), RR: (10, 28, 1, 0),
    NIBP_SYS: (95, 165, 4, 0), NIBP_DIA: (50, 95, 3, 0), TEMP: (36.0, 38.6, 0.1, 1),
}


def bedside_stream(count: int, *, beds: int = 32, interval_s: float = 60.0,
                   start: datetime | None = None, seed: int = 0,
                   prefix: str = "B") -> Iterator[bytes]:
    """``count`` messages from ``beds`` monitors, round robin, as a ward's gateway sends them.

    Each bed is its own patient (MRN, name, birth date and bed of its own) and reports every
    ``interval_s`` seconds of event time, offset from the other beds by its number in
    seconds (monitors do not share a clock tick), so that every message carries timestamps
    of its own; each value takes a random step within a plausible range. ``start`` defaults
    to just early enough that the last message is not in the future. Control ids are
    ``<prefix><n>``, unique within the stream.
    """
    rng = random.Random(seed)
    rounds = -(-count // max(1, beds))
    t0 = start or datetime.now(UTC) - timedelta(seconds=interval_s * rounds + beds + 60)
    t0 = t0.replace(microsecond=0)
    state = [{code: rng.uniform(lo, hi) for code, (lo, hi, _s, _d) in _DRIFT.items()}
             for _ in range(beds)]
    for i in range(count):
        b = i % beds
        at = t0 + timedelta(seconds=interval_s * (i // beds) + b)
        vals: dict[str, str] = {}
        for code, (lo, hi, step, dec) in _DRIFT.items():
            v = min(hi, max(lo, state[b][code] + rng.uniform(-step, step)))
            state[b][code] = v
            vals[code] = f"{v:.{dec}f}"
        yield oru(f"{prefix}{i:07d}", time=_dtm(at), hr=vals[HR], values=vals,
                  mrn=f"BED-{b:03d}-{seed}", name=f"Patient^Bed{b:03d}", birth="19600101",
                  sex="MF"[b % 2], bed=f"MICU^{b // 2 + 1}^{'AB'[b % 2]}")
