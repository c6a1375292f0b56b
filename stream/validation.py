"""Validation at the door: everything that can be checked from one record alone.

Checks that need the patient's history (late beyond the lateness bound, duplicates) live in
:mod:`vigil.stream.windows` with the state they need. A record is refused as a whole when
nothing of it can be trusted (no value, bad JSON, bad schema, a time from the future or
before any plausible measurement, no usable observation); when only some observations are
bad, those are refused and the rest is used, because dropping a valid heart rate with a
faulty SpO2 probe reading would hide the patient from the scorers. Either way every refusal is reported, never silently dropped.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from vigil.wire.codes import CODES, UnknownUnit
from vigil.wire.durations import dt_to_ms
from vigil.wire.records import VITALS_DECODER, Rejection, VitalsRecord, decode_wire

__all__ = ["ADMISSION_TOLERANCE_MS", "TIME_FLOOR_MS", "Accepted", "Refused", "check",
           "event_ms_of", "record_id_of", "validate"]

TIME_FLOOR_MS = int(datetime(1990, 1, 1, tzinfo=UTC).timestamp() * 1000)
"""No event time before 1990-01-01T00:00Z is a measurement a live ICU feed can send.

Networked bedside monitors and HL7 v2 interfaces (1988 on) came into ICUs in the 1990s, and
no patient alive in an ICU today has a record the stream should score from before then.
What does arrive with such dates are defaults and resets: a monitor whose RTC battery died
(1970-01-01, the Unix epoch, or 1969 one time zone west of it), an integration that fills a
missing date with 0001-01-01, a two-digit year read as 19xx. Scoring them would put the
observation decades behind the patient's watermark, or, as the first record of a patient,
move the watermark back decades so every later record looks hours "late" relative to
nothing. They are refused whole as ``implausible_time``.
"""

ADMISSION_TOLERANCE_MS = 24 * 3_600_000
"""How far before the admission a record states its event time may be: 24 h.

Samples drawn before the formal admission are real and are charted to the stay: labs in the
emergency department or at a referring hospital, usually within hours, and rarely more than
a day, before the hospital admission is registered. A record dated further back than that
from the earliest admission time it carries itself (``patient_info``) contradicts its own
header: a clock off by days, a wrong date format (day and month swapped), or observations
sent under the wrong patient's admission. The earliest admission is used because ward data
before an ICU transfer, after the hospital admission, is genuine: only a time before both
is refused.
"""


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


class _When(msgspec.Struct):
    event_time: datetime


_WHEN = msgspec.json.Decoder(_When)


def event_ms_of(payload: bytes | None) -> int | None:
    """A vitals payload's event time, read without validating the rest (None if unreadable).

    Where queued labels are due is decided before the batch is processed (see
    :mod:`vigil.stream.label_queue`); msgspec skips every other field, so this costs a
    fraction of :func:`validate`, which still judges the record.

    >>> event_ms_of(b'{"event_time": "1970-01-01T00:00:01Z", "x": [1]}'), event_ms_of(None)
    (1000, None)
    """
    if payload is None:
        return None
    try:
        when = _WHEN.decode(payload).event_time
    except (msgspec.DecodeError, UnicodeDecodeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return dt_to_ms(when)


def validate(payload: bytes | None, now_ms: int, max_clock_skew_ms: int) -> Accepted | Refused:
    """Decode and check one vitals payload (a Kafka record value: ``None`` for a tombstone).

    Never raises on bad input: every way a value can be unreadable is a ``Refused`` with a
    reason (:func:`vigil.wire.records.decode_wire`), so that ``internal_error`` is left
    for Vigil's own bugs.

    >>> ok = validate(b'{"patient":"p1","event_time":"2026-01-01T00:00:00Z",'
    ...               b'"observations":[{"code":"Temp","value":101.3,"unit":"[degF]"},'
    ...               b'{"code":"HR","value":900,"unit":"/min"}]}', 1767225600000, 0)
    >>> [(c, round(v, 1)) for c, v in ok.observations], [r.reason for r in ok.rejections]
    ([('Temp', 38.5)], ['implausible'])
    """
    record = decode_wire(VITALS_DECODER, payload)
    if isinstance(record, Rejection):
        return Refused([record])
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
    too_early = _implausible_time(record, event_ms)
    if too_early is not None:
        return Refused([too_early], record.patient)

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


def _implausible_time(record: VitalsRecord, event_ms: int) -> Rejection | None:
    """Why ``event_ms`` is before any time the record could have been measured, if it is.

    The floor is the later of :data:`TIME_FLOOR_MS` and the earliest admission time the
    record states, less :data:`ADMISSION_TOLERANCE_MS`.
    """
    if event_ms < TIME_FLOOR_MS:
        return Rejection("implausible_time", f"event_time {record.event_time.isoformat()} is "
                         "before 1990-01-01T00:00Z: a reset or default clock, not a measurement")
    info = record.patient_info
    admits = [(t, name) for t, name in ((info.hospital_admit_time, "hospital admission"),
                                        (info.icu_admit_time, "ICU admission"))
              if t is not None] if info is not None else []
    if not admits:
        return None
    first, name = min(admits, key=lambda a: a[0])
    before_ms = int(first.timestamp() * 1000) - event_ms
    if before_ms <= ADMISSION_TOLERANCE_MS:
        return None
    return Rejection("implausible_time", f"event_time {record.event_time.isoformat()} is "
                     f"{before_ms / 3_600_000:.0f} h before the {name} this record states "
                     f"({first.isoformat()}; tolerance {ADMISSION_TOLERANCE_MS // 3_600_000} h)")
