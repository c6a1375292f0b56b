"""The stream = evaluation comparison both trained kinds' tests make (test_model_path,
test_deterioration_path): the scores topic read back by hour, the evaluation's risk of the
deployed stack before any label, and the record-by-record comparison."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from vigil.models.artifact import ModelArtifact
from vigil.models.deployed import DeployedStack
from vigil.models.gbm import GbmScorer
from vigil.models.hybrid_scorer import HybridScorer
from vigil.settings import VigilSettings
from vigil.stream.offline import FeatureTable
from vigil.stream.replay.timeline import Timeline
from vigil.wire.durations import HOUR_MS


def fresh_settings(base: VigilSettings, **update: object) -> VigilSettings:
    """``base`` on topics and an app id of its own, with the deployed models of both kinds
    and no wall-clock steps (a replay's last hours are "live", event time near now, and a
    sweep escalating them by the clock would depend on when each run happened): two runs
    of the same input can then be compared output for output."""
    tag = uuid.uuid4().hex[:8]
    return base.model_copy(update={
        "app_id": f"vigil-{tag}", "topic_vitals": f"t{tag}.vitals",
        "topic_scores": f"t{tag}.scores", "topic_alerts": f"t{tag}.alerts",
        "topic_labels": f"t{tag}.labels", "topic_dlq": f"t{tag}.dlq",
        "topic_acks": f"t{tag}.acks", "sepsis_scorer": "model", "deterioration_scorer": "model",
        "alert_sweep_s": 0, **update})


@contextmanager
def vitals_through_a_worker(s: VigilSettings, stays: list, log_dir: Path
                            ) -> Iterator[tuple[Timeline, object, object]]:
    """The stays' vitals (no labels) replayed through one worker until every record is
    scored; yields (timeline, replay stats, worker), the worker still running."""
    from vigil.runtime import OutputCollector, WorkerProcess
    from vigil.stream.replay.replayer import replay_timeline
    from vigil.stream.topics import ensure_topics

    ensure_topics(s)
    timeline = Timeline(stays, s.pseudonym_key.get_secret_value(), now_ms=int(time.time() * 1000))
    collector = OutputCollector(s).start()
    try:
        w = WorkerProcess(s, web_port=s.web_port, log_path=Path(log_dir) / "w.log").start()
        try:
            w.wait_ready(timeout_s=120)
            stats = replay_timeline(s, timeline, progress=False, include_labels=False)
            assert collector.wait_for(stats.vitals, 120)
            yield timeline, stats, w
        finally:
            w.stop()
    finally:
        collector.stop()


def streamed_risks(s: VigilSettings, timeline: Timeline, kind: str) -> dict:
    """The scores topic, read back: (patient, hours since admission) -> the kind's risk."""
    from kafka import KafkaConsumer

    from vigil.wire.records import SCORE_DECODER

    c = KafkaConsumer(s.topic_scores, bootstrap_servers=s.bootstrap_servers,
                      auto_offset_reset="earliest", consumer_timeout_ms=5000)
    admit = {timeline.patient_key(st): timeline.admit_ms(i)
             for i, st in enumerate(timeline.stays)}
    out = {}
    for msg in c:
        sc = SCORE_DECODER.decode(msg.value)
        h = round((sc.event_time.timestamp() * 1000 - admit[sc.patient]) / HOUR_MS, 3)
        out[(sc.patient, h)] = sc.risks[kind]
    c.close()
    return out


def warm_stack_risks(directory: Path, table: FeatureTable, rows: np.ndarray) -> np.ndarray:
    """The evaluation's risk of the deployed stack in ``directory`` before any label: the
    hybrid, the stack's other members and the online model's warm start."""
    artifact = ModelArtifact.load(directory)
    deployed = DeployedStack.load(directory)
    X = table.X[rows]
    members = {n: GbmScorer.load_file(Path(directory) / f, table.names, artifact.target)
               .score_batch(X).risk for n, f in deployed.member_files.items()}
    return deployed.stack(HybridScorer(artifact, table.names).risk_batch(X),
                          deployed.online.predict(artifact.normaliser.transform(X)), members)


def assert_stream_equals_evaluation(scores: dict, timeline: Timeline, table: FeatureTable,
                                    rows: np.ndarray, risk: np.ndarray) -> None:
    """Every streamed score has its evaluation twin, equal to 1e-6, and nothing else."""
    compared = 0
    for r, value in zip(rows, risk):
        key = (timeline.patient_key(timeline.stays[table.patient[r]]),
               round(float(table.hours[r]), 3))
        assert key in scores, key
        assert scores[key] == pytest.approx(value, abs=1e-6), key
        compared += 1
    assert compared == len(scores)
