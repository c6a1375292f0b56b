"""The scorer interface every model implements: fixed-shape batches in, risks out.

Uniform verbs (as River has ``predict_proba_one`` for every learner): the stream, training
and evaluation all call :meth:`Scorer.score_batch` on rows from the one feature function and
never know which model is behind it. Batches have a fixed shape so that a jitted model (the
JAX circuit) compiles once; :func:`score_padded` cuts and pads for them.

Models that keep learning from delayed outcome labels (the online River model, and stacks
that contain one) are :class:`Learner` s as well: their state lives in the stream's
changelogged table, one entry per group of rows (a vitals partition), so the caller passes a
:class:`Context` that says which group each row belongs to and how to read stored state.
The processor treats every scorer the same way; none is a special case.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Assessment", "Context", "Learner", "Scorer", "Target", "is_learner",
           "padded_chunks", "score_chunks", "score_padded"]

#: the alert kind a scorer predicts (a name from the kinds registry, e.g. "sepsis")
Target = str


@dataclass(frozen=True)
class Context:
    """What a scorer may need beyond the feature rows.

    ``groups[i]`` is the group of row i (the vitals partition in the stream, one group in
    evaluation): a learner keeps one state per group. ``read`` returns a stored state entry
    (the patients table in the stream). ``details`` are per-row numbers computed once per
    batch for everyone (the clinical scores), which clinical scorers reuse.
    """

    groups: np.ndarray | None = None
    read: Callable[[bytes], bytes | None] | None = None
    details: Mapping[str, np.ndarray] | None = None
    #: rows after the first ``real`` are padding (the fixed batch shape): a scorer whose
    #: cost is per row (the online model) may skip them; their risks are never used
    real: int | None = None

    def rows(self, sl: slice) -> Context:
        return Context(None if self.groups is None else self.groups[sl], self.read,
                       None if self.details is None else {k: v[sl] for k, v in
                                                          self.details.items()})


@dataclass(frozen=True)
class Assessment:
    """Risks for a batch, with what drove each of them.

    ``contributions[i, j]`` is feature j's share of row i's risk (risk units; signed), or
    None when the scorer computes them only on request (:meth:`Scorer.attribute`: the
    model's gradients cost more than its risks, and only alerting rows need them);
    ``details`` holds named per-row numbers such as a clinical score's components.
    """

    risk: np.ndarray
    contributions: np.ndarray | None
    details: dict[str, np.ndarray] = field(default_factory=dict)

    def rows(self, sl: slice) -> Assessment:
        return Assessment(self.risk[sl],
                          None if self.contributions is None else self.contributions[sl],
                          {k: v[sl] for k, v in self.details.items()})


@runtime_checkable
class Scorer(Protocol):
    name: str
    target: Target
    feature_names: tuple[str, ...]
    #: default alert levels: ascending (risk threshold, severity) pairs
    levels: tuple[tuple[float, str], ...]
    #: a boolean detail that forces at least the lowest severity (e.g. NEWS2 red parameter)
    floor_flag: str | None

    def score_batch(self, X: np.ndarray, context: Context | None = None) -> Assessment: ...

    def attribute(self, X: np.ndarray) -> np.ndarray:
        """Per-feature contributions (rows, features) for the rows an alert must explain."""
        ...


@runtime_checkable
class Learner(Protocol):
    """A scorer that learns from delayed outcome labels, one state per group.

    ``learns_from`` is the :class:`~vigil.wire.records.LabelRecord` kind it learns.
    After learning, :meth:`take_state` returns the changed state entries (group, table key,
    bytes) that the caller must store durably, in the group's partition, before it
    acknowledges the labels.
    """

    learns_from: str

    def learn(self, x: np.ndarray, label: int, group: int,
              read: Callable[[bytes], bytes | None] | None = None) -> None: ...

    def take_state(self) -> list[tuple[int, bytes, bytes]]: ...


def is_learner(scorer: object) -> bool:
    return getattr(scorer, "learns_from", None) is not None


def padded_chunks(X: np.ndarray, batch_size: int) -> list[tuple[np.ndarray, int]]:
    """``X`` cut into NaN-padded chunks of exactly ``batch_size`` rows, with their real size."""
    if X.shape[0] == 0:
        return []
    out = []
    for start in range(0, X.shape[0], batch_size):
        chunk = X[start:start + batch_size]
        m = chunk.shape[0]
        if m < batch_size:
            chunk = np.vstack([chunk, np.full((batch_size - m, X.shape[1]), np.nan)])
        out.append((chunk, m))
    return out


def score_chunks(scorer: Scorer, chunks: list[tuple[np.ndarray, int]], n_features: int,
                 batch_size: int, context: Context | None = None) -> Assessment:
    """Score pre-cut chunks (several scorers can share them) and join the real rows.

    ``context`` covers the real rows (not the padding): each chunk gets its slice, padded
    rows belong to the group of the chunk's first row.
    """
    if not chunks:
        empty = scorer.score_batch(np.full((batch_size, n_features), np.nan))
        return empty.rows(slice(0, 0))
    parts = []
    for k, (chunk, m) in enumerate(chunks):
        ctx = None if context is None else _pad(context.rows(
            slice(k * batch_size, k * batch_size + m)), batch_size)
        parts.append(scorer.score_batch(chunk, ctx).rows(slice(0, m)))
    if len(parts) == 1:
        return parts[0]
    keys = parts[0].details.keys()
    return Assessment(
        np.concatenate([p.risk for p in parts]),
        None if parts[0].contributions is None else np.vstack([p.contributions for p in parts]),
        {k: np.concatenate([p.details[k] for p in parts]) for k in keys},
    )


def score_padded(scorer: Scorer, X: np.ndarray, batch_size: int,
                 context: Context | None = None) -> Assessment:
    """Score ``X`` in chunks of exactly ``batch_size`` rows (the last one NaN-padded)."""
    return score_chunks(scorer, padded_chunks(X, batch_size), X.shape[1], batch_size, context)


def _pad(ctx: Context, n: int) -> Context:
    """``ctx`` extended to ``n`` rows: groups repeat the first row's, details are NaN."""
    m = n if ctx.groups is None else len(ctx.groups)
    if ctx.groups is not None and m == 0:
        return ctx
    groups = ctx.groups
    if groups is not None and len(groups) < n:
        groups = np.r_[groups, np.full(n - len(groups), groups[0])]
    details = ctx.details
    if details is not None:
        details = {k: (v if len(v) >= n else np.r_[v, np.full(n - len(v), np.nan)])
                   for k, v in details.items()}
    return Context(groups, ctx.read, details, real=m)
