"""An integration engine that writes Kafka itself (Mirth, Rhapsody, Cloverleaf, custom code).

It is not Vigil's code: ``confluent-kafka`` (librdkafka, the client most engines embed or
resemble) produces Vigil's JSON vitals to the embedded broker, keyed by a pseudonym it
computes itself with HMAC-SHA256 (docs/gateways.md, "Integration engines"); a ``vigil
worker`` scores them; a librdkafka group consumer with the settings the docs give reads the
scores, alerts and dead letters back.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from vigil.runtime import WorkerProcess
from vigil.settings import VigilSettings
from vigil.stream.pseudonym import pseudonymize
from vigil.stream.topics import ensure_topics
from vigil.wire.records import ALERT_DECODER, DLQ_DECODER, SCORE_DECODER

ck = pytest.importorskip("confluent_kafka")

pytestmark = pytest.mark.broker

MRN = "OUTSIDE-4711"
# a sick patient: qSOFA 2 (RR >= 22, SBP <= 100) and NEWS2 >= 7, so both alert kinds rise
SICK = {"HR": 125, "RR": 30, "SBP": 85, "SpO2": 89, "Temp": 39.4}


def engine_pseudonym(mrn: str, key: str, namespace: str = "mrn") -> str:
    """What an engine computes without Vigil's code (the recipe in docs/gateways.md)."""
    mac = hmac.new(key.encode("utf-8"), f"{namespace}:{mrn}".encode(), hashlib.sha256)
    return "pt-" + mac.hexdigest()[:16]


def vitals(patient: str, minutes_ago: int, now: datetime) -> bytes:
    return json.dumps({
        "patient": patient,
        "event_time": (now - timedelta(minutes=minutes_ago)).isoformat(),
        "event_id": f"engine-{minutes_ago}",
        "unit": "MICU", "bed": "12-B", "source": "mirth:icu-monitors",
        "observations": [{"code": c, "value": v, **({"unit": "Cel"} if c == "Temp" else {})}
                         for c, v in SICK.items()],
    }).encode()


def test_librdkafka_client_produces_vitals_and_consumes_scores_and_alerts(
        broker_settings: VigilSettings, tmp_path: Path) -> None:
    s = broker_settings
    key = s.pseudonym_key.get_secret_value()
    patient = engine_pseudonym(MRN, key, s.gateway_patient_namespace)
    # the engine's recipe is Vigil's: an HL7 PID-3 or FHIR identifier of the same MRN joins
    # the same patient
    assert patient == pseudonymize(MRN, key, s.gateway_patient_namespace)
    ensure_topics(s)
    worker = WorkerProcess(s, web_port=s.web_port, log_path=tmp_path / "worker.log").start()
    consumer: Any = None
    try:
        worker.wait_ready()
        now = datetime.now(UTC)
        producer = ck.Producer({"bootstrap.servers": s.bootstrap_servers, "acks": "all",
                                "client.id": "outside-engine", "linger.ms": 5,
                                "log.connection.close": False})
        reports: list[Any] = []
        for minutes_ago in (20, 10, 0):
            producer.produce(s.topic_vitals, key=patient.encode(),
                             value=vitals(patient, minutes_ago, now),
                             on_delivery=lambda err, _msg: reports.append(err))
        # keyed by someone else: the worker refuses it (key_mismatch), it does not score it
        producer.produce(s.topic_vitals, key=b"pt-0000000000000000",
                         value=vitals(patient, 5, now), on_delivery=lambda e, _m: reports.append(e))
        assert producer.flush(30) == 0
        assert reports == [None] * 4  # every record acknowledged by the broker (acks=all)

        consumer = ck.Consumer({
            "bootstrap.servers": s.bootstrap_servers,
            "group.id": f"{s.app_id}-outside-reader",
            "session.timeout.ms": 6000,  # tansu holds a join for half of it (default 45 s)
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "log.connection.close": False,
        })
        consumer.subscribe([s.topic_scores, s.topic_alerts, s.topic_dlq])
        scores: dict[str, Any] = {}
        alerts: dict[str, Any] = {}
        dead: list[Any] = []
        keys: set[bytes] = set()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (
                len(scores) >= 3 and dead and {"sepsis", "deterioration"} <= {
                    a.kind for a in alerts.values() if a.state == "raised"}):
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            if msg.topic() == s.topic_scores:
                sc = SCORE_DECODER.decode(msg.value())
                scores[sc.score_id] = sc
                keys.add(msg.key())
            elif msg.topic() == s.topic_alerts:
                a = ALERT_DECODER.decode(msg.value())
                alerts[a.event_id] = a
                keys.add(msg.key())
            else:
                dead.append(DLQ_DECODER.decode(msg.value()))
    finally:
        if consumer is not None:
            consumer.close()
        worker.stop()

    assert len(scores) == 3 and all(sc.patient == patient for sc in scores.values())
    assert all(sc.bed == "12-B" and sc.unit == "MICU" for sc in scores.values())
    raised = {a.kind: a for a in alerts.values() if a.state == "raised"}
    assert {"sepsis", "deterioration"} <= set(raised)
    assert all(a.patient == patient and a.reasons for a in raised.values())
    assert keys == {patient.encode()}  # outputs are keyed by the patient, as the inputs
    assert [d.reason for d in dead] == ["key_mismatch"]
