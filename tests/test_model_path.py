"""The shipped hybrid quantum model in the stream: same features, same model, same score.

Replays real patients through a worker that scores sepsis with the shipped artifact, then
computes the evaluation's features (``build_feature_table``, no Kafka) and the evaluation's
risks (``HybridScorer.risk_batch``) for the same patients: every hour the stream scored
must have the evaluation's risk for that hour.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from vigil.models.artifact import ModelArtifact
from vigil.models.hybrid_scorer import HybridScorer
from vigil.runtime import OutputCollector, WorkerProcess
from vigil.stream.app import build_processor, shipped_model
from vigil.stream.offline import build_feature_table
from vigil.stream.replay.replayer import replay_timeline
from vigil.stream.replay.sources import load_stays
from vigil.stream.replay.timeline import Timeline
from vigil.stream.topics import ensure_topics

HOUR_MS = 3_600_000


def test_shipped_artifact_loads_and_matches_the_feature_schema() -> None:
    from vigil.settings import VigilSettings

    proc = build_processor(VigilSettings())
    scorer = proc.scorers["sepsis"]
    assert isinstance(scorer, HybridScorer)
    art = ModelArtifact.load(shipped_model())
    assert art.target == "sepsis" and art.feature_names == proc.features.names
    assert art.training_patients and "Challenge 2019" in art.training["data"]
    assert 0 < art.levels[0][0] <= art.levels[-1][0] < 1


@pytest.mark.broker
def test_stream_scores_equal_evaluation_scores(broker_settings, sample_2019, tmp_path) -> None:
    s = broker_settings.model_copy(update={"sepsis_scorer": "model"})
    ensure_topics(s)
    stays = load_stays(sample_2019, 5)
    timeline = Timeline(stays, s.pseudonym_key.get_secret_value(), now_ms=int(time.time() * 1000))
    collector = OutputCollector(s).start()
    scores = {}
    try:
        w = WorkerProcess(s, web_port=s.web_port, log_path=tmp_path / "w.log").start()
        w.wait_ready(timeout_s=120)
        stats = replay_timeline(s, timeline, progress=False, include_labels=False)
        assert collector.wait_for(stats.vitals, 120)
        w.stop()
    finally:
        collector.stop()
    # the scores topic, read back: (patient, hours since admission) -> risk
    from kafka import KafkaConsumer

    from vigil.stream.records import SCORE_DECODER

    c = KafkaConsumer(s.topic_scores, bootstrap_servers=s.bootstrap_servers,
                      auto_offset_reset="earliest", consumer_timeout_ms=5000)
    admit = {timeline.patient_key(st): timeline.admit_ms(i) for i, st in enumerate(stays)}
    for msg in c:
        sc = SCORE_DECODER.decode(msg.value)
        h = round((sc.event_time.timestamp() * 1000 - admit[sc.patient]) / HOUR_MS, 3)
        scores[(sc.patient, h)] = sc.risks["sepsis"]
    c.close()
    assert len(scores) == stats.vitals

    table = build_feature_table(stays, s, workers=1, progress=False)
    scorer = HybridScorer(ModelArtifact.load(shipped_model()), table.names)
    rows = np.flatnonzero(table.has_record)
    risk = scorer.risk_batch(table.X[rows])
    compared = 0
    for r, value in zip(rows, risk):
        key = (timeline.patient_key(stays[table.patient[r]]), round(float(table.hours[r]), 3))
        assert key in scores, key
        assert scores[key] == pytest.approx(value, abs=1e-6), key
        compared += 1
    assert compared == len(scores)  # every streamed score has its evaluation twin
