"""The one feature function: a patient's window state at an event time -> a feature vector.

The stream, training and evaluation all call :meth:`FeatureSpec.featurize` on a
:class:`~vigil.wire.state.PatientState` built by :func:`vigil.stream.windows.admit`, so the
model sees in production exactly what it saw in training (no train/serve skew). Features are
causal: only observations with event time <= ``at_ms`` count, even when later ones are
already in the state (out-of-order arrival).

Missing stays missing: a code never measured gives NaN for its value features and NaN
"hours since"; models impute with statistics stored in their artifact, and the clinical
scores treat a missing parameter explicitly.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from vigil.stream.windows import WindowSpec
from vigil.wire.codes import LAB_CODES, VITAL_CODES
from vigil.wire.durations import HOUR_MS
from vigil.wire.state import PatientState

__all__ = ["FeatureSpec", "DEMOGRAPHIC_FEATURES"]

NAN = math.nan
DEMOGRAPHIC_FEATURES = (
    "age_years",
    "sex_male",
    "hours_since_icu_admission",
    "hours_since_hospital_admission",
    "shock_index",
)


@dataclass(frozen=True)
class FeatureSpec:
    """Names and order of the feature vector for a given window definition.

    The order is part of a model artifact's schema: an artifact trained with other windows
    refuses to load rather than score shifted columns.

    >>> spec = FeatureSpec(WindowSpec((3_600_000, 21_600_000), 0))
    >>> spec.names[:4]
    ('HR_last', 'HR_hours_since', 'HR_mean_1h', 'HR_min_1h')
    >>> len(spec.names) == len(set(spec.names))
    True
    """

    windows: WindowSpec

    @cached_property
    def names(self) -> tuple[str, ...]:
        out: list[str] = []
        for code in VITAL_CODES:
            out += [f"{code}_last", f"{code}_hours_since"]
            for w in self.windows.names:
                out += [f"{code}_mean_{w}", f"{code}_min_{w}", f"{code}_max_{w}",
                        f"{code}_count_{w}"]
            w = self.windows.names[-1]
            out += [f"{code}_std_{w}", f"{code}_slope_{w}"]
        for code in LAB_CODES:
            out += [f"{code}_last", f"{code}_hours_since", f"{code}_delta"]
        out += list(DEMOGRAPHIC_FEATURES)
        return tuple(out)

    @cached_property
    def index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def featurize(self, state: PatientState, at_ms: int) -> list[float]:
        """Features of ``state`` as of event time ``at_ms`` (inclusive)."""
        out: list[float] = []
        add = out.append
        extend = out.extend
        lengths = self.windows.lengths_ms
        n_w = len(lengths)
        series = state.series
        for code in VITAL_CODES:
            s = series.get(code)
            k = bisect_right(s.t, at_ms) if s is not None else 0
            if k == 0:  # never measured: values unknown, counts zero
                extend((NAN, NAN))
                extend((NAN, NAN, NAN, 0.0) * n_w)
                extend((NAN, NAN))
                continue
            t, v = s.t, s.v
            add(v[k - 1])
            add((at_ms - t[k - 1]) / HOUR_MS)
            lo = k
            for length in lengths:
                lo = bisect_left(t, at_ms - length + 1, 0, k)
                if lo == k:
                    extend((NAN, NAN, NAN, 0.0))
                    continue
                win = v[lo:k]
                n = k - lo
                extend((sum(win) / n, min(win), max(win), float(n)))
            # std and slope over the longest window (lo from the last iteration), one pass
            n = k - lo
            if n >= 2:
                sx = sxx = sh = shh = shx = 0.0
                for tt, x in zip(t[lo:k], v[lo:k]):
                    h = (tt - at_ms) / HOUR_MS
                    sx += x
                    sxx += x * x
                    sh += h
                    shh += h * h
                    shx += h * x
                add(math.sqrt(max(0.0, (sxx - sx * sx / n) / (n - 1))))
                hvar = shh - sh * sh / n
                add((shx - sh * sx / n) / hvar if hvar > 1e-12 else NAN)
            else:
                extend((NAN, NAN))
        for code in LAB_CODES:
            s = series.get(code)
            k = bisect_right(s.t, at_ms) if s is not None else 0
            if k == 0:
                extend((NAN, NAN, NAN))
                continue
            last = s.v[k - 1]
            extend((last, (at_ms - s.t[k - 1]) / HOUR_MS,
                    last - s.v[k - 2] if k >= 2 else NAN))
        add(state.age_years if state.age_years is not None else NAN)
        add(1.0 if state.sex == "male" else 0.0 if state.sex == "female" else NAN)
        add((at_ms - state.icu_admit_ms) / HOUR_MS if state.icu_admit_ms is not None else NAN)
        add((at_ms - state.hospital_admit_ms) / HOUR_MS
            if state.hospital_admit_ms is not None else NAN)
        hr, sbp = out[self._hr_last], out[self._sbp_last]
        add(hr / sbp if sbp > 0 else NAN)  # NaN propagates when either is missing
        return out

    @cached_property
    def _hr_last(self) -> int:
        return self.names.index("HR_last")

    @cached_property
    def _sbp_last(self) -> int:
        return self.names.index("SBP_last")

    def matrix(self, rows: list[list[float]]) -> np.ndarray:
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(self.names))
