"""The operations metrics of vigil.metrics: bounded labels, lag, unit census, worker info."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import generate_latest

from vigil.metrics import MAX_UNITS, Metrics
from vigil.wire.records import ScoreRecord
from vigil.wire.state import AlertTrack, PatientState


def _text(m: Metrics) -> str:
    return generate_latest(m.registry).decode()


def _score(unit: str | None, ts: float) -> tuple[str, ScoreRecord]:
    return ("pt-x", ScoreRecord(score_id="s", patient="pt-x", event_time=datetime.now(UTC),
                                record_id="r", risks={}, scorers={}, clinical={}, unit=unit,
                                ingested_at=datetime.fromtimestamp(ts, UTC)))


def test_known_label_combinations_are_exported_at_zero() -> None:
    text = _text(Metrics())
    assert 'vigil_alert_escalations_total{cause="unacknowledged",kind="sepsis"} 0.0' in text
    assert 'vigil_rejections_total{reason="internal_error"} 0.0' in text
    assert 'vigil_alerts_total{kind="deterioration",severity="high",state="acknowledged"} 0.0' in text
    assert "vigil_jax_compilations_total" in text and "process_start_time_seconds" in text


def test_unit_labels_are_bounded() -> None:
    m = Metrics()
    assert m.unit_label(None) == "unknown" and m.unit_label("  ") == "unknown"
    names = [m.unit_label(f"ward-{i}") for i in range(MAX_UNITS + 10)]
    assert names[:MAX_UNITS] == [f"ward-{i}" for i in range(MAX_UNITS)]
    assert set(names[MAX_UNITS:]) == {"other"}
    assert m.unit_label("ward-3") == "ward-3"  # a known unit keeps its label


def test_units_feed_activity_and_census() -> None:
    m = Metrics()
    micu = PatientState(unit="MICU", alerts={"sepsis": AlertTrack(active=True, severity="high"),
                                             "deterioration": AlertTrack()})
    sicu = PatientState(unit="SICU")
    m.observe_units([_score("MICU", 1000.0), _score("MICU", 1500.0), _score("SICU", 900.0)],
                    {"pt-a": (0, micu), "pt-b": (1, sicu)}, now_s=2000.0)
    m.observe_units([], {"pt-c": (2, PatientState(unit="MICU"))}, now_s=2000.0)
    m.publish_census([0, 1, 2], now_s=2100.0)
    text = _text(m)
    assert 'vigil_unit_vitals_records_total{unit="MICU"} 2.0' in text
    assert 'vigil_unit_last_vitals_timestamp_seconds{unit="MICU"} 1500.0' in text
    assert 'vigil_unit_patients{unit="MICU"} 2.0' in text
    assert 'vigil_unit_patients_at_risk{kind="sepsis",severity="high",unit="MICU"} 1.0' in text
    assert "pt-" not in "\n".join(ln for ln in text.splitlines() if not ln.startswith("#"))
    # partition 1 moved to another worker, and nobody of partition 2 was seen for 3 h
    m.publish_census([0], now_s=2000.0 + 1000)
    text = _text(m)
    assert 'vigil_unit_patients{unit="SICU"}' not in text
    m.publish_census([0, 1, 2], now_s=2000.0 + 3 * 3600)
    assert "vigil_unit_patients{" not in _text(m)


def test_consumer_lag_is_highwater_minus_committed_for_the_current_assignment() -> None:
    from faust.types import TP

    m = Metrics()
    a, b, c = TP("vigil.vitals", 0), TP("vigil.vitals", 1), TP("vigil.labels", 0)
    high = {a: 120, b: 50, c: None}
    m.observe_consumer([a, b, c], high.get, {a: 100}.get)
    text = _text(m)
    assert 'vigil_consumer_lag_records{partition="0",topic="vigil.vitals"} 20.0' in text
    assert 'vigil_consumer_lag_records{partition="1",topic="vigil.vitals"} 50.0' in text
    assert 'topic="vigil.labels"' not in text  # no fetch yet: unknown, not zero
    m.observe_consumer([b], high.get, {}.get)  # a rebalance took partition 0 away
    assert 'partition="0"' not in _text(m)


def test_worker_info_is_extended_not_replaced() -> None:
    m = Metrics()
    m.info.info({"version": "1.2.3", "broker": "kafka"})
    m.add_worker_info(model_artifact="sepsis-hybrid@2026-11-01-abc", score_batch_size="64")
    line = next(ln for ln in _text(m).splitlines() if ln.startswith("vigil_worker_info{"))
    for part in ('version="1.2.3"', 'broker="kafka"', 'model_artifact="sepsis-hybrid@2026-11-01-abc"'):
        assert part in line
