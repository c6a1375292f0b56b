"""What both gateways share: refusals with their reasons, the door's rules, dead letters.

An HL7 OBX or a FHIR Observation is checked by the same :func:`vigil.stream.validation.check`
as a JSON record on ``vigil.vitals`` (unknown code or unit, implausible, not finite, from the
future), one observation at a time so that each refusal can be pinned to the OBX or entry the
sender has to fix. Only what passes is produced; the worker checks it again with its own
clock, and everything refused goes to ``vigil.dlq`` from here, so it is never dropped.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from vigil.settings import VigilSettings
from vigil.stream.pseudonym import pseudonymize
from vigil.stream.validation import Refused, check
from vigil.wire.records import (
    REJECTION_REASONS,
    DeadLetter,
    Observation,
    Rejection,
    VitalsRecord,
    dlq_payload,
    encode,
)

__all__ = ["Issue", "Door", "WIRE_REASONS", "to_rejection", "dead_letter", "short_id"]

Severity = Literal["E", "W", "I"]

# reasons a vigil.wire.records.Rejection can carry (the gateways' own are among them); an
# issue with any other reason is dead-lettered as "schema", its reason first in the detail
WIRE_REASONS = REJECTION_REASONS


@dataclass(frozen=True, slots=True)
class Issue:
    """Why one observation (or the whole message) was not used, for the ACK, DLQ and metrics.

    ``severity`` follows HL7 table 0516: E (error: the sender should fix it, the ACK is AE or
    AR), W (warning: not used by design, e.g. a code Vigil has no use for, the ACK stays AA),
    I (information). ``hl7_code`` is HL7 table 0357 (v2.6 chapter 2, ERR-3).
    """

    reason: str
    detail: str
    severity: Severity = "E"
    hl7_code: int = 207
    segment: str | None = None
    seq: int | None = None  # occurrence of that segment in the message, 1-based
    field: int | None = None
    code: str | None = None
    value: float | None = None


def to_rejection(issue: Issue) -> Rejection:
    reason = issue.reason if issue.reason in WIRE_REASONS else "schema"
    detail = issue.detail if reason == issue.reason else f"{issue.reason}: {issue.detail}"
    where = f" [{issue.segment} {issue.seq}]" if issue.segment and issue.seq else ""
    return Rejection(reason, (detail + where)[:500], issue.code,  # type: ignore[arg-type]
                     issue.value)


def short_id(text: str, limit: int = 40) -> str:
    """``text`` if it is short and printable, else a stable hash of it (ids must fit 64)."""
    clean = "".join(c for c in text if c.isprintable() and c not in "\r\n")
    if clean == text and 0 < len(text) <= limit:
        return text
    return "h" + hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=12).hexdigest()


@dataclass(slots=True)
class Door:
    """The validation context of one gateway process (pseudonym key, clock tolerance)."""

    pseudonym_key: str
    namespace: str
    max_clock_skew_ms: int

    @classmethod
    def from_settings(cls, s: VigilSettings) -> Door:
        return cls(s.pseudonym_key.get_secret_value(), s.gateway_patient_namespace,
                   s.max_clock_skew_s * 1000)

    def patient(self, source_id: str, namespace: str | None = None) -> str:
        return pseudonymize(source_id, self.pseudonym_key, namespace or self.namespace)

    def check_one(self, patient: str, event_time: datetime, obs: Observation,
                  now_ms: int | None = None) -> Rejection | None:
        """The door's verdict on one observation: ``None`` when the worker would use it."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        rec = VitalsRecord(patient=patient, event_time=event_time, observations=[obs])
        verdict = check(rec, now_ms, self.max_clock_skew_ms)
        if isinstance(verdict, Refused):
            return verdict.rejections[0] if verdict.rejections else Rejection(
                "schema", "refused without a reason")
        return verdict.rejections[0] if verdict.rejections else None


def dead_letter(dlq_id: str, scope: str, issues: list[Issue], source: str, payload: bytes | str,
                seq: int = -1, now: datetime | None = None) -> bytes:
    """A ``DeadLetter`` for a refused message or its refused observations, encoded.

    The struct is Kafka-shaped (topic, partition, offset); a gateway has no offset yet, so
    ``topic`` names the source (``hl7:<facility>``, ``fhir``), ``partition`` is -1 and
    ``offset`` the position of the message on its connection (-1 when not known). The
    payload is the de-identified original (see :func:`vigil.gateways.hl7_message.redact`).
    """
    text, encoding, cut = dlq_payload(payload if isinstance(payload, bytes)
                                      else payload.encode("utf-8", "surrogatepass"))
    rejections = [to_rejection(i) for i in issues] or [Rejection("schema", "refused")]
    return encode(DeadLetter(
        dlq_id=dlq_id[:200],
        scope=scope,  # type: ignore[arg-type]
        reason=rejections[0].reason,
        rejections=rejections,
        topic=source[:64],
        partition=-1,
        offset=seq,
        payload=text,
        payload_encoding=encoding,
        payload_truncated_from=cut,
        received_at=now or datetime.now(UTC),
    ))
