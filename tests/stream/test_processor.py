"""The agent's body without Kafka: accounting, redelivery, dead letters, determinism."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from vigil.models.clinical import News2Scorer, QsofaScorer
from vigil.settings import VigilSettings
from vigil.stream.offline import run_offline
from vigil.stream.processor import InRecord, Processor, build_processor
from vigil.stream.replay.sources import load_stays
from vigil.stream.replay.timeline import Timeline
from vigil.wire.records import DLQ_DECODER, encode

from .helpers import HOUR, T0

NOW = T0 + 48 * HOUR


def vitals(patient: str, hour: int, **obs: float) -> bytes:
    t = datetime.fromtimestamp((T0 + hour * HOUR) / 1000, tz=UTC).isoformat()
    return json.dumps({"patient": patient, "event_time": t, "event_id": f"{patient}-{hour}",
                       "observations": [{"code": c, "value": v} for c, v in obs.items()]}).encode()


def rec(offset: int, value: bytes, key: str | None = "pt-1", partition: int = 0) -> InRecord:
    return InRecord("vigil.vitals", partition, offset, key.encode() if key else None, value, NOW)


@pytest.fixture
def proc(features, windows) -> Processor:
    return Processor(windows, [QsofaScorer(features.names), News2Scorer(features.names)],
                     score_batch_size=8)


SICK = dict(HR=125, RR=30, SBP=85, SpO2=89, Temp=39.4)


def test_every_record_gets_exactly_one_outcome(proc: Processor) -> None:
    batch = [rec(0, vitals("pt-1", 0, HR=80)),
             rec(1, b"garbage"),
             rec(2, vitals("pt-1", 1, HR=900, SpO2=97)),
             rec(3, vitals("pt-1", 2, Mood=1)),
             rec(4, vitals("pt-2", 2, HR=80), key="pt-1")]
    res = proc.process(batch, {}.get, NOW)
    assert res.outcomes == {"accepted": 2, "partial": 1, "rejected": 3}
    assert len(res.scores) == 2  # accepted (incl. partial) records are scored
    scopes = sorted((d.scope, d.reason) for _, d in res.dead)
    assert scopes == [("observations", "implausible"), ("record", "key_mismatch"),
                      ("record", "malformed_json"), ("record", "unknown_code")]
    assert sum(1 for _, d in res.dead if d.scope == "record") == res.outcomes["rejected"]


def test_dead_letters_carry_the_original_payload_and_a_stable_id(proc: Processor) -> None:
    raw = b"\xff\x00not utf-8"
    (_, d), = proc.process([rec(7, raw)], {}.get, NOW).dead
    assert d.dlq_id == "vigil.vitals:0:7" and d.payload_encoding == "base64"
    import base64
    assert base64.b64decode(d.payload) == raw
    assert DLQ_DECODER.decode(encode(d)) == d


def test_redelivered_records_are_skipped_not_reprocessed(proc: Processor) -> None:
    states: dict = {}
    first = proc.process([rec(0, vitals("pt-1", 0, **SICK)), rec(1, vitals("pt-1", 1, **SICK))],
                         states.get, NOW)
    states.update({p: s for p, (_, s) in first.states.items()})
    again = proc.process([rec(1, vitals("pt-1", 1, **SICK)), rec(2, vitals("pt-1", 2, **SICK))],
                         states.get, NOW)
    assert again.outcomes == {"redelivered": 1, "accepted": 1}
    assert [s.record_id for _, s in again.scores] == [":pt-1-2"]


def test_a_resent_message_with_a_new_offset_is_a_duplicate(proc: Processor) -> None:
    states: dict = {}
    r1 = proc.process([rec(0, vitals("pt-1", 0, HR=80))], states.get, NOW)
    states.update({p: s for p, (_, s) in r1.states.items()})
    r2 = proc.process([rec(1, vitals("pt-1", 0, HR=80))], states.get, NOW)
    assert r2.outcomes == {"rejected": 1} and r2.dead[0][1].reason == "duplicate"


def test_sustained_abnormal_vitals_raise_both_alert_kinds_once(proc: Processor) -> None:
    batch = [rec(h, vitals("pt-1", h, **SICK)) for h in range(4)]
    res = proc.process(batch, {}.get, NOW)
    raised = [(a.kind, a.severity) for _, a in res.alerts if a.state == "raised"]
    assert sorted(raised) == [("deterioration", "high"), ("sepsis", "medium")]
    a = next(a for _, a in res.alerts if a.kind == "deterioration")
    assert a.summary.startswith("NEWS2 ") and "RR 30 ↑" in a.summary and a.reasons


def test_a_failing_scorer_dead_letters_the_rows_instead_of_stopping(features, windows) -> None:
    class Broken(QsofaScorer):
        def score_batch(self, X, context=None):
            raise FloatingPointError("model exploded")

    p = Processor(windows, [Broken(features.names), News2Scorer(features.names)])
    res = p.process([rec(0, vitals("pt-1", 0, HR=80))], {}.get, NOW)
    assert res.outcomes["rejected"] == 1 and res.outcomes["accepted"] == 0
    assert res.dead[0][1].reason == "internal_error" and "model exploded" in res.dead[0][1].rejections[0].detail
    assert not res.scores


def test_scorers_must_match_the_feature_schema(windows) -> None:
    with pytest.raises(ValueError, match="feature schema"):
        Processor(windows, [QsofaScorer(("HR_last",))])


def test_results_do_not_depend_on_batch_boundaries(sample_2019) -> None:
    stays = load_stays(sample_2019, 6)
    tl = Timeline(stays, "k", now_ms=NOW)
    records = [(r.key, r.value) for r in tl if r.topic == "vitals"]
    proc = build_processor(VigilSettings())
    a, sa = run_offline(proc, records, now_ms=NOW, batch_size=1)
    b, sb = run_offline(proc, records, now_ms=NOW, batch_size=97, partitions=3)
    # a batch groups records by patient, so only the order across patients may differ
    assert {s.score_id: s for _, s in a.scores} == {s.score_id: s for _, s in b.scores}
    assert {x.event_id: x for _, x in a.alerts} == {x.event_id: x for _, x in b.alerts}
    for key in sa:  # within a patient, outputs keep event order
        assert ([s.score_id for p, s in a.scores if p == key]
                == [s.score_id for p, s in b.scores if p == key])
    assert a.alerts, "the sample must exercise alerting"
    assert {k: encode(v) for k, v in sa.items()}.keys() == sb.keys()
    for k in sa:  # same windows and lifecycle, whatever the partition offsets were
        assert sa[k].series == sb[k].series and sa[k].alerts == sb[k].alerts
    assert np.isfinite([s.risks["sepsis"] for _, s in a.scores]).all()


def ack(offset: int, alert_id: str, kind: str = "deterioration", minute: int = 30,
        patient: str = "pt-1") -> InRecord:
    t = datetime.fromtimestamp((T0 + minute * 60_000) / 1000, tz=UTC).isoformat()
    body = json.dumps({"alert_id": alert_id, "patient": patient, "kind": kind,
                       "acked_at": t, "by": "RN 4"}).encode()
    return InRecord("vigil.acks", 0, offset, patient.encode(), body, NOW)


def test_an_acknowledgement_stops_escalation_and_is_announced(proc: Processor) -> None:
    states: dict = {}
    first = proc.process([rec(0, vitals("pt-1", 0, **SICK))], states.get, NOW)
    states.update({p: s for p, (_, s) in first.states.items()})
    raised = next(a for _, a in first.alerts if a.kind == "deterioration")
    assert raised.state == "raised" and raised.transition_reason and raised.trend

    res = proc.acknowledge(ack(0, raised.alert_id), states.get, NOW)
    assert res.outcome == "acknowledged" and res.seconds_to_ack == 30 * 60
    assert res.alert is not None and res.alert.state == "acknowledged"
    assert res.alert.alert_id == raised.alert_id and res.alert.acknowledged_by == "RN 4"
    assert states["pt-1"].alerts["deterioration"].acked_ms < 0  # state is copied, not mutated
    states["pt-1"] = res.state
    assert proc.acknowledge(ack(1, raised.alert_id), states.get, NOW).outcome == \
        "already_acknowledged"

    later = proc.process([rec(h, vitals("pt-1", h, **SICK)) for h in (1, 2, 3)], states.get, NOW)
    escalated = [(a.kind, a.transition_reason) for _, a in later.alerts if a.state == "escalated"]
    # sepsis was never acknowledged: it escalates once; deterioration was: it does not
    assert [k for k, _ in escalated] == ["sepsis"]
    assert "unacknowledged for 30 min" in escalated[0][1]
    assert later.escalations == {("sepsis", "unacknowledged"): 1}


def test_acks_that_cannot_apply_are_counted_and_dead_lettered(proc: Processor) -> None:
    states: dict = {}
    first = proc.process([rec(0, vitals("pt-1", 0, **SICK))], states.get, NOW)
    states.update({p: s for p, (_, s) in first.states.items()})
    unknown = proc.acknowledge(ack(0, "f" * 20), states.get, NOW)
    assert unknown.outcome == "unknown_alert" and unknown.dead.reason == "unknown_alert"
    nobody = proc.acknowledge(ack(1, "f" * 20, patient="pt-9"), states.get, NOW)
    assert nobody.outcome == "unknown_alert" and nobody.dead is not None
    bad = proc.acknowledge(InRecord("vigil.acks", 0, 2, b"pt-1", b"{not json", NOW),
                           states.get, NOW)
    assert bad.outcome == "rejected" and bad.dead.reason == "malformed_json"
    wrong = proc.acknowledge(InRecord("vigil.acks", 0, 3, b"pt-1", b'{"alert_id": 1}', NOW),
                             states.get, NOW)
    assert wrong.outcome == "rejected" and wrong.dead.reason == "schema"
    gone = proc.acknowledge(InRecord("vigil.acks", 0, 4, b"pt-1", None, NOW), states.get, NOW)
    assert gone.outcome == "rejected" and gone.dead.reason == "malformed_json"
    aid = first.alerts[0][1].alert_id
    moved = InRecord("vigil.acks", 0, 3, b"pt-2", ack(3, aid).value, NOW)
    assert proc.acknowledge(moved, states.get, NOW).dead.reason == "key_mismatch"


def test_the_sweep_escalates_a_quiet_live_feed_once_and_never_a_replay(features, windows) -> None:
    from vigil.alerts.lifecycle import Rules

    proc = Processor(windows, [QsofaScorer(features.names), News2Scorer(features.names)],
                     score_batch_size=8, rules=Rules(escalate_after_ms=30 * 60_000))
    live = InRecord("vigil.vitals", 0, 0, b"pt-1", vitals("pt-1", 0, **SICK), T0 + 5_000)
    res = proc.process([live], {}.get, T0 + 10_000)
    state = res.states["pt-1"][1]
    assert state.ingest_lag_ms == 5_000
    assert proc.sweep("pt-1", state, T0 + 29 * 60_000, 600_000) == ([], None)
    events, new = proc.sweep("pt-1", state, T0 + 45 * 60_000, 600_000)
    assert sorted(e.kind for e in events) == ["deterioration", "sepsis"]
    assert all(e.state == "escalated" and "unacknowledged" in e.transition_reason
               for e in events)
    # stamped when it fell due, so a second worker or a restart derives the same ids
    assert {e.event_time.timestamp() * 1000 for e in events} == {T0 + 30 * 60_000}
    assert not state.alerts["sepsis"].unacked_escalated  # the input state is not mutated
    assert proc.sweep("pt-1", new, T0 + 90 * 60_000, 600_000) == ([], None)  # once
    # the same record replayed a day after its event time: event-time semantics only
    old = InRecord("vigil.vitals", 0, 0, b"pt-1", vitals("pt-1", 0, **SICK), T0 + 24 * HOUR)
    replayed = proc.process([old], {}.get, T0 + 24 * HOUR).states["pt-1"][1]
    assert proc.sweep("pt-1", replayed, T0 + 25 * HOUR, 600_000) == ([], None)
