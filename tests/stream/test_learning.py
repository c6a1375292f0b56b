"""Online learning in the stream: per-partition models, their cache, and label outcomes."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from vigil.models.deployed import DeployedSepsis, Stack
from vigil.models.online import OnlineModel
from vigil.models.preprocess import Normaliser
from vigil.stream.learning import OnlineSepsis
from vigil.stream.records import LabelRecord
from vigil.stream.state import PatientState
from vigil.stream.windows import admit

from .helpers import HOUR, T0, acc


def online(features) -> OnlineSepsis:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, len(features.names)))
    norm = Normaliser.fit(X, features.names)
    warm = OnlineModel.warm_start(norm.transform(X), rng.random(200) < 0.1)
    return OnlineSepsis(DeployedSepsis(Stack(1.0, 0.5, 0.0), ((0.5, "medium"),), warm, {}), norm)


def test_partitions_have_their_own_models_and_the_cache_follows_the_table(features) -> None:
    o = online(features)
    x = np.zeros(len(features.names))
    before = o.model(0, None).predict(o.normaliser.transform(x[None, :]))[0]
    for _ in range(20):
        o.learn(0, None, list(x), 1)
    after0 = o.model(0, None).predict(o.normaliser.transform(x[None, :]))[0]
    after1 = o.model(1, None).predict(o.normaliser.transform(x[None, :]))[0]
    assert after0 > before and after1 == before  # partition 1 untouched
    saved = o.take_dirty()
    assert set(saved) == {0} and not o.dirty
    assert o.model(0, saved[0]) is o.model(0, saved[0])  # same bytes: the cached object
    assert OnlineModel.loads(saved[0]).labels_seen == 20
    other = OnlineModel.loads(saved[0]).dumps()  # e.g. recovered after a rebalance
    assert o.model(0, other) is not o.model(0, saved[0])


def test_stacked_risk_is_monotone_in_both_models(features) -> None:
    o = online(features)
    X = np.zeros((3, len(features.names)))
    risk, p_online = o.combine(np.array([0.1, 0.2, 0.4]), X, np.array([0, 0, 1]), {})
    assert np.all(np.diff(risk) > 0) and np.allclose(p_online, p_online[0])


def test_label_outcomes(features, windows) -> None:
    from vigil.models.clinical import News2Scorer, QsofaScorer
    from vigil.stream.processor import Processor

    p = Processor(windows, [QsofaScorer(features.names), News2Scorer(features.names)],
                  online=online(features))
    state = PatientState()
    for h in range(10):
        admit(state, acc(T0 + h * HOUR, event_id=str(h), HR=90 + h), windows)

    def label(h: int, kind: str = "sepsis") -> LabelRecord:
        t = datetime.fromtimestamp((T0 + h * HOUR) / 1000, tz=UTC)
        return LabelRecord(patient="pt-1", kind=kind, event_time=t, label=1, known_time=t)

    assert p.learn(label(8), state, 0, None) == "learned"
    assert p.learn(label(8, "death"), state, 0, None) == "other_kind"
    assert p.learn(label(8), None, 0, None) == "unknown_patient"
    assert p.learn(label(-30), state, 0, None) == "too_old"
    assert p.learn(label(11), state, 0, None) == "ahead_of_vitals"
    assert p.online.take_dirty().keys() == {0}
