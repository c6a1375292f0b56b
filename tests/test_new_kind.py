"""Adding an alert kind takes one module: here one that lives in test code only.

A worker on the real broker, told ``VIGIL_KINDS=[sepsis, deterioration, tests.kinds.toy_arrest]``
(and nothing else), scores the toy kind on every record, raises its alert with its own
headline and drivers, and counts it in ``/metrics``: no Vigil module was edited for it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from vigil.kinds import registered
from vigil.runtime import OutputCollector, WorkerProcess
from vigil.stream.topics import ensure_topics

from .test_e2e import metric, produce, vitals_consumed, wait_finished

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("vigil.kinds.sepsis", "vigil.kinds.deterioration", "tests.kinds.toy_arrest")


def test_the_registry_lists_a_kind_from_test_code() -> None:
    kinds = registered(KINDS)
    assert [k.name for k in kinds] == ["sepsis", "deterioration", "arrest"]
    with pytest.raises(ValueError, match="share a name"):
        registered(KINDS + ("tests.kinds.toy_arrest",))


def test_a_kind_defined_in_test_code_is_scored_alerted_explained_and_counted(
        broker_settings, tmp_path) -> None:
    s = broker_settings.model_copy(update={"kinds": KINDS})
    ensure_topics(s)
    now = datetime.now(UTC)

    def record(patient: str, minutes_ago: int, hr: float) -> tuple[str, bytes]:
        t = (now - timedelta(minutes=minutes_ago)).isoformat()
        return patient, json.dumps({
            "patient": patient, "event_time": t, "unit": "CCU", "bed": "CCU-01",
            "observations": [{"code": "HR", "value": hr}, {"code": "RR", "value": 16}]}).encode()

    collector = OutputCollector(s).start()
    worker = WorkerProcess(s, web_port=s.web_port, log_path=tmp_path / "worker.log",
                           extra_env={"PYTHONPATH": str(ROOT)}).start()
    try:
        worker.wait_ready(timeout_s=120)
        produce(s, [record("pt-calm", 20, 72), record("pt-calm", 10, 75),
                    record("pt-tachy", 20, 90), record("pt-tachy", 10, 150)])
        assert collector.wait_for(4, 60), "not every record was scored"
        # every alert of the 4 records is published before they are counted and committed:
        # once the collector has read all that, the alerts below are all there will be
        text = wait_finished(worker, collector, (s.topic_vitals,),
                             done=lambda t: vitals_consumed(t) >= 4,
                             what="4 vitals records consumed and committed", timeout_s=30)
        arrest = [a for a in collector.alerts.values() if a.kind == "arrest"]
        assert [(a.patient, a.state, a.severity) for a in arrest] == [("pt-tachy", "raised",
                                                                       "high")]
        alert = arrest[0]
        assert alert.summary.startswith("toy arrest risk 90%"), alert.summary
        assert [d.feature for d in alert.reasons] == ["HR"]
        assert alert.reasons[0].text.startswith("HR 150 ↑"), alert.reasons[0].text
        assert alert.scorer == "toy-hr" and alert.threshold == 0.8
        assert metric(text, "vigil_alerts_total", kind="arrest", severity="high",
                      state="raised") == 1
        assert metric(text, "vigil_risk_count", kind="arrest") == 4
        # series of a kind start at 0 (rules can tell "none" from "renamed")
        assert 'vigil_alert_escalations_total{cause="unacknowledged",kind="arrest"}' in text
    finally:
        worker.stop()
        collector.stop()
