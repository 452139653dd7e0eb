"""Seeds as replicates: means with 95% t-intervals, and differences with Welch's test.

A study repeats every variant over a few seeds; what the report can claim is what these few
replicates resolve. For n values x_1..x_n with mean x̄ and sample standard deviation s,

    x̄ ± t_{0.975, n−1} · s / √n                                  (Student's t-interval)

and for the difference of two variants' means (unequal variances, Welch 1947)

    (x̄_a − x̄_b) ± t_{0.975, ν} · √(s_a²/n_a + s_b²/n_b),
    ν = (s_a²/n_a + s_b²/n_b)² / ((s_a²/n_a)²/(n_a−1) + (s_b²/n_b)²/(n_b−1)),

computed by :func:`scipy.stats.ttest_ind` (``equal_var=False``). Two quantities measured on
the same runs (two epochs of one variant) are paired by seed (:func:`scipy.stats.ttest_rel`);
a variant against a constant is a one-sample test. With fewer than two values a side there is
no interval (``low``/``high`` are None).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from losslab.errors import InputError

__all__ = ["MeanCI", "Difference", "mean_ci", "difference", "LEVEL"]

LEVEL = 0.95  # every interval in losslab's tables is a 95% interval


@dataclass(frozen=True)
class MeanCI:
    """The mean of ``n`` replicates with its t-interval (``half`` = half-width)."""

    mean: float
    low: float | None
    high: float | None
    std: float | None
    n: int

    @property
    def half(self) -> float | None:
        return None if self.low is None or self.high is None else (self.high - self.low) / 2

    def to_dict(self) -> dict[str, float | int | None]:
        return {**asdict(self), "half": self.half}


@dataclass(frozen=True)
class Difference:
    """``a − b`` with its interval, p-value and the test that gave them."""

    diff: float
    low: float | None
    high: float | None
    p_value: float | None
    test: str  # "welch", "paired" or "one-sample"
    n_a: int
    n_b: int

    def to_dict(self) -> dict[str, float | int | str | None]:
        return asdict(self)


def _clean(values: Sequence[float]) -> np.ndarray:
    x = np.asarray([float(v) for v in values], dtype=float)
    return x[np.isfinite(x)]


def _interval(result, level: float) -> tuple[float | None, float | None]:
    ci = result.confidence_interval(confidence_level=level)
    low, high = float(ci.low), float(ci.high)
    return (low, high) if math.isfinite(low) and math.isfinite(high) else (None, None)


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(float(x)) else None


def mean_ci(values: Sequence[float], level: float = LEVEL) -> MeanCI:
    """Mean and Student's t-interval of the finite ``values`` (NaNs are dropped)."""
    x = _clean(values)
    n = len(x)
    if n == 0:
        return MeanCI(math.nan, None, None, None, 0)
    mean = float(x.mean())
    if n < 2:
        return MeanCI(mean, None, None, None, n)
    std = float(x.std(ddof=1))
    if std == 0:
        return MeanCI(mean, mean, mean, 0.0, n)
    from scipy import stats  # lazily: every study worker imports this module

    low, high = stats.t.interval(level, n - 1, loc=mean, scale=std / math.sqrt(n))
    return MeanCI(mean, float(low), float(high), std, n)


def difference(a: Sequence[float], b: Sequence[float] | float, *, paired: bool = False,
               level: float = LEVEL) -> Difference:
    """``mean(a) − mean(b)`` with a ``level`` interval.

    ``b`` a number: one-sample test of ``a`` against it. ``paired``: ``a[i]`` and ``b[i]``
    come from the same run (same seed); pairs with a NaN are dropped. Otherwise Welch's test.
    Identical replicates (zero spread on both sides) give a degenerate interval at the
    difference, which is exact then.
    """
    from scipy import stats  # lazily: every study worker imports this module

    if isinstance(b, (int, float)):
        x = _clean(a)
        diff = float(x.mean() - b) if len(x) else math.nan
        if len(x) < 2:
            return Difference(diff, None, None, None, "one-sample", len(x), 0)
        if x.std() == 0:
            return Difference(diff, diff, diff, None, "one-sample", len(x), 0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            r = stats.ttest_1samp(x, float(b))
        low, high = _interval(r, level)  # scipy's interval is of the mean, not of mean − b
        low, high = (None, None) if low is None else (low - float(b), high - float(b))
        return Difference(diff, low, high, _finite(r.pvalue), "one-sample", len(x), 0)
    if paired:
        pa, pb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        if pa.shape != pb.shape:
            raise InputError(f"paired samples need equal lengths, got {len(pa)} and {len(pb)}")
        keep = np.isfinite(pa) & np.isfinite(pb)
        d = pa[keep] - pb[keep]
        inner = difference(d, 0.0, level=level)
        return Difference(inner.diff, inner.low, inner.high, inner.p_value, "paired",
                          int(keep.sum()), int(keep.sum()))
    xa, xb = _clean(a), _clean(b)
    diff = float(xa.mean() - xb.mean()) if len(xa) and len(xb) else math.nan
    if len(xa) < 2 or len(xb) < 2:
        return Difference(diff, None, None, None, "welch", len(xa), len(xb))
    if xa.std() == 0 and xb.std() == 0:
        return Difference(diff, diff, diff, None, "welch", len(xa), len(xb))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = stats.ttest_ind(xa, xb, equal_var=False)
    low, high = _interval(r, level)
    return Difference(diff, low, high, _finite(r.pvalue), "welch", len(xa), len(xb))
