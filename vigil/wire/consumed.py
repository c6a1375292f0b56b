"""A consumed Kafka record, and its dead letter when Vigil cannot use it.

Both sit at the bottom of the stream layers: the processor, the gap filler and the agents
all handle consumed records, and every one of them may have to dead-letter one. A record's
value may be anything a producer sent, including nothing at all (a tombstone: legal Kafka,
any producer can send one), so neither ever assumes it is text.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass

from vigil.wire.durations import ms_to_dt
from vigil.wire.records import DeadLetter, Rejection, dlq_payload

__all__ = ["InRecord", "dead_letter", "short_error"]


@dataclass(slots=True)
class InRecord:
    """One consumed Kafka record, as much of it as the processor needs."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None  # None: a tombstone
    timestamp_ms: int  # broker/producer timestamp: when it entered Kafka


def dead_letter(rec: InRecord, scope: str, rejections: list[Rejection], now_ms: int) -> DeadLetter:
    """The DLQ record for ``rec``: its original bytes and every reason, id from its offset.

    >>> d = dead_letter(InRecord("t", 0, 7, None, None, 0), "record",
    ...                 [Rejection("malformed_json", "no value")], 0)
    >>> d.dlq_id, d.payload, d.payload_encoding
    ('t:0:7', '', 'utf-8')
    """
    payload, encoding, cut = dlq_payload(rec.value if rec.value is not None else b"")
    suffix = "" if scope == "record" else ":observations"
    return DeadLetter(
        dlq_id=f"{rec.topic}:{rec.partition}:{rec.offset}{suffix}",
        scope=scope,  # type: ignore[arg-type]
        reason=rejections[0].reason,
        rejections=rejections,
        topic=rec.topic,
        partition=rec.partition,
        offset=rec.offset,
        payload=payload,
        payload_encoding=encoding,
        received_at=ms_to_dt(now_ms),
        payload_truncated_from=cut,
    )


def short_error(exc: BaseException) -> str:
    """An exception in one line for a dead letter's reason (never a traceback's locals)."""
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()[:500]
