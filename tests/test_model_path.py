"""The shipped sepsis model in the stream: same features, same model, same score.

Replays real patients through a worker that scores sepsis with the shipped artifact (the
hybrid quantum model stacked with its online model), then computes the evaluation's
features (``build_feature_table``, no Kafka) and the evaluation's risks for the same
patients: every hour the stream scored must have the evaluation's risk for that hour. A
second test lets labels flow and checks that the online model learns, is written to the
changelog, and is resumed by a restarted worker.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from vigil.kinds.sepsis import shipped_model
from vigil.models.artifact import ModelArtifact
from vigil.models.deployed import StackedScorer
from vigil.models.hybrid_scorer import HybridScorer
from vigil.runtime import OutputCollector, WorkerProcess
from vigil.stream.offline import build_feature_table
from vigil.stream.processor import build_processor
from vigil.stream.replay.replayer import replay_timeline
from vigil.stream.replay.sources import load_stays
from vigil.stream.replay.timeline import Timeline
from vigil.stream.topics import ensure_topics
from vigil.wire.durations import HOUR_MS
from vigil.wire.records import LabelRecord, encode

from .streamed import (
    assert_stream_equals_evaluation,
    streamed_risks,
    vitals_through_a_worker,
    warm_stack_risks,
)
from .waiting import wait_until


def test_shipped_artifact_loads_and_matches_the_feature_schema() -> None:
    from vigil.settings import VigilSettings

    proc = build_processor(VigilSettings())
    scorer = proc.scorers["sepsis"]  # the deployed stack: the hybrid and its online model
    assert isinstance(scorer, StackedScorer) and isinstance(scorer.fixed, HybridScorer)
    assert scorer.learns_from == "sepsis" and scorer in proc.learners
    assert set(scorer.members) == {"gbm"}  # LightGBM stacked beside the circuit
    art = ModelArtifact.load(shipped_model())
    assert art.target == "sepsis" and art.feature_names == proc.features.names
    assert art.training_patients and "Challenge 2019" in art.training["data"]
    assert 0 < art.levels[0][0] <= art.levels[-1][0] < 1


@pytest.mark.broker
def test_stream_scores_equal_evaluation_scores(broker_settings, sample_2019, tmp_path) -> None:
    s = broker_settings.model_copy(update={"sepsis_scorer": "model"})
    stays = load_stays(sample_2019, 5)
    with vitals_through_a_worker(s, stays, tmp_path) as (timeline, stats, _):
        scores = streamed_risks(s, timeline, "sepsis")
    assert len(scores) == stats.vitals

    table = build_feature_table(stays, s, workers=1, progress=False)
    rows = np.flatnonzero(table.has_record)
    # no labels flowed, so every partition's online model is still the warm start
    assert_stream_equals_evaluation(scores, timeline, table, rows,
                                    warm_stack_risks(shipped_model(), table, rows))


@pytest.mark.broker
def test_online_model_learns_from_labels_and_survives_a_restart(broker_settings, sample_2019,
                                                                 tmp_path) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from prometheus_client.parser import text_string_to_metric_families

    from vigil.models.online import OnlineModel
    from vigil.stream.topics import changelog_topic

    from .test_e2e import metric, wait_finished

    s = broker_settings.model_copy(update={"sepsis_scorer": "model", "partitions": 1})
    ensure_topics(s)
    stays = load_stays(sample_2019, 4)
    timeline = Timeline(stays, s.pseudonym_key.get_secret_value(), now_ms=int(time.time() * 1000))

    def saved_model() -> OnlineModel | None:
        c = KafkaConsumer(changelog_topic(s), bootstrap_servers=s.bootstrap_servers,
                          auto_offset_reset="earliest", consumer_timeout_ms=2000)
        found = [m.value for m in c if m.key == b"#online/0"]  # the sepsis model of partition 0
        c.close()
        return OnlineModel.loads(found[-1]) if found else None

    def saved_once(labels_seen: float, timeout_s: float = 30) -> OnlineModel:
        """The changelog's model once it holds ``labels_seen`` labels (it is written before
        the labels are acked, so it follows the metric within a batch)."""
        seen: list[OnlineModel | None] = [None]

        def holds() -> OnlineModel | None:
            model = seen[0] = saved_model()  # reads the changelog for up to 2 s
            return model if model is not None and model.labels_seen == labels_seen else None

        return wait_until(holds, timeout_s, lambda: (
            f"the changelog's online model holds {seen[0] and seen[0].labels_seen} labels, "
            f"not {labels_seen}"), interval_s=0)

    def handled(text: str) -> float:  # labels with any outcome
        return sum(sample.value for family in text_string_to_metric_families(text)
                   for sample in family.samples if sample.name == "vigil_online_labels_total")

    collector = OutputCollector(s).start()
    try:
        w1 = WorkerProcess(s, web_port=s.web_port, log_path=tmp_path / "w1.log").start()
        w1.wait_ready(timeout_s=120)
        stats = replay_timeline(s, timeline, progress=False)  # vitals and labels
        assert collector.wait_for(stats.vitals, 120)
        # every label has its outcome and is committed: nothing is learned after `learned`
        # is read
        text = wait_finished(w1, collector, (s.topic_labels,),
                             done=lambda t: handled(t) >= stats.labels,
                             what=f"an outcome for each of the {stats.labels} labels")
        assert handled(text) == stats.labels, [ln for ln in text.splitlines()
                                               if "labels_total{" in ln]  # each label once
        learned = metric(text, "vigil_online_labels_total", outcome="learned")
        assert learned >= 5
        first = saved_once(learned)
        assert w1.stop() == 0

        w2 = WorkerProcess(s, web_port=s.web_port, log_path=tmp_path / "w2.log").start()
        w2.wait_ready(timeout_s=120)
        last = timeline.stays[0]
        key = timeline.patient_key(last)
        label = LabelRecord(patient=key, kind="sepsis", event_time=_dt(timeline.admit_ms(0)
                            + int(last.end_hours * HOUR_MS)), label=1,
                            known_time=_dt(int(time.time() * 1000)))
        p = KafkaProducer(bootstrap_servers=s.bootstrap_servers)
        p.send(s.topic_labels, key=key.encode(), value=encode(label))
        p.flush()
        p.close()
        text = wait_finished(w2, collector, (s.topic_labels,), done=lambda t: handled(t) >= 1,
                             what="an outcome for the label", timeout_s=30)
        assert handled(text) == 1 and metric(
            text, "vigil_online_labels_total", outcome="learned") == 1, [
                ln for ln in text.splitlines() if "labels_total{" in ln]
        # resumed, not restarted from the warm start: one more label than before the restart
        saved_once(first.labels_seen + 1)
        w2.stop()
    finally:
        collector.stop()


def _dt(ms: int):  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC)
