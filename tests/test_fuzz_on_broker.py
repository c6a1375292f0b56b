"""A few thousand fuzzed inputs through a running worker on the real broker (issue 13).

The door's properties are fuzzed in process (tests/stream/test_fuzz_validation.py); here the
same generator's payloads, random bytes, tombstones, MB-sized values and a flood of exact
duplicates travel the whole way: Kafka, faust, the batcher, the dead-letter path. The worker
must stay up, count every input exactly once (accepted or refused), publish each outcome
(a score or a dead letter), and its memory must not grow with a second pass of the same
inputs (a duplicate flood keeps no state).
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kafka import KafkaConsumer, KafkaProducer

from vigil.runtime import WorkerProcess
from vigil.stream.topics import ensure_topics
from vigil.wire.records import DLQ_DECODER, MAX_DLQ_PAYLOAD_BYTES

from .stream.test_fuzz_validation import records
from .streamed import fresh_settings
from .test_e2e import metric, vitals_consumed
from .waiting import wait_until

pytestmark = pytest.mark.broker

N_FUZZED = 2000  # generated inputs; then the first DUPLICATES of them sent again
DUPLICATES = 500
HUGE = 6  # values of ~0.9 MB (Kafka's default limit is 1 MB a record)
JUNK = bytes([0xFF, 0xFE]) * 475_000  # 950 kB, not UTF-8: its dead letter would be base64


def _payloads(n: int) -> list[tuple[bytes | None, bytes | None]]:
    """``n`` (key, value) inputs from the fuzz generator, the same on every run."""
    out: list[tuple[bytes | None, bytes | None]] = []

    @settings(derandomize=True, max_examples=n, database=None, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(st.one_of(records().map(lambda r: r[0]), records().map(lambda r: r[0]),
                     st.binary(max_size=512), st.just(None)),
           st.sampled_from(["own", "own", "other", "none"]))
    def collect(value: bytes | None, key: str) -> None:
        out.append((_key(value, key), value))

    collect()
    return out


def _key(value: bytes | None, how: str) -> bytes | None:
    """The record's own patient as key (what a producer should send), another, or none
    (a tombstone needs a key: Kafka has no record without both)."""
    if how == "none":
        return None if value is not None else b"tombstone"
    if how == "own":
        try:
            patient = json.loads(value or b"").get("patient")
            if isinstance(patient, str):
                return patient.encode("utf-8", "surrogatepass")
        except (ValueError, AttributeError, UnicodeError):
            pass
    return b"someone-else"


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_thousands_of_fuzzed_inputs_are_each_counted_once_and_the_worker_stays_up(
        broker_settings, tmp_path) -> None:
    s = fresh_settings(broker_settings, partitions=2)
    ensure_topics(s)
    inputs = _payloads(N_FUZZED)
    big = json.dumps({"patient": "pt-big", "event_time": "2026-01-01T00:00:00Z",
                      "observations": [{"code": "HR", "value": 80}], "bed": "x" * 900_000})
    inputs += [(b"pt-big", big.encode())] * HUGE
    # binary junk near the limit: its dead letter carries it base64-encoded, a third larger
    # than the broker takes in one record
    inputs += [(b"pt-junk", JUNK)]
    kinds = Counter("tombstone" if v is None else "json" if v[:1] == b"{" else "other"
                    for _, v in inputs)
    assert len(inputs) >= N_FUZZED and kinds["tombstone"] and kinds["json"] > N_FUZZED / 3

    worker = WorkerProcess(s, web_port=s.web_port, log_path=tmp_path / "worker.log").start()
    producer = KafkaProducer(bootstrap_servers=s.bootstrap_servers, acks="all",
                             max_request_size=1_048_576)
    try:
        worker.wait_ready(timeout_s=120)
        assert worker.proc is not None

        def send(batch: list[tuple[bytes | None, bytes | None]]) -> None:
            for key, value in batch:
                producer.send(s.topic_vitals, key=key, value=value)
            producer.flush(60)

        def handled(n: int) -> None:
            wait_until(lambda: vitals_consumed(worker.metrics_text()) >= n, 180,
                       lambda: f"the worker to handle {n} inputs: "
                               f"{vitals_consumed(worker.metrics_text())} so far")

        send(inputs)
        handled(len(inputs))
        rss_after_first = _rss_kb(worker.proc.pid)
        flood = inputs[:DUPLICATES]
        send(flood)
        total = len(inputs) + len(flood)
        handled(total)
        rss_after_flood = _rss_kb(worker.proc.pid)
        text = worker.metrics_text()
        assert worker.proc.poll() is None and worker.health() is not None  # still up

        # every input counted exactly once, by outcome
        assert vitals_consumed(text) == total
        accepted = metric(text, "vigil_vitals_records_total", outcome="accepted")
        rejected = metric(text, "vigil_vitals_records_total", outcome="rejected")
        assert accepted > 0 and rejected > 0
        # every outcome published: a score per accepted input, a record-scope dead letter
        # per refused one (re-deliveries would show as "redelivered", counted above)
        consumer = KafkaConsumer(s.topic_scores, s.topic_dlq,
                                 bootstrap_servers=s.bootstrap_servers,
                                 auto_offset_reset="earliest", consumer_timeout_ms=4000,
                                 fetch_max_bytes=8 << 20, max_partition_fetch_bytes=8 << 20)
        published: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        largest_dead = 0
        junk_letters = []
        for m in consumer:
            if m.topic == s.topic_scores:
                published["score"] += 1
            else:
                dead = DLQ_DECODER.decode(m.value)
                published[f"dlq:{dead.scope}"] += 1
                largest_dead = max(largest_dead, len(m.value))
                if dead.scope == "record":
                    reasons[dead.reason] += 1
                if m.key == b"pt-junk" or dead.payload_truncated_from == len(JUNK):
                    junk_letters.append(dead)
        consumer.close()
        redelivered = metric(text, "vigil_vitals_records_total", outcome="redelivered")
        assert published["score"] == metric(text, "vigil_scores_total") >= accepted
        assert published["dlq:record"] >= rejected
        assert published["score"] + published["dlq:record"] <= total + redelivered
        # dead letters fit in a record on Apache Kafka too (1 MB default): the junk's keeps
        # its first 256 KiB, still valid base64, and says how large it was
        assert largest_dead < 1_000_000, largest_dead
        [junk] = junk_letters
        assert junk.payload_truncated_from == len(JUNK) and junk.payload_encoding == "base64"
        assert base64.b64decode(junk.payload) == JUNK[:MAX_DLQ_PAYLOAD_BYTES]
        # the flood was recognised: its accepted inputs came back as duplicates
        assert reasons["duplicate"] >= 1
        for reason in ("malformed_json", "schema", "key_mismatch"):
            assert reasons[reason] > 0, reasons
        grew_mb = (rss_after_flood - rss_after_first) / 1024
        print(json.dumps({"inputs": total, "accepted": accepted, "rejected": rejected,
                          "redelivered": redelivered, "published": dict(published),
                          "reasons": dict(reasons), "rss_after_first_mb":
                          round(rss_after_first / 1024, 1), "rss_growth_flood_mb":
                          round(grew_mb, 1)}))
        assert grew_mb < 32, f"memory grew by {grew_mb:.0f} MB over a flood of duplicates"
    finally:
        producer.close()
        worker.stop()
