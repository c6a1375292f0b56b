"""The online River model behind the scorer interface: per-group models, their cache, learning."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from vigil.models.base import Context
from vigil.models.deployed import DeployedStack, Stack, StackedScorer
from vigil.models.online import OnlineModel, OnlineScorer
from vigil.models.preprocess import Normaliser
from vigil.stream.windows import admit
from vigil.wire.records import LabelRecord
from vigil.wire.state import PatientState

from ..stream.helpers import HOUR, T0, acc


def online(features) -> OnlineScorer:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, len(features.names)))
    norm = Normaliser.fit(X, features.names)
    warm = OnlineModel.warm_start(norm.transform(X), rng.random(200) < 0.1)
    return OnlineScorer(warm, norm, target="sepsis", learns_from="sepsis")


def test_groups_have_their_own_models_and_the_cache_follows_the_table(features) -> None:
    o = online(features)
    x = np.zeros(len(features.names))
    one = np.zeros((1, len(features.names)))

    def risk(group: int, table: dict) -> float:
        return float(o.score_batch(one, Context(np.array([group]), table.get)).risk[0])

    before = risk(0, {})
    for _ in range(20):
        o.learn(x, 1, 0)
    assert risk(0, {}) > before and risk(1, {}) == before  # group 1 untouched
    saved = o.take_state()
    assert [(g, k) for g, k, _ in saved] == [(0, b"#online/0")] and not o.dirty
    table = {k: raw for _, k, raw in saved}
    assert o.model(0, table[b"#online/0"]) is o.model(0, table[b"#online/0"])  # cached object
    assert OnlineModel.loads(table[b"#online/0"]).labels_seen == 20
    other = OnlineModel.loads(table[b"#online/0"]).dumps()  # e.g. recovered after a rebalance
    assert o.model(0, other) is not o.model(0, table[b"#online/0"])


class _Fixed:
    """A fixed model whose risk is the first column: the stack is all that is tested."""

    name, target, levels, floor_flag = "fixed", "sepsis", ((0.5, "medium"),), None

    def __init__(self, names: tuple[str, ...]) -> None:
        self.feature_names = names

    def score_batch(self, X, context=None):  # type: ignore[no-untyped-def]
        from vigil.models.base import Assessment

        return Assessment(X[:, 0].copy(), None, {})

    def attribute(self, X):  # type: ignore[no-untyped-def]
        return np.zeros_like(X)


def test_stacked_risk_is_monotone_in_the_fixed_model(features) -> None:
    o = online(features)
    deployed = DeployedStack(Stack(1.0, 0.5, 0.0), ((0.5, "medium"),), OnlineModel.loads(o._warm), {})
    stacked = StackedScorer(_Fixed(features.names), o, deployed)
    X = np.zeros((3, len(features.names)))
    X[:, 0] = [0.1, 0.2, 0.4]
    X[:, 1:] = 1.0  # the online model sees the same row three times but for column 0
    a = stacked.score_batch(X, Context(np.array([0, 0, 1])))
    assert np.all(np.diff(a.risk) > 0)
    assert np.array_equal(a.details["sepsis_hybrid_risk"], X[:, 0])
    assert stacked.learns_from == "sepsis" and stacked.name == "fixed+online"


def test_label_outcomes(features, windows) -> None:
    from vigil.models.clinical import News2Scorer, QsofaScorer
    from vigil.stream.processor import Processor

    p = Processor(windows, [online(features), News2Scorer(features.names)])
    state = PatientState()
    for h in range(10):
        admit(state, acc(T0 + h * HOUR, event_id=str(h), HR=90 + h), windows)

    def label(h: int, kind: str = "sepsis") -> LabelRecord:
        t = datetime.fromtimestamp((T0 + h * HOUR) / 1000, tz=UTC)
        return LabelRecord(patient="pt-1", kind=kind, event_time=t, label=1, known_time=t)

    assert p.learn(label(8), state, 0) == "learned"
    assert p.learn(label(8, "death"), state, 0) == "other_kind"
    assert p.learn(label(8), None, 0) == "unknown_patient"
    assert p.learn(label(-30), state, 0) == "too_old"
    assert p.learn(label(11), state, 0) == "ahead_of_vitals"
    assert [g for g, _, _ in p.take_state()] == [0]
    fixed = Processor(windows, [QsofaScorer(features.names), News2Scorer(features.names)])
    assert fixed.learn(label(8), state, 0) == "no_online_model"
