"""The gateways on the real embedded broker: what lands on vitals and DLQ, and nothing else."""

from __future__ import annotations

import logging
import time
import urllib.request
from pathlib import Path

import pytest

from vigil.broker import EmbeddedBroker, free_port
from vigil.gateways.runner import Hl7Listener
from vigil.gateways.samples import BIRTH, PATIENT_MRN, PCT, SPO2, obx, oru
from vigil.gateways.sender import MllpClient, ack_code, send_stays
from vigil.settings import VigilSettings
from vigil.stream.replay.sources import load_stays
from vigil.stream.topics import ensure_topics
from vigil.stream.validation import record_id_of
from vigil.wire.records import DLQ_DECODER, VITALS_DECODER

pytestmark = pytest.mark.broker
SECRETS = (PATIENT_MRN, "Mustermann", "Erika", BIRTH, "999888")


def consume(settings: VigilSettings, topic: str, n: int, timeout_s: float = 20.0) -> list[bytes]:
    """At least ``n`` values of ``topic`` from the beginning (deadline loop, no sleeps)."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False,
                      consumer_timeout_ms=500)
    try:
        deadline = time.monotonic() + timeout_s
        parts = None
        while parts is None and time.monotonic() < deadline:
            parts = c.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts or [])]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        out: list[bytes] = []
        while len(out) < n and time.monotonic() < deadline:
            for batch in c.poll(timeout_ms=200).values():
                out.extend(m.value for m in batch)
        return out
    finally:
        c.close()


def test_hl7_messages_on_the_vitals_and_dlq_topics(broker_settings: VigilSettings,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    s = broker_settings.model_copy(update={"hl7_timezone": "Europe/Berlin"})
    ensure_topics(s)
    with Hl7Listener(s, metrics_port=free_port()) as listener:
        c = MllpClient("127.0.0.1", listener.port)
        codes = [ack_code(c.exchange(m)) for m in (
            oru("M1"),
            oru("M1"),  # a resend: the gateway did not get our ACK
            oru("M2", hr="900", time="202603011205"),  # no offset: the hospital zone
            oru("M3", extra=[obx(99, SPO2, "85", PCT, status="X")], obr_groups=2),
            b"MSH|^~\\&|ADT|HOSP|VIGIL|HOSP|20260301120000||ADT^A01^ADT_A01|ADT1|P|2.5\r"
            b"PID|||4711-0815^^^HOSP^MR||Mustermann^Erika||19560312|F\r",
        )]
        c.close()
        assert codes == ["AA", "AA", "AE", "AA", "AR"]
        metrics = urllib.request.urlopen(listener.metrics_url, timeout=5).read().decode()

    vitals = consume(s, s.topic_vitals, 4)
    recs = [VITALS_DECODER.decode(v) for v in vitals]
    # M1, M1 again, M2 (without HR), M3 (two OBR groups of the same time: one record)
    assert len(recs) == 4
    ids = [record_id_of(r) for r in recs]
    assert len(set(ids)) == 3  # the resend carries the same record id: the worker drops it
    m2 = next(r for r in recs if r.event_id.startswith("M2:"))
    assert "HR" not in {o.code for o in m2.observations}
    assert m2.event_time.isoformat() == "2026-03-01T12:05:00+01:00"
    m3 = [r for r in recs if r.event_id.startswith("M3:")]
    assert sorted(o.value for r in m3 for o in r.observations if o.code == "HR") == [82, 84]
    assert all(o.value != 85.0 for r in m3 for o in r.observations if o.code == "SpO2")

    dlq = [DLQ_DECODER.decode(v) for v in consume(s, s.topic_dlq, 3)]
    reasons = sorted(d.dlq_id for d in dlq)
    assert reasons == ["hl7:ADT1", "hl7:M2:observations", "hl7:M3:observations"]
    assert {d.reason for d in dlq} == {"implausible", "unsupported_message", "result_status"}
    for raw in vitals + consume(s, s.topic_dlq, 3):
        for secret in SECRETS:
            assert secret.encode() not in raw
    for secret in SECRETS:
        assert secret not in caplog.text
        assert secret not in metrics
    assert 'vigil_gateway_messages_total{gateway="hl7",outcome="AA"} 3.0' in metrics
    assert 'vigil_gateway_observations_refused_total{gateway="hl7",reason="implausible"} 1.0' \
        in metrics


def test_sample_stays_through_hl7(broker_settings: VigilSettings) -> None:
    from vigil.sample import sample_path

    ensure_topics(broker_settings)
    stays = load_stays(sample_path(), 2)
    with Hl7Listener(broker_settings) as listener:
        stats = send_stays(broker_settings, stays, host="127.0.0.1", port=listener.port)
    assert stats.vitals > 0 and set(stats.acks) <= {"AA", "AE"}
    recs = [VITALS_DECODER.decode(v) for v in consume(broker_settings,
                                                       broker_settings.topic_vitals,
                                                       stats.vitals)]
    assert len(recs) == stats.vitals
    assert all(r.source == "hl7:ICU" for r in recs)


def test_broker_down_answers_ar_and_recovers(tmp_path: Path) -> None:
    port = free_port()
    s = VigilSettings(embedded_broker_port=port, gateway_ack_timeout_s=1.0, partitions=1,
                      topic_vitals="down.vitals", topic_dlq="down.dlq", pseudonym_key="k",
                      data_dir=str(tmp_path))
    with Hl7Listener(s) as listener:
        c = MllpClient("127.0.0.1", listener.port, timeout_s=30)
        ack = c.exchange(oru("B1"))
        assert ack_code(ack) == "AR" and b"207^" in ack and b"resend" in ack
        with EmbeddedBroker(port, log_path=tmp_path / "tansu.log"):
            ensure_topics(s)
            deadline = time.monotonic() + 30
            code = "AR"
            while code != "AA" and time.monotonic() < deadline:
                code = ack_code(c.exchange(oru("B1")))  # the gateway resends the same message
            assert code == "AA"
            recs = [VITALS_DECODER.decode(v) for v in consume(s, s.topic_vitals, 1)]
            assert len({record_id_of(r) for r in recs}) == 1
        c.close()
