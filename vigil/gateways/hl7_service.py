"""One HL7 message in, its records on Kafka, one ACK out: what the MLLP server calls.

The order is the guarantee: parse and check, produce the usable records and the dead letter,
wait for the broker's acknowledgement (acks=all), and only then answer AA / AE. If the broker
does not acknowledge within ``VIGIL_GATEWAY_ACK_TIMEOUT_S`` the answer is **AR with ERR-3 207
(application internal error)**: HL7 v2.6 §2.9.2 keeps AR for a message refused "for reasons
unrelated to its content or format (the system is down, an internal error)", which a sender
resends, while AE says the content is wrong and must not be resent unchanged. Monitor
gateways queue and resend on AR; the resend carries the same control id, so whatever the
broker did store is dropped by the worker's duplicate rule and the sender finally gets AA.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from vigil.gateways.hl7_message import (
    Header,
    Parsed,
    build_ack,
    decode,
    parse,
    read_header,
    redact,
    split_segments,
)
from vigil.gateways.intake import Door, Issue, dead_letter, short_id
from vigil.gateways.metrics import GatewayMetrics
from vigil.gateways.producer import GatewayProducer, Unavailable
from vigil.settings import VigilSettings
from vigil.wire.records import encode

__all__ = ["Hl7Service", "DEFAULT_ZONE_WARNING", "INLINE_PARSE_BYTES", "PARSE_THREADS"]

log = logging.getLogger(__name__)

DEFAULT_ZONE_WARNING = (
    "VIGIL_HL7_TIMEZONE is not set: HL7 timestamps without an offset are read as UTC. Set it "
    "to the hospital's IANA zone (e.g. Europe/Berlin) if its monitors send local times.")

# Where a message is parsed. A PCD-01 message of a few kilobytes takes a fraction of a
# millisecond (hl7apy's answers for repeated field texts are cached), less than handing it to
# a thread and back, so it is parsed on the event loop. A larger one, or one whose every
# field is new to the cache (about 1 ms per such OBX), could hold the loop for tens to
# thousands of milliseconds and with it every other connection's reads, timeouts and ACKs:
# it goes to a small pool of its own. The GIL still shares one core between the pool and the
# loop, but the loop gets it back every switch interval (5 ms) instead of after the parse.
INLINE_PARSE_BYTES = 4096  # worst case on the loop: ~40 ms for 4 KiB of all-new OBX fields
PARSE_THREADS = 2  # more buys nothing under the GIL; the connection cap bounds the queue


class Hl7Service:
    """Parses, produces and acknowledges; never raises to the connection that called it."""

    def __init__(self, settings: VigilSettings, producer: GatewayProducer,
                 metrics: GatewayMetrics | None = None) -> None:
        self.settings = settings
        self.producer = producer
        self.metrics = metrics or GatewayMetrics()
        self.door = Door.from_settings(settings)
        self.zone = ZoneInfo(settings.hl7_timezone)
        if "hl7_timezone" not in settings.model_fields_set:
            log.warning(DEFAULT_ZONE_WARNING)
        self.inline_parse_bytes = INLINE_PARSE_BYTES
        self._pool: ThreadPoolExecutor | None = None

    async def _parse(self, raw: bytes) -> Parsed:
        """Parse on the loop when ``raw`` is small, else in the parse pool (see above)."""
        if len(raw) <= self.inline_parse_bytes:
            return parse(raw, self.door, self.zone)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(PARSE_THREADS, thread_name_prefix="vigil-hl7-parse")
        return await asyncio.get_running_loop().run_in_executor(self._pool, parse, raw,
                                                                self.door, self.zone)

    def close(self) -> None:
        """Stop the parse pool (a parse in progress finishes; its answer goes nowhere)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    async def handle(self, raw: bytes, seq: int = -1) -> bytes:
        """The ACK for one complete message (the bytes between MLLP's start and end blocks)."""
        started = time.perf_counter()
        try:
            parsed = await self._parse(raw)
            ack = await self._store_and_answer(parsed, raw, seq)
        except Exception as exc:  # noqa: BLE001 - a bug must cost an AR, not the connection
            log.exception("HL7 message could not be handled (%s)", type(exc).__name__)
            header = read_header(split_segments(decode(raw)))
            ack = build_ack(header, "AR", [Issue("internal_error", "Vigil failed on this "
                                                 "message; resend later", "E", 207)])
            self.metrics.messages.labels("hl7", "AR").inc()
        self.metrics.ack_seconds.labels("hl7").observe(time.perf_counter() - started)
        return ack

    async def _store_and_answer(self, parsed: Parsed, raw: bytes, seq: int) -> bytes:
        s = self.settings
        code = parsed.ack_code
        issues = [parsed.message_issue] if parsed.message_issue else parsed.issues
        items: list[tuple[str, bytes | None, bytes]] = [
            (s.topic_vitals, r.patient.encode(), encode(r)) for r in parsed.records]
        if issues:
            whole = parsed.message_issue is not None or not parsed.records
            scope = "record" if whole else "observations"
            dlq_id = f"hl7:{short_id(parsed.control_id or 'none')}" + (
                "" if whole else ":observations")
            key = parsed.patients[0].encode() if len(set(parsed.patients)) == 1 else None
            items.append((s.topic_dlq, key, dead_letter(dlq_id, scope, issues, parsed.source,
                                                        parsed.redacted, seq)))
        try:
            await self.producer.send(items)
        except Unavailable as exc:
            self.metrics.broker_errors.labels("hl7").inc()
            self.metrics.messages.labels("hl7", "AR").inc()
            log.warning("HL7 message %s answered AR: %s", short_id(parsed.control_id), exc)
            return build_ack(parsed.header, "AR", [Issue(
                "broker_unavailable", f"not stored: {exc}; resend the message later", "E",
                207)])
        m = self.metrics
        m.messages.labels("hl7", code).inc()
        m.observations_mapped.labels("hl7").inc(parsed.used)
        m.records.labels("hl7", "vitals").inc(len(parsed.records))
        if issues:
            m.records.labels("hl7", "dlq").inc()
        for i in issues:
            m.observations_refused.labels("hl7", i.reason).inc()
        if code != "AA":
            log.info("HL7 message %s answered %s: %s", short_id(parsed.control_id), code,
                     ", ".join(sorted({i.reason for i in issues})))
        return build_ack(parsed.header, code, issues)

    async def refuse(self, prefix: bytes, reason: str, detail: str, seq: int = -1) -> bytes:
        """An AR for what the connection could not frame (too large, not MLLP, cut off),
        dead-lettered with what was received (de-identified) when there is a header."""
        text = decode(prefix)
        header: Header | None = read_header(split_segments(text))
        issue = Issue(reason, detail, "E", 207 if reason != "not_mllp" else 100)
        self.metrics.messages.labels("hl7", "AR").inc()
        self.metrics.observations_refused.labels("hl7", reason).inc()
        if header is not None:
            source = "hl7:" + (short_id(header.facility, 58) if header.facility else "unknown")
            dl = dead_letter(f"hl7:{short_id(header.control_id or 'none')}", "record", [issue],
                             source, redact(text, None), seq, datetime.now(UTC))
            try:
                await self.producer.send([(self.settings.topic_dlq, None, dl)])
                self.metrics.records.labels("hl7", "dlq").inc()
            except Unavailable:
                self.metrics.broker_errors.labels("hl7").inc()
        return build_ack(header, "AR", [issue])
