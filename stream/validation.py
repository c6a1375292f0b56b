"""Validation at the door: everything that can be checked from one record alone.

Checks that need the patient's history (late beyond the lateness bound, duplicates) live in
:mod:`vigil.stream.windows` with the state they need. A record is refused as a whole when
nothing of it can be trusted (bad JSON, bad schema, a time from the future, no usable
observation); when only some observations are bad, those are refused and the rest is used,
because dropping a valid heart rate with a faulty SpO2 probe reading would hide the patient
from the scorers. Either way every refusal is reported, never silently dropped.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import msgspec

from vigil.stream.codes import CODES, UnknownUnit
from vigil.stream.records import VITALS_DECODER, Rejection, VitalsRecord

__all__ = ["Accepted", "Refused", "check", "record_id_of", "validate"]


@dataclass(slots=True)
class Accepted:
    """A record that passed the door, its observations in canonical units."""

    record: VitalsRecord
    record_id: str
    event_ms: int
    observations: list[tuple[str, float]]
    rejections: list[Rejection] = field(default_factory=list)  # observations refused


@dataclass(slots=True)
class Refused:
    """A record of which nothing is used."""

    rejections: list[Rejection]
    patient: str | None = None


def record_id_of(record: VitalsRecord) -> str:
    """The dedupe key of a record: the source's message id, or a hash of its content.

    A source that resends the same message (same id, or with no id the same content) is a
    duplicate; two sources reusing an id are not, hence the source prefix.
    """
    if record.event_id:
        return f"{record.source or ''}:{record.event_id}"
    h = hashlib.blake2b(digest_size=12)
    h.update(record.patient.encode())
    h.update(record.event_time.isoformat().encode())
    for o in sorted(record.observations, key=lambda o: (o.code, o.method or "", o.value)):
        h.update(f"|{o.code}:{o.method or ''}:{o.value!r}:{o.unit}".encode())
    return "h:" + h.hexdigest()


def validate(payload: bytes, now_ms: int, max_clock_skew_ms: int) -> Accepted | Refused:
    """Decode and check one vitals payload.

    >>> ok = validate(b'{"patient":"p1","event_time":"2026-01-01T00:00:00Z",'
    ...               b'"observations":[{"code":"Temp","value":101.3,"unit":"[degF]"},'
    ...               b'{"code":"HR","value":900,"unit":"/min"}]}', 1767225600000, 0)
    >>> [(c, round(v, 1)) for c, v in ok.observations], [r.reason for r in ok.rejections]
    ([('Temp', 38.5)], ['implausible'])
    """
    try:
        record = VITALS_DECODER.decode(payload)
    except msgspec.ValidationError as exc:
        return Refused([Rejection("schema", str(exc))])
    except msgspec.DecodeError as exc:
        return Refused([Rejection("malformed_json", str(exc))])
    return check(record, now_ms, max_clock_skew_ms)


def check(record: VitalsRecord, now_ms: int, max_clock_skew_ms: int) -> Accepted | Refused:
    """Every rule after decoding; evaluation calls it on records it never serialised."""
    event_ms = int(record.event_time.timestamp() * 1000)
    if event_ms > now_ms + max_clock_skew_ms:
        ahead_s = (event_ms - now_ms) / 1000
        return Refused(
            [Rejection("future", f"event_time is {ahead_s:.0f} s ahead of the worker clock "
                       f"(tolerance {max_clock_skew_ms / 1000:.0f} s)")],
            record.patient,
        )

    good: list[tuple[str, float]] = []
    bad: list[Rejection] = []
    for obs in record.observations:
        spec = CODES.get(obs.code)
        if spec is None:
            bad.append(Rejection("unknown_code", f"code {obs.code!r} is not a Vigil code",
                                 obs.code, obs.value))
            continue
        if not math.isfinite(obs.value):
            bad.append(Rejection("not_finite", f"{obs.code} value is not finite", obs.code))
            continue
        try:
            value = spec.to_canonical(obs.value, obs.unit or spec.unit)
        except UnknownUnit as exc:
            bad.append(Rejection("unknown_unit", str(exc), obs.code, obs.value))
            continue
        if not spec.plausible(value):
            bad.append(Rejection(
                "implausible",
                f"{obs.code} {value:g} {spec.unit} outside [{spec.low:g}, {spec.high:g}]",
                obs.code, obs.value))
            continue
        good.append((obs.code, value))

    if not good:
        return Refused(bad, record.patient)
    return Accepted(record, record_id_of(record), event_ms, good, bad)
