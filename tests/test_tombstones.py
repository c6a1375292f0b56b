"""A record with no value (a Kafka tombstone) on any input topic is a dead letter, not a crash.

Any producer can send one; it used to kill the worker in its dead-letter path, and again
0.2 s after every restart (issue 13). Here one goes to each of the vitals, labels and acks
topics of a running worker on the real broker, followed by a valid vitals record.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from kafka import KafkaConsumer, KafkaProducer

from vigil.runtime import OutputCollector, WorkerProcess
from vigil.stream.topics import ensure_topics
from vigil.wire.records import DLQ_DECODER

from .test_e2e import metric

pytestmark = pytest.mark.broker


def test_tombstones_on_every_input_topic_are_dead_lettered_and_the_worker_goes_on(
        broker_settings, tmp_path) -> None:
    s = broker_settings
    ensure_topics(s)
    collector = OutputCollector(s).start()
    worker = WorkerProcess(s, web_port=s.web_port, log_path=tmp_path / "worker.log").start()
    try:
        worker.wait_ready(timeout_s=120)
        p = KafkaProducer(bootstrap_servers=s.bootstrap_servers, acks="all")
        for topic in (s.topic_vitals, s.topic_labels, s.topic_acks):
            p.send(topic, key=b"pt-tomb", value=None)
        ok = json.dumps({"patient": "pt-tomb", "event_time": datetime.now(UTC).isoformat(),
                         "observations": [{"code": "HR", "value": 80}]}).encode()
        p.send(s.topic_vitals, key=b"pt-tomb", value=ok)
        p.flush()
        p.close()
        assert collector.wait_for(2, 60), "the tombstone and the valid record were not handled"
        c = KafkaConsumer(s.topic_dlq, bootstrap_servers=s.bootstrap_servers,
                          auto_offset_reset="earliest", consumer_timeout_ms=2000)
        deadline = time.monotonic() + 30
        dead: list = []
        while time.monotonic() < deadline and len(dead) < 3:
            dead += [DLQ_DECODER.decode(m.value) for m in c]
        c.close()
        assert sorted(d.topic for d in dead) == sorted(
            [s.topic_vitals, s.topic_labels, s.topic_acks])
        assert {d.reason for d in dead} == {"malformed_json"}
        assert all("tombstone" in d.rejections[0].detail for d in dead)
        assert worker.proc is not None and worker.proc.poll() is None  # still running
        assert len(collector.score_ids) == 1  # the valid record after it was scored
        assert metric(worker.metrics_text(), "vigil_rejections_total",
                      reason="malformed_json") >= 1
    finally:
        worker.stop()
        collector.stop()
