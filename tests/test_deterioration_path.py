"""The shipped deterioration model in the stream: same features, same models, same score.

Real PhysioNet 2012 stays (irregular charting, invasive and non-invasive duplicates) go
through a worker with the default kinds; every deterioration risk on the scores topic must
equal the evaluation's risk for that record (the hybrid circuit, LightGBM and the online
model's warm start, stacked). Then the stays' outcome labels flow and the deterioration
online model learns them into its own table entry, apart from the sepsis one.
"""

from __future__ import annotations

import numpy as np
import pytest

from vigil.kinds.deterioration import shipped_model
from vigil.models.artifact import ModelArtifact
from vigil.models.deployed import DeployedStack, StackedScorer
from vigil.models.gbm import GbmScorer
from vigil.models.hybrid_scorer import HybridScorer
from vigil.models.online import OnlineModel
from vigil.settings import VigilSettings
from vigil.stream.offline import build_feature_table
from vigil.stream.processor import build_processor
from vigil.stream.replay.sources import load_stays
from vigil.stream.topics import changelog_topic

from .streamed import (
    assert_stream_equals_evaluation,
    streamed_risks,
    vitals_through_a_worker,
    warm_stack_risks,
)
from .waiting import wait_until


def test_the_deterioration_kind_deploys_the_trained_stack_and_falls_back_to_news2(tmp_path):
    proc = build_processor(VigilSettings())
    scorer = proc.scorers["deterioration"]
    assert isinstance(scorer, StackedScorer) and isinstance(scorer.fixed, HybridScorer)
    assert isinstance(scorer.members["gbm"], GbmScorer)
    assert scorer.learns_from == "death" and scorer in proc.learners
    assert scorer.online.state_key(0) != proc.scorers["sepsis"].online.state_key(0)
    art = ModelArtifact.load(shipped_model())
    assert art.target == "deterioration" and "proxy" in art.training["label"]
    assert art.feature_names == proc.features.names
    # the published rule on request, and when no artifact is there
    assert build_processor(VigilSettings(deterioration_scorer="news2")) \
        .scorers["deterioration"].name == "news2"
    with pytest.raises(FileNotFoundError):
        build_processor(VigilSettings(deterioration_model_path=str(tmp_path)))


@pytest.mark.broker
def test_stream_deterioration_scores_equal_evaluation_scores_and_outcomes_are_learned(
        broker_settings, sample_2012, tmp_path) -> None:
    from kafka import KafkaConsumer

    s = broker_settings.model_copy(update={"partitions": 1, "deterioration_scorer": "model"})
    stays = load_stays(sample_2012, 12)
    with vitals_through_a_worker(s, stays, tmp_path) as (timeline, stats, _):
        scores = streamed_risks(s, timeline, "deterioration")
        assert len(scores) == stats.vitals

        table = build_feature_table(stays, s, workers=1, progress=False)
        artifact = ModelArtifact.load(shipped_model())
        deployed = DeployedStack.load(shipped_model())
        rows = np.flatnonzero(table.has_record)
        # no labels flowed yet: the online model is still its warm start
        assert_stream_equals_evaluation(scores, timeline, table, rows,
                                        warm_stack_risks(shipped_model(), table, rows))

        # the stays' outcomes (one death label per stay, at its last record) now arrive
        from kafka import KafkaProducer

        labels = [r for r in timeline if r.topic == "labels"]
        assert len(labels) == 12
        producer = KafkaProducer(bootstrap_servers=s.bootstrap_servers)
        for r in labels:
            producer.send(s.topic_labels, key=r.key.encode(), value=r.value)
        producer.flush()
        producer.close()

        def learned() -> OnlineModel | None:
            c = KafkaConsumer(changelog_topic(s), bootstrap_servers=s.bootstrap_servers,
                              auto_offset_reset="earliest", consumer_timeout_ms=2000)
            found = [m.value for m in c if m.key == b"#online/deterioration/0"]
            c.close()
            return OnlineModel.loads(found[-1]) if found else None

        model = wait_until(lambda: (m := learned()) is not None and m.labels_seen == 12 and m,
                           timeout_s=60, what="the deterioration model's 12 outcomes stored")
    # what it learned is what the evaluation's replay learns: each stay's last record, in
    # the order the outcomes arrived
    Z = artifact.normaliser.transform(table.X)
    last = {table.patient[k]: k for k in range(len(table.patient))}  # the stay's last row
    index = {timeline.patient_key(st): i for i, st in enumerate(stays)}
    ref = OnlineModel.loads(deployed.online.dumps())
    for r in labels:
        k = last[index[r.key]]
        ref.learn(Z[k], int(table.label[k]))
    probe = Z[rows[:20]]
    np.testing.assert_allclose(model.predict(probe), ref.predict(probe), atol=1e-9)
    assert not np.allclose(ref.predict(probe), deployed.online.predict(probe))  # it moved
