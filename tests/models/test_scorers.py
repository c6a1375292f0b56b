"""Every scorer Vigil ships passes the one check suite (vigil.models.checks), as River runs
``check_estimator`` over every estimator."""

from __future__ import annotations

import numpy as np
import pytest

from vigil.kinds.deterioration import shipped_model as deterioration_model
from vigil.kinds.sepsis import shipped_model
from vigil.models.checks import yield_checks
from vigil.models.clinical import News2Scorer, QsofaScorer
from vigil.models.deployed import StackedScorer
from vigil.models.hybrid_scorer import HybridScorer
from vigil.settings import VigilSettings
from vigil.stream.offline import run_offline
from vigil.stream.processor import build_processor
from vigil.stream.replay.sources import load_stays
from vigil.stream.replay.timeline import Timeline

from ..kinds.toy_arrest import HeartRateScorer


def _scorers(names):  # type: ignore[no-untyped-def]
    stacked = StackedScorer.load(shipped_model(), names)
    classical = HybridScorer.load(shipped_model() / "comparators" / "hybrid-classical", names)
    deterioration = StackedScorer.load(deterioration_model(), names)
    return {"news2": News2Scorer(names), "qsofa": QsofaScorer(names),
            "hybrid-quantum": stacked.fixed, "hybrid-classical": classical,
            "online-river": stacked.online, "deployed-stack": stacked,
            "deterioration-hybrid": deterioration.fixed,
            "deterioration-gbm": deterioration.members["gbm"],
            "deterioration-stack": deterioration,
            "toy-kind (test code)": HeartRateScorer(names)}


SCORERS = ("news2", "qsofa", "hybrid-quantum", "hybrid-classical", "online-river",
           "deployed-stack", "deterioration-hybrid", "deterioration-gbm",
           "deterioration-stack", "toy-kind (test code)")


@pytest.fixture(scope="module")
def rows(features, sample_2019):  # type: ignore[no-untyped-def]
    """Real feature rows of shipped patients, with their gaps (NaN), as the stream makes."""
    stays = load_stays(sample_2019, 3)
    tl = Timeline(stays, "k", now_ms=1_780_000_000_000)
    records = [(r.key, r.value) for r in tl if r.topic == "vitals"][:60]
    proc = build_processor(VigilSettings(sepsis_scorer="qsofa"))
    feats = []
    original = proc._score

    def keep(rows_, res, now_ms, get_blob=None):  # type: ignore[no-untyped-def]
        feats.extend(r.features for r in rows_)
        return original(rows_, res, now_ms, get_blob)

    proc._score = keep  # type: ignore[method-assign]
    run_offline(proc, records, now_ms=1_780_000_000_000)
    return np.asarray(feats[::6][:8], float)


@pytest.fixture(scope="module")
def scorers(features):  # type: ignore[no-untyped-def]
    return _scorers(features.names)


@pytest.mark.parametrize("name", SCORERS)
@pytest.mark.parametrize("check", [c.__name__ for c in yield_checks(None)])  # type: ignore[arg-type]
def test_scorer_passes_the_check_suite(name, check, scorers, rows) -> None:
    scorer = scorers[name]
    fn = next(c for c in yield_checks(scorer) if c.__name__ == check)
    fn(scorer, rows)


def test_a_broken_scorer_fails_the_suite(features, rows) -> None:
    """The suite can fail: attributions that do not add up are caught."""
    from vigil.models.checks import check_attributions_add_up

    class Wrong(News2Scorer):
        def attribute(self, X):  # type: ignore[no-untyped-def]
            return super().attribute(X) * 2

    with pytest.raises(AssertionError, match="do not sum"):
        check_attributions_add_up(Wrong(features.names), rows)


def test_a_gradient_scorer_with_wrong_attributions_fails_at_every_distance(scorers,
                                                                           rows) -> None:
    from vigil.models.checks import check_attributions_add_up

    hybrid = scorers["deterioration-hybrid"]

    class Doubled:
        name, attribution = "doubled", "gradient"

        def score_batch(self, X, context=None):  # type: ignore[no-untyped-def]
            return hybrid.score_batch(X, context)

        def attribute(self, X):  # type: ignore[no-untyped-def]
            return 2 * hybrid.attribute(X)

        def reference_row(self):  # type: ignore[no-untyped-def]
            return hybrid.reference_row()

    with pytest.raises(AssertionError, match="even next to the reference row"):
        check_attributions_add_up(Doubled(), rows)  # type: ignore[arg-type]


def test_tree_explanations_skip_the_padding_rows(scorers, rows) -> None:
    """TreeSHAP costs milliseconds a row: the processor's NaN padding must cost nothing and
    change nothing."""
    gbm = scorers["deterioration-gbm"]
    padded = np.vstack([rows, np.full((56, rows.shape[1]), np.nan)])
    c = gbm.attribute(padded)
    np.testing.assert_allclose(c[:len(rows)], gbm.attribute(rows))
    assert not c[len(rows):].any() and c[:len(rows)].any()
