"""The wire schema: every record that crosses a Vigil topic, as msgspec structs.

msgspec decodes and type-checks JSON in one pass, an order of magnitude faster than building
dicts and validating afterwards, which matters on the per-record hot path. Patient keys on
every topic are pseudonyms made at the edge (:mod:`vigil.stream.pseudonym`), never source ids.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Literal, TypeVar, get_args

import msgspec
from msgspec import Meta, Struct

__all__ = [
    "Observation",
    "PatientInfo",
    "VitalsRecord",
    "LabelRecord",
    "ScoreRecord",
    "Driver",
    "AlertEvent",
    "Rejection",
    "DeadLetter",
    "dlq_payload",
    "MAX_DLQ_PAYLOAD_BYTES",
    "AckEvent",
    "encode",
    "VITALS_DECODER",
    "LABEL_DECODER",
    "ALERT_DECODER",
    "SCORE_DECODER",
    "DLQ_DECODER",
    "REJECTION_REASONS",
    "RejectionReason",
    "decode_wire",
    "whole_years",
    "AGE_CAP_YEARS",
]

PatientKey = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
# an alert kind's name (the kinds registry, vigil.kinds) or an outcome label's kind: a short
# identifier, so that it is safe as a metric label and a key
KindName = Annotated[str, Meta(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")]
AwareTime = Annotated[datetime, Meta(tz=True)]
ShortText = Annotated[str, Meta(max_length=64)]


class Observation(Struct, frozen=True, omit_defaults=True):
    """One measured value; several taken together travel in one :class:`VitalsRecord`."""

    code: Annotated[str, Meta(min_length=1, max_length=32)]
    value: float
    unit: Annotated[str, Meta(max_length=32)] = ""
    method: ShortText | None = None  # e.g. "invasive" / "non-invasive" for blood pressure


AGE_CAP_YEARS = 90  # HIPAA Safe Harbor, 45 CFR 164.514(b)(2)(i)(C): ages over 89 become 90+


def whole_years(age: float) -> float:
    """An age as it may travel on a topic: whole years, capped at 90.

    Every edge (the HL7 gateway, the PhysioNet replays) sends ages through this, so the
    topics never carry the fraction of a year that, with an admission time, narrows a
    patient down to a birthday; training reads the same replays, so the models learn from
    the ages the stream gives them.

    >>> whole_years(83.94), whole_years(97.0), whole_years(0.5)
    (83.0, 90.0, 0.0)
    """
    return float(min(int(age), AGE_CAP_YEARS))


class PatientInfo(Struct, frozen=True, omit_defaults=True):
    """Demographics an admission (HL7 ADT / PhysioNet header) carries with the vitals."""

    age_years: Annotated[float, Meta(ge=0, le=130)] | None = None
    sex: Literal["female", "male", "other", "unknown"] | None = None
    icu_admit_time: AwareTime | None = None
    hospital_admit_time: AwareTime | None = None


class VitalsRecord(Struct, frozen=True, omit_defaults=True):
    """Observations of one patient taken at one event time (one HL7 ORU, one PhysioNet hour)."""

    patient: PatientKey
    event_time: AwareTime
    observations: Annotated[list[Observation], Meta(min_length=1, max_length=256)]
    event_id: ShortText | None = None  # the source's message id (HL7 MSH-10); dedupe key
    unit: ShortText | None = None  # ICU unit, e.g. "MICU"
    bed: ShortText | None = None
    source: ShortText | None = None  # device or integration that produced the record
    patient_info: PatientInfo | None = None


class LabelRecord(Struct, frozen=True, omit_defaults=True):
    """An outcome label that becomes known after the hour it describes (delayed labels)."""

    patient: PatientKey
    kind: KindName  # "sepsis" (PhysioNet 2019 hourly label), "death" (PhysioNet 2012) ...
    event_time: AwareTime  # the hour (or stay) the label describes
    label: Annotated[int, Meta(ge=0, le=1)]
    known_time: AwareTime  # when the outcome became known
    source: ShortText | None = None


class ScoreRecord(Struct, frozen=True, omit_defaults=True):
    """One scored patient-hour/record, published to the scores topic."""

    score_id: str
    patient: str
    event_time: datetime
    record_id: str
    risks: dict[str, float]
    scorers: dict[str, str]
    clinical: dict[str, float | None]
    unit: str | None = None
    bed: str | None = None
    ingested_at: datetime | None = None  # Kafka timestamp of the vitals record


class Driver(Struct, frozen=True, omit_defaults=True):
    """One reason behind an alert: what a nurse reads in a glance ("RR 28 ↑")."""

    feature: str
    text: str
    value: float | None = None
    contribution: float | None = None
    direction: Literal["up", "down", "abnormal"] | None = None


class AlertEvent(Struct, frozen=True, omit_defaults=True):
    """A transition of an alert: the alerts topic's record.

    ``alert_id`` names the episode (same for all its transitions); ``event_id`` names the
    transition, so consumers deduplicate redeliveries on it. ``transition_reason`` says in
    words why this transition happened ("risk rose to high", "unacknowledged for 30 min",
    "acknowledged by RN 4", "below 0.02 for 2 h"); ``trend`` holds the patient's recent risks
    for this kind, oldest first, ending with ``risk`` (the board's sparkline).
    """

    alert_id: str
    event_id: str
    patient: str
    kind: KindName
    severity: Literal["low", "medium", "high"]
    state: Literal["raised", "escalated", "acknowledged", "resolved"]
    risk: float
    threshold: float
    reasons: list[Driver]
    summary: str
    scorer: str
    event_time: datetime
    published_at: datetime
    episode_start: datetime
    record_id: str
    unit: str | None = None
    bed: str | None = None
    ingested_at: datetime | None = None
    transition_reason: str | None = None
    trend: list[float] = msgspec.field(default_factory=list)
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None


RejectionReason = Literal[
    "malformed_json",
    "schema",
    "unknown_code",
    "unknown_unit",
    "implausible",
    "not_finite",
    "future",
    "implausible_time",
    "late",
    "duplicate",
    "key_mismatch",
    "unknown_alert",
    "internal_error",
    # what only the HL7 v2 / FHIR gateways refuse (vigil.gateways; README "Bedside monitors")
    "result_status",  # OBX-11 / Observation.status says the value must not be used (X, D, W)
    "not_numeric",  # a value type or value Vigil cannot read as a number
    "bad_time",  # an HL7 DTM / FHIR time that cannot be read, or coarser than minutes
    "unsupported_message",  # not ORU^R01 (ADT ...), or an HL7 version Vigil does not read
    "not_supported",  # a FHIR resource or coding that is not a vital sign Vigil uses
    "invalid",  # a FHIR resource that fails its R4B model
    "no_patient",  # no PID-3 / Observation.subject to key the patient by
    "unparsable",  # not an HL7 v2 message at all
    "too_large",  # over VIGIL_GATEWAY_MAX_MESSAGE_BYTES
    "broker_unavailable",  # Kafka did not acknowledge in time: nothing stored, resend
]
REJECTION_REASONS: frozenset[str] = frozenset(get_args(RejectionReason))
"""Every machine-readable reason a dead letter can carry (README, "Validation at the door")."""


class Rejection(Struct, frozen=True, omit_defaults=True):
    """Why (part of) a record was refused; ``reason`` is machine-readable."""

    reason: RejectionReason
    detail: str
    code: str | None = None
    value: float | None = None


class DeadLetter(Struct, frozen=True, omit_defaults=True):
    """A dead-letter record: the original payload and every reason it was (partly) refused.

    ``scope`` is "record" when nothing of it was used and "observations" when only the listed
    observations were dropped and the rest of the record was processed.
    """

    dlq_id: str
    scope: Literal["record", "observations"]
    reason: str
    rejections: list[Rejection]
    topic: str
    partition: int
    offset: int
    payload: str
    payload_encoding: Literal["utf-8", "base64"]
    received_at: datetime
    #: the original payload's size in bytes when only its first MAX_DLQ_PAYLOAD_BYTES are
    #: kept in ``payload`` (still valid in its encoding); absent when it is whole
    payload_truncated_from: int | None = None


#: bytes of a refused payload a dead letter keeps. A vitals record may be up to Kafka's 1 MB
#: a record (``message.max.bytes``); its dead letter, base64 a third larger plus the reasons,
#: would not fit, and a dead letter the broker refuses would stop the worker on it.
MAX_DLQ_PAYLOAD_BYTES = 256 * 1024


def dlq_payload(value: bytes) -> tuple[str, Literal["utf-8", "base64"], int | None]:
    """(payload, encoding, original size when cut) for a dead letter: UTF-8 text as it is,
    anything else base64, at most :data:`MAX_DLQ_PAYLOAD_BYTES` of it.

    >>> dlq_payload(b"{bad"), dlq_payload(b"\\xff")
    (('{bad', 'utf-8', None), ('/w==', 'base64', None))
    >>> text, _, was = dlq_payload(("é" * MAX_DLQ_PAYLOAD_BYTES).encode())
    >>> len(text.encode()) <= MAX_DLQ_PAYLOAD_BYTES, was == 2 * MAX_DLQ_PAYLOAD_BYTES
    (True, True)
    """
    cut = len(value) if len(value) > MAX_DLQ_PAYLOAD_BYTES else None
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return (base64.b64encode(value[:MAX_DLQ_PAYLOAD_BYTES]).decode("ascii"), "base64", cut)
    if cut is None:
        return text, "utf-8", None
    # the whole value is UTF-8, so "ignore" only drops a character cut in two at the end
    return value[:MAX_DLQ_PAYLOAD_BYTES].decode("utf-8", "ignore"), "utf-8", cut


class AckEvent(Struct, frozen=True, omit_defaults=True):
    """A nurse's acknowledgement of an alert (from the alert board or another client).

    From the board, ``by`` is the signed-in identity (never typed text), ``role`` its board
    role, ``auth_method`` how it signed in (password, token, proxy) and ``client_address``
    where the request came from: the acks topic is the audit trail. Older acks lack the
    last three and still decode."""

    alert_id: str
    patient: str
    kind: KindName
    acked_at: AwareTime
    by: ShortText | None = None
    role: ShortText | None = None
    auth_method: ShortText | None = None
    client_address: ShortText | None = None


_ENCODER = msgspec.json.Encoder()


def encode(record: Struct) -> bytes:
    return _ENCODER.encode(record)


VITALS_DECODER = msgspec.json.Decoder(VitalsRecord)
LABEL_DECODER = msgspec.json.Decoder(LabelRecord)
ALERT_DECODER = msgspec.json.Decoder(AlertEvent)
SCORE_DECODER = msgspec.json.Decoder(ScoreRecord)
DLQ_DECODER = msgspec.json.Decoder(DeadLetter)
ACK_DECODER = msgspec.json.Decoder(AckEvent)


T = TypeVar("T")
_DETAIL_MAX = 500  # a dead letter's detail is for a human: the payload itself is kept whole


def decode_wire(decoder: msgspec.json.Decoder[T], payload: bytes | None) -> T | Rejection:
    """Decode one Kafka record value, or say why it cannot be: never raises on bad input.

    Every agent reads bytes that any producer may have written, so each way a value can be
    unreadable must become a dead letter with a reason, not an exception that the caller
    files as ``internal_error`` (which pages ops as a Vigil bug) or that kills the worker:

    - ``None``, a Kafka tombstone: there is nothing to decode (``malformed_json``);
    - bytes that are not UTF-8 anywhere in the value, even in a field Vigil ignores: JSON on
      the wire must be UTF-8 (RFC 8259 §8.1), and a producer sending Latin-1 should be told
      so on its first record, not only when the odd byte lands in a field Vigil reads
      (``malformed_json``);
    - not JSON, or nested deeper than msgspec's recursion limit (``malformed_json``);
    - JSON that does not match the schema (``schema``).

    >>> decode_wire(VITALS_DECODER, None).detail
    'the record has no value (a Kafka tombstone)'
    >>> decode_wire(VITALS_DECODER, b'{"patient": "caf\\xe9"}').reason
    'malformed_json'
    """
    if payload is None:
        return Rejection("malformed_json", "the record has no value (a Kafka tombstone)")
    if not payload.isascii():  # the common all-ASCII record pays no decode
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Rejection("malformed_json", f"not UTF-8: {exc}"[:_DETAIL_MAX])
    try:
        return decoder.decode(payload)
    except msgspec.ValidationError as exc:  # a subclass of DecodeError: test it first
        return Rejection("schema", str(exc)[:_DETAIL_MAX])
    except msgspec.DecodeError as exc:
        return Rejection("malformed_json", str(exc)[:_DETAIL_MAX])
    except RecursionError:
        return Rejection("malformed_json", "JSON nested too deeply to decode")
