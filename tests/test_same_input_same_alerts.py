"""Same input, same alerts: two runs of byte-identical input through a worker with the
deployed models (online learning on), one in large micro-batches and one in batches of 5,
publish the same risks for every record and the same alert events.

Before labels were learned in event time (vigil.stream.label_queue), the online models
learned whenever the labels agent happened to read a label, and two such runs differed in
thousands of risks and tens of alert events (issue 13).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from vigil.runtime import OutputCollector, WorkerProcess
from vigil.settings import VigilSettings
from vigil.stream.replay.replayer import replay_timeline
from vigil.stream.replay.sources import load_stays
from vigil.stream.replay.timeline import Timeline
from vigil.stream.topics import ensure_topics

from .streamed import fresh_settings
from .test_e2e import metric, wait_finished


def _run(s: VigilSettings, stays: list, now_ms: int, log: Path) -> dict:
    """Every published risk by record id, every alert event, and the worker's label counts."""
    from kafka import KafkaConsumer

    from vigil.wire.records import SCORE_DECODER

    ensure_topics(s)
    timeline = Timeline(stays, s.pseudonym_key.get_secret_value(), now_ms=now_ms)
    collector = OutputCollector(s).start()
    try:
        w = WorkerProcess(s, web_port=s.web_port, log_path=log).start()
        try:
            w.wait_ready(timeout_s=120)
            stats = replay_timeline(s, timeline, progress=False)
            assert stats.labels > 0
            text = wait_finished(w, collector, [s.topic_vitals],
                                 done=lambda t: collector.processed >= stats.vitals,
                                 what="all vitals scored", timeout_s=180)
        finally:
            w.stop()
        alerts = {eid: (a.state, a.severity, round(a.risk, 12))
                  for eid, a in collector.alerts.items()}
    finally:
        collector.stop()
    c = KafkaConsumer(s.topic_scores, bootstrap_servers=s.bootstrap_servers,
                      auto_offset_reset="earliest", consumer_timeout_ms=3000)
    risks = {}
    for m in c:
        sc = SCORE_DECODER.decode(m.value)
        risks[sc.record_id] = {k: round(v, 12) for k, v in sc.risks.items()}
    c.close()
    return {"risks": risks, "alerts": alerts, "vitals": stats.vitals,
            "learned_in_stream": metric(text, "vigil_labels_applied_total", by="stream"),
            "timed_out": metric(text, "vigil_label_waits_total", outcome="timed_out")}


@pytest.mark.broker
def test_the_same_input_gives_the_same_risks_and_alerts_whatever_the_batches(
        broker_settings, sample_2019, sample_2012, tmp_path) -> None:
    stays = load_stays(sample_2019, 12) + load_stays(sample_2012, 6)
    now_ms = int(time.time() * 1000)
    big = _run(fresh_settings(broker_settings), stays, now_ms, tmp_path / "big.log")
    small = _run(fresh_settings(broker_settings, batch_max_records=5, batch_within_s=0.001), stays,
                 now_ms, tmp_path / "small.log")
    for run in (big, small):
        assert len(run["risks"]) > 0.9 * run["vitals"] and run["timed_out"] == 0
        assert run["learned_in_stream"] > 100  # the online models learned as they went
    assert big["learned_in_stream"] == small["learned_in_stream"]
    differing = [r for r in big["risks"] if big["risks"][r] != small["risks"].get(r)]
    assert not differing, f"{len(differing)} of {len(big['risks'])} records scored differently"
    assert big["alerts"] and big["alerts"] == small["alerts"]
