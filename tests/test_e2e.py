"""End to end on the real broker: replay real patients plus bad events through a worker.

The worker runs as ``vigil worker`` in a subprocess against the session's tansu broker. What
it must produce is computed by running the same timeline through the processor offline:
the Kafka path (partitions, faust batches, the changelogged table) must neither lose,
duplicate nor change anything.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from vigil.runtime import OutputCollector, WorkerProcess
from vigil.stream.offline import run_offline
from vigil.stream.processor import build_processor
from vigil.stream.replay.replayer import replay_timeline
from vigil.stream.replay.sources import load_stays
from vigil.stream.replay.timeline import Timeline
from vigil.stream.topics import ensure_topics

from .waiting import wait_until

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
    """The sample ``name{labels}`` of an exposition (labels in any order), 0 if absent."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def vitals_consumed(text: str) -> float:
    """Vitals records the worker is done with: each has one of these outcomes (``partial``
    is also ``accepted``), counted after the batch's outputs were acknowledged by the
    broker and its state stored."""
    return sum(metric(text, "vigil_vitals_records_total", outcome=o)
               for o in ("accepted", "rejected", "redelivered"))


def consumer_lags(text: str) -> dict[tuple[str, str], float]:
    """(topic, partition) -> ``vigil_consumer_lag_records``: records of the worker's input
    partitions not committed yet (highwater of its latest fetch minus committed offset)."""
    return {(sample.labels["topic"], sample.labels["partition"]): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples
            if sample.name == "vigil_consumer_lag_records"}


def wait_finished(worker, collector, topics, *, done=lambda text: True,  # type: ignore[no-untyped-def]
                  what: str = "", timeout_s: float = 60.0) -> str:
    """Wait until the worker is demonstrably done, then until ``collector`` has read every
    output published so far; returns the worker's metrics of that moment.

    Done: ``done(metrics text)`` holds (a count that proves the records of interest were
    fetched and handled) and the worker has committed every record of its input ``topics``
    (consumer lag 0 on each of their partitions). Records are committed only after their
    outputs are acknowledged by the broker, so nothing the worker will publish for them is
    missing once the collector has caught up: what is not there by then never comes.
    """
    n = worker.settings.partitions
    last = [""]

    def finished() -> str | None:
        text = last[0] = worker.metrics_text()
        lags = consumer_lags(text)
        mine = [v for (t, _), v in lags.items() if t in topics]
        return text if done(text) and len(mine) == n * len(topics) and not any(mine) else None

    text = wait_until(finished, timeout_s, lambda: (
        f"worker not finished{': ' + what if what else ''}; " + "; ".join(
            ln for ln in last[0].splitlines() if ln.startswith(
                ("vigil_consumer_lag", "vigil_vitals_records_total", "vigil_alert_acks_total",
                 "vigil_alert_sweeps_total")))), interval_s=0.2)
    assert collector.wait_caught_up(), "the output collector did not catch up"
    return text


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
        # anything beyond `produced` would be a bug: read every output the worker published
        # once it has consumed and committed all of it
        text = wait_finished(worker, collector, (s.topic_vitals,),
                             done=lambda t: vitals_consumed(t) >= produced,
                             what=f"{produced} vitals records consumed and committed")
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
            assert "below the clear level" in a.summary and a.transition_reason
        else:
            assert a.reasons, a  # a raised or escalated alert always says why

    # counted and readable in the worker's metrics
    assert vitals_consumed(text) == produced  # none twice
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

    from vigil.wire.records import DLQ_DECODER

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


def test_an_acknowledgement_on_the_acks_topic_reaches_the_alert(broker_settings, worker) -> None:
    """A nurse acks through Kafka: the worker records it, stops the escalation, says so on
    the alerts topic, and counts the time to acknowledge."""
    s = broker_settings
    now = datetime.now(UTC)
    sick = [{"code": c, "value": v} for c, v in
            dict(HR=125, RR=30, SBP=85, SpO2=89, Temp=39.4).items()]

    def vitals(minutes_ago: int) -> tuple[str, bytes]:
        t = (now - timedelta(minutes=minutes_ago)).isoformat()
        return "pt-ack-1", json.dumps({"patient": "pt-ack-1", "event_time": t, "bed": "B-07",
                                       "event_id": f"ack-{minutes_ago}",
                                       "observations": sick}).encode()

    collector = OutputCollector(s).start()
    try:
        produce(s, [vitals(40)])
        raised = wait_until(lambda: next((a for a in list(collector.alerts.values())
                                          if a.kind == "deterioration" and a.state == "raised"),
                                         None),
                            60, "no deterioration alert for sustained abnormal vitals")
        ack = {"alert_id": raised.alert_id, "patient": "pt-ack-1", "kind": "deterioration",
               "acked_at": (now - timedelta(minutes=30)).isoformat(), "by": "RN 4"}
        p = KafkaProducer(bootstrap_servers=s.bootstrap_servers, acks="all")
        p.send(s.topic_acks, key=b"pt-ack-1", value=json.dumps(ack).encode())
        p.send(s.topic_acks, key=b"pt-ack-1", value=json.dumps(ack).encode())  # a double click
        p.flush()
        p.close()
        acked = wait_until(lambda: next((a for a in list(collector.alerts.values())
                                         if a.state == "acknowledged"), None),
                           60, "the acknowledgement did not reach the alerts topic")
        assert acked.alert_id == raised.alert_id
        assert acked.acknowledged_by == "RN 4" and acked.bed == "B-07"
        produce(s, [vitals(0)])  # 40 min later: sepsis (unacked) escalates, deterioration not
        wait_until(lambda: any(a.state == "escalated" for a in list(collector.alerts.values())),
                   60, "no escalation 40 minutes after the unacknowledged sepsis alert")
        # whether deterioration escalates too is settled once the worker has handled both
        # vitals records and both acks (the double click) and committed them
        text = wait_finished(
            worker, collector, (s.topic_vitals, s.topic_acks),
            done=lambda t: vitals_consumed(t) >= 2 and sum(
                metric(t, "vigil_alert_acks_total", kind="deterioration", outcome=o)
                for o in ("acknowledged", "already_acknowledged")) >= 2,
            what="2 vitals records and 2 acks handled and committed")
    finally:
        collector.stop()
    escalated = [a for a in collector.alerts.values() if a.state == "escalated"]
    assert [a.kind for a in escalated] == ["sepsis"]
    assert "unacknowledged" in (escalated[0].transition_reason or "")
    assert metric(text, "vigil_alert_acks_total", kind="deterioration",
                  outcome="acknowledged") == 1
    assert metric(text, "vigil_alert_acks_total", kind="deterioration",
                  outcome="already_acknowledged") == 1
    assert metric(text, "vigil_alert_time_to_ack_seconds_count", kind="deterioration") == 1
    assert metric(text, "vigil_alert_escalations_total", kind="sepsis",
                  cause="unacknowledged") == 1


def test_a_quiet_live_feed_still_escalates_an_unacknowledged_alert(broker_settings,
                                                                   tmp_path) -> None:
    """No further vitals after the alert (a monitor unplugged): the worker's sweep escalates
    the unacknowledged kind by the wall clock, once, and leaves the acknowledged one."""
    s = broker_settings.model_copy(update={"alert_escalate_after_s": 10, "alert_sweep_s": 1.0})
    ensure_topics(s)
    w = WorkerProcess(s, web_port=s.web_port, log_path=tmp_path / "worker.log").start()
    collector = OutputCollector(s).start()
    try:
        w.wait_ready()
        sick = [{"code": c, "value": v} for c, v in
                dict(HR=125, RR=30, SBP=85, SpO2=89, Temp=39.4).items()]
        now = datetime.now(UTC)
        produce(s, [("pt-quiet-1", json.dumps({
            "patient": "pt-quiet-1", "event_time": now.isoformat(), "event_id": "quiet-0",
            "bed": "B-12", "observations": sick}).encode())])
        def raised_alerts() -> dict[str, object]:
            return {a.kind: a for a in list(collector.alerts.values()) if a.state == "raised"}

        raised = wait_until(lambda: r if len(r := raised_alerts()) >= 2 else None, 60,
                            lambda: f"raised: {sorted(raised_alerts())}")
        assert set(raised) == {"sepsis", "deterioration"}
        det = raised["deterioration"]
        p = KafkaProducer(bootstrap_servers=s.bootstrap_servers, acks="all")
        p.send(s.topic_acks, key=b"pt-quiet-1", value=json.dumps({
            "alert_id": det.alert_id, "patient": "pt-quiet-1", "kind": "deterioration",
            "acked_at": datetime.now(UTC).isoformat(), "by": "RN 2"}).encode())
        p.flush()
        p.close()
        wait_until(lambda: any(a.state == "escalated" for a in list(collector.alerts.values())),
                   40, "the sweep did not escalate the unacknowledged alert")
        # further sweeps must not escalate again: wait until two more have run to the end
        # (the one that escalated may not have been counted yet) and the ack is handled
        swept = metric(w.metrics_text(), "vigil_alert_sweeps_total")
        text = wait_finished(
            w, collector, (s.topic_vitals, s.topic_acks),
            done=lambda t: (metric(t, "vigil_alert_sweeps_total") >= swept + 3 and metric(
                t, "vigil_alert_acks_total", kind="deterioration", outcome="acknowledged") == 1),
            what=f"3 sweeps after sweep {swept:.0f}, the ack handled", timeout_s=30)
    finally:
        collector.stop()
        w.stop()
    escalated = [a for a in collector.alerts.values() if a.state == "escalated"]
    assert [a.kind for a in escalated] == ["sepsis"], escalated
    e = escalated[0]
    assert e.alert_id == raised["sepsis"].alert_id and e.bed == "B-12"
    assert e.transition_reason.startswith("unacknowledged for 10 s")
    assert (e.event_time - raised["sepsis"].event_time).total_seconds() == 10
    assert metric(text, "vigil_alert_escalations_total", kind="sepsis",
                  cause="unacknowledged") == 1


def test_idle_patients_leave_the_table_with_a_tombstone(broker_settings, tmp_path) -> None:
    """Discharged patients must not stay in memory for ever: after VIGIL_PATIENT_TTL_S with
    no records and no active alert, the state is removed and its changelog gets a tombstone."""
    from kafka import KafkaConsumer

    from vigil.stream.topics import changelog_topic

    s = broker_settings.model_copy(update={"patient_ttl_s": 2, "alert_sweep_s": 0.5})
    ensure_topics(s)
    w = WorkerProcess(s, web_port=s.web_port, log_path=tmp_path / "worker.log").start()
    try:
        w.wait_ready()
        calm = [{"code": "HR", "value": 72}, {"code": "SpO2", "value": 98}]
        produce(s, [("pt-idle-1", json.dumps({
            "patient": "pt-idle-1", "event_time": datetime.now(UTC).isoformat(),
            "event_id": "idle-0", "observations": calm}).encode())])
        wait_until(lambda: metric(w.metrics_text(), "vigil_patients_expired_total") >= 1, 30,
                   "the idle patient's state was not removed", interval_s=0.3)
        assert metric(w.metrics_text(), "vigil_patients_expired_total") == 1
        assert metric(w.metrics_text(), "vigil_vitals_records_total", outcome="accepted") == 1
    finally:
        w.stop()
    c = KafkaConsumer(changelog_topic(s), bootstrap_servers=s.bootstrap_servers,
                      auto_offset_reset="earliest", consumer_timeout_ms=5_000)
    values = [m.value for m in c if m.key == b"pt-idle-1"]
    c.close()
    assert len(values) == 2 and values[0] and values[-1] is None  # the state, then a tombstone
