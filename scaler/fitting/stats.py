"""Intervals and orders from bootstrap samples: one definition for the fits, the recommendation and the report."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["percentile_interval", "order_probability"]


def percentile_interval(samples: Any, level: float = 0.95, axis: int | None = 0) -> tuple[Any, Any]:
    """The central percentile interval (lo, hi) holding `level` of `samples`, e.g. the 2.5th and
    97.5th percentiles for level 0.95 (linear interpolation between order statistics).

    NaN and inf samples are left out. Along `axis` of an N-D array the bounds are arrays (one per
    remaining index); for 1-D samples (or axis=None) they are floats. Where no sample is finite
    the bounds are NaN.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"interval level must be in (0, 1), got {level}")
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan")
    x = np.where(np.isfinite(x), x, np.nan)
    q = (100.0 * (1.0 - level) / 2.0, 100.0 * (1.0 + level) / 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN slice: NaN bounds, said above
        lo, hi = np.nanpercentile(x, q, axis=None if x.ndim <= 1 else axis)
    if np.ndim(lo) == 0:
        return float(lo), float(hi)
    return lo, hi


def order_probability(point: Any, samples: Any) -> tuple[list[int], float, list[float]]:
    """The order of G options by their point losses (best first), the share of the (S, G) sample
    losses that rank all G the same way, and for each adjacent pair of that order the share of
    samples in which the better one stays better. Samples with a non-finite loss are left out."""
    point = np.asarray(point, dtype=np.float64)
    samples = np.asarray(samples, dtype=np.float64).reshape(-1, len(point))
    samples = samples[np.isfinite(samples).all(axis=1)]
    order = [int(i) for i in np.argsort(point, kind="stable")]
    if not len(samples):
        return order, float("nan"), [float("nan")] * (len(order) - 1)
    ranked = samples[:, order]
    pairs = ranked[:, :-1] < ranked[:, 1:]
    return order, float(np.mean(pairs.all(axis=1))), [float(p) for p in pairs.mean(axis=0)]
