"""One check suite for every scorer, in the spirit of River's ``check_estimator``.

Whatever model is behind a :class:`~vigil.models.base.Scorer`, the stream relies on the same
promises, so each scorer is held to them by the same checks (``tests/models/test_scorers.py``
runs :func:`yield_checks` over every scorer Vigil ships):

* **fixed shape**: a batch of B rows gives B risks in [0, 1] (or NaN), details of B rows and
  a (B, features) attribution;
* **padding**: NaN-padded rows (the processor's fixed batch shape) change no real row;
* **determinism**: the same rows give the same risks and attributions, call after call;
* **attributions add up**: an ``additive`` scorer's contributions sum to its risk; a
  ``gradient`` scorer's sum, to first order, to the change of the risk they explain
  (``explained_risk``, default the risk) from its ``reference_row()``;
* **round trip**: a scorer saved and loaded (``save`` / ``load``; a parameter-free scorer
  is rebuilt from its feature names) scores exactly as before.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from vigil.models.base import Scorer, score_padded

__all__ = ["check_attributions_add_up", "check_deterministic", "check_fixed_shape",
           "check_padding", "check_round_trip", "yield_checks"]


def check_fixed_shape(scorer: Scorer, X: np.ndarray) -> None:
    a = scorer.score_batch(X)
    n = len(X)
    assert a.risk.shape == (n,), f"{scorer.name}: risk shape {a.risk.shape}"
    finite = a.risk[~np.isnan(a.risk)]
    assert np.all((finite >= 0) & (finite <= 1)), f"{scorer.name}: risk outside [0, 1]"
    for key, v in a.details.items():
        assert len(v) == n, f"{scorer.name}: detail {key} has {len(v)} rows for {n}"
    c = scorer.attribute(X)
    assert c.shape == X.shape, f"{scorer.name}: attribution shape {c.shape}"
    assert np.all(np.isfinite(c)), f"{scorer.name}: non-finite attribution"


def check_padding(scorer: Scorer, X: np.ndarray) -> None:
    whole = scorer.score_batch(X).risk
    padded = score_padded(scorer, X[:3], batch_size=len(X)).risk
    np.testing.assert_allclose(padded, whole[:3], rtol=1e-6, atol=1e-9,
                               err_msg=f"{scorer.name}: padding changed real rows")


def check_deterministic(scorer: Scorer, X: np.ndarray) -> None:
    a, b = scorer.score_batch(X).risk, scorer.score_batch(X).risk
    np.testing.assert_array_equal(a, b, err_msg=f"{scorer.name}: risks differ between calls")
    np.testing.assert_array_equal(scorer.attribute(X), scorer.attribute(X),
                                  err_msg=f"{scorer.name}: attributions differ between calls")


def check_attributions_add_up(scorer: Scorer, X: np.ndarray) -> None:
    kind = getattr(scorer, "attribution", None)
    assert kind in ("additive", "gradient"), f"{scorer.name}: says nothing of its attributions"
    explained: Callable[[np.ndarray], np.ndarray] = getattr(
        scorer, "explained_risk", lambda rows: scorer.score_batch(rows).risk)
    if kind == "additive":
        risk = np.nan_to_num(explained(X))
        np.testing.assert_allclose(scorer.attribute(X).sum(axis=1), risk, atol=1e-9,
                                   err_msg=f"{scorer.name}: contributions do not sum to risk")
        return
    ref = scorer.reference_row()  # type: ignore[attr-defined]
    full = np.where(np.isnan(X), ref, X)  # no missingness: the indicators stay at zero
    errors = []
    # first order holds close to the reference; how close depends on the model's curvature
    # and on inputs clipped after standardising (a nearly constant training feature makes
    # even a small step in its units a large one), so the check tries ever closer rows: a
    # wrong attribution (say, twice the gradient) misses at every distance
    for eps in (1e-3, 1e-4, 1e-5):
        near = ref + eps * (full - ref)
        rows = np.vstack([near, ref[None, :]])
        risk = explained(rows)
        delta = risk[:-1] - risk[-1]
        total = scorer.attribute(rows)[:-1].sum(axis=1)
        scale = np.abs(delta).max()
        assert scale > 0, f"{scorer.name}: the risk does not move near its reference row"
        errors.append(np.abs(total - delta).max() / scale)
        if errors[-1] < 0.1:
            return
    raise AssertionError(f"{scorer.name}: attributions miss the risk change by "
                         f"{min(errors):.0%} even next to the reference row")


def check_round_trip(scorer: Scorer, X: np.ndarray) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        save = getattr(scorer, "save", None)
        if save is not None:
            save(Path(tmp))
            again = type(scorer).load(Path(tmp), scorer.feature_names)  # type: ignore[attr-defined]
        else:  # parameter-free: its feature names are all it is
            again = type(scorer)(scorer.feature_names)  # type: ignore[call-arg]
    np.testing.assert_array_equal(again.score_batch(X).risk, scorer.score_batch(X).risk,
                                  err_msg=f"{scorer.name}: a saved copy scores differently")
    assert again.name == scorer.name and tuple(again.levels) == tuple(scorer.levels)


CHECKS = (check_fixed_shape, check_padding, check_deterministic, check_attributions_add_up,
          check_round_trip)


def yield_checks(scorer: Scorer) -> Iterator[Callable[[Scorer, np.ndarray], None]]:
    """Every check a scorer must pass (River's ``yield_checks`` idiom)."""
    yield from CHECKS
