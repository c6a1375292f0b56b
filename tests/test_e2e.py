"""End to end on the real broker: replay real patients plus bad events through a worker.

The worker runs as ``vigil worker`` in a subprocess against the session's tansu broker. What
it must produce is computed by running the same timeline through the processor offline:
the Kafka path (partitions, faust batches, the changelogged table) must neither lose,
duplicate nor change anything.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaProducer

from vigil.runtime import OutputCollector, WorkerProcess
from vigil.stream.app import build_processor
from vigil.stream.offline import run_offline
from vigil.stream.replay.replayer import replay_timeline
from vigil.stream.replay.sources import load_stays
from vigil.stream.replay.timeline import Timeline
from vigil.stream.topics import ensure_topics

pytestmark = pytest.mark.broker

SEPTIC_WITH_ALERTS = ("p000028", "p000034", "p000141")
CALM_CONTROL = "p000005"
OTHERS = ("p000011", "p000001")


def fixture_stays(sample_2019, sample_2012):
    wanted = {*SEPTIC_WITH_ALERTS, CALM_CONTROL, *OTHERS}
    stays = [s for s in load_stays(sample_2019) if s.source_id in wanted]
    return stays + load_stays(sample_2012, 2)


def expected(settings, timeline):
    records = [(r.key, r.value) for r in timeline if r.topic == "vitals"]
    res, _ = run_offline(build_processor(settings), records, now_ms=int(time.time() * 1000))
    return res


def alert_view(a):
    return (a.event_id, a.alert_id, a.patient, a.kind, a.severity, a.state, round(a.risk, 9),
            a.summary, a.event_time)


def bad_events(timeline) -> list[tuple[str, bytes, str]]:
    """(key, payload, expected reason) - each a mistake real integrations make."""
    now = datetime.now(UTC)
    vitals = [r for r in timeline if r.topic == "vitals"]
    some = vitals[-1]  # a patient's newest record: resending it is a duplicate, not late
    first = next(r for r in vitals if r.key == some.key)
    late = json.loads(first.value)
    late["event_id"] = "resent-much-later"
    ok = lambda p, **kw: json.dumps({"patient": p, "event_time": now.isoformat(),  # noqa: E731
                                     "observations": [{"code": "HR", "value": 80}], **kw}).encode()
    return [
        ("pt-bad-1", b"{not json", "malformed_json"),
        ("pt-bad-1", b"\xff\xfe\x00 binary junk", "malformed_json"),
        ("pt-bad-2", b'{"patient": "pt-bad-2", "observations": [{"code": "HR", "value": 80}]}',
         "schema"),
        ("pt-bad-2", ok("pt-bad-2").replace(b"+00:00", b""), "schema"),
        ("pt-bad-3", ok("pt-bad-3", observations=[{"code": "Mood", "value": 1}]), "unknown_code"),
        ("pt-bad-3", ok("pt-bad-3", observations=[{"code": "Temp", "value": 37, "unit": "Rø"}]),
         "unknown_unit"),
        ("pt-bad-4", ok("pt-bad-4", observations=[{"code": "HR", "value": 900},
                                                   {"code": "SpO2", "value": 97}]), "partial"),
        ("pt-bad-5", ok("pt-bad-5", event_time=(now + timedelta(days=1)).isoformat()), "future"),
        (some.key, some.value, "duplicate"),
        (first.key, json.dumps(late).encode(), "late"),
        ("pt-bad-6", ok("pt-bad-7"), "key_mismatch"),
    ]


def produce(settings, items: list[tuple[str, bytes]]) -> None:
    p = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    for key, value in items:
        p.send(settings.topic_vitals, key=key.encode(), value=value)
    p.flush()
    p.close()


def metric(text: str, name: str, **labels: str) -> float:
    sel = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pat = re.escape(name) + (r"\{" + re.escape(sel) + r"\}" if sel else "") + r" ([0-9.e+]+)"
    m = re.search(pat, text)
    return float(m.group(1)) if m else 0.0


@pytest.fixture
def worker(broker_settings, tmp_path):
    ensure_topics(broker_settings)
    w = WorkerProcess(broker_settings, web_port=broker_settings.web_port,
                      log_path=tmp_path / "worker.log").start()
    w.wait_ready()
    yield w
    w.stop()


def test_replay_with_bad_events_is_fully_accounted_for(broker_settings, worker, sample_2019,
                                                       sample_2012) -> None:
    s = broker_settings
    stays = fixture_stays(sample_2019, sample_2012)
    timeline = Timeline(stays, s.pseudonym_key.get_secret_value(), now_ms=int(time.time() * 1000))
    want = expected(s, timeline)
    collector = OutputCollector(s).start()
    try:
        stats = replay_timeline(s, timeline, progress=False)
        bad = bad_events(timeline)
        produce(s, [(k, v) for k, v, _ in bad])
        produced = stats.vitals + len(bad)
        assert collector.wait_for(produced, timeout_s=120), (
            f"processed {collector.processed} of {produced}")
        time.sleep(1.0)  # anything beyond `produced` would be a bug: give it time to show
    finally:
        collector.stop()

    # every produced record has exactly one outcome
    n_rejected = sum(1 for *_, r in bad if r != "partial")
    assert collector.processed == produced
    assert len(collector.dlq_record_ids) == n_rejected
    assert len(collector.score_ids) == stats.vitals + 1  # + the partially accepted record
    assert len(collector.dlq_observation_ids) == 1
    assert collector.duplicates == 0

    # the stream's alerts are exactly those of the offline run of the same data
    got = sorted(alert_view(a) for a in collector.alerts.values())
    assert got == sorted(alert_view(a) for _, a in want.alerts)
    assert {sid for _, sc in want.scores for sid in [sc.score_id]} <= collector.score_ids

    # clinical expectations on the fixture
    raised = Counter((a.patient, a.kind) for a in collector.alerts.values() if a.state == "raised")
    by_id = {st.source_id: timeline.patient_key(st) for st in stays}
    for sid in SEPTIC_WITH_ALERTS:
        assert raised[(by_id[sid], "sepsis")] >= 1, f"no sepsis alert for septic {sid}"
    assert not any(p == by_id[CALM_CONTROL] for p, _ in raised), "calm control alerted"
    for a in collector.alerts.values():
        assert a.summary and a.bed and a.patient.startswith("pt-")
        if a.state == "resolved":
            assert "below the alert level" in a.summary
        else:
            assert a.reasons, a  # a raised or escalated alert always says why

    # counted and readable in the worker's metrics
    text = worker.metrics_text()
    assert metric(text, "vigil_vitals_records_total", outcome="rejected") == n_rejected
    assert metric(text, "vigil_vitals_records_total", outcome="accepted") == stats.vitals + 1
    for reason in ("malformed_json", "schema", "future", "duplicate", "late", "key_mismatch"):
        want_n = sum(1 for *_, r in bad if r == reason)
        assert metric(text, "vigil_rejections_total", reason=reason) == want_n, (
            reason, [ln for ln in text.splitlines() if "rejections_total" in ln])
    assert metric(text, "vigil_rejections_total", reason="implausible") == 1
    assert "pt-" not in "\n".join(line for line in text.splitlines() if not line.startswith("#"))


def test_dead_letters_keep_the_original_payload(broker_settings, worker) -> None:
    s = broker_settings
    from kafka import KafkaConsumer

    from vigil.stream.records import DLQ_DECODER

    payloads = [b'{"patient": "pt-x", "oops": true}', b"\x00\x01\x02"]
    produce(s, [("pt-x", p) for p in payloads])
    c = KafkaConsumer(s.topic_dlq, bootstrap_servers=s.bootstrap_servers,
                      auto_offset_reset="earliest", consumer_timeout_ms=20_000)
    got = []
    for msg in c:
        got.append(DLQ_DECODER.decode(msg.value))
        if len(got) == 2:
            break
    c.close()
    import base64
    originals = sorted(d.payload.encode() if d.payload_encoding == "utf-8"
                       else base64.b64decode(d.payload) for d in got)
    assert originals == sorted(payloads)
    assert {d.reason for d in got} == {"schema", "malformed_json"}
    assert all(d.topic == s.topic_vitals and d.rejections for d in got)
