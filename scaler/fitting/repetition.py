"""Repetition per tier: does each tier tolerate its own number of epochs (R_D*), or one shared value?

Cleaner data may take more repetition (Fang et al. 2025). The quality law with tier pools fits one
shared R_D* (Muennighoff et al. 2023); `repetition_test` fits it both ways, shared and with one
R_D*_<t> per tier, by least squares on log loss (the nested-model test needs the fits that
minimise the residuals it compares), and asks whether the runs can tell the tiers apart: the
F test F = ((RSS_shared - RSS_per_tier) / q) / (RSS_per_tier / (n - p)), q = tiers - 1,
p the per-tier law's parameters (the small-sample form of the likelihood-ratio test, Gaussian
residuals). Only a tier whose runs read its pool more than once says anything about its R_D*, so
the test needs every tier to repeat in some run.
p-value < ALPHA: per tier; otherwise the shared value, with the reason. docs/design.md §5.2."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

from scaler.fitting.inputs import FitData

ALPHA = 0.05  # the test's level: below it the per-tier R_D* is used
LEAST_SQUARES = {"objective": "huber", "delta": 1.0}  # Huber with delta 1 on log losses: squares at these residuals


def repeating_tiers(data: FitData, tiers: list[str]) -> list[str]:
    """The tiers some run reads more than once (epochs w_t D / U_t > 1)."""
    cols = data.columns
    return [t for t in tiers if np.max(cols[f"w_{t}"] * cols["D"] / cols[f"U_{t}"]) > 1.0]


def _rss(law: Any, theta: np.ndarray, data: FitData) -> float:
    residuals = np.log(data.loss) - law.predict_log(np.asarray(theta), dict(data.columns), np)
    return float(np.sum(residuals**2))


def _collapsed(theta_per_tier: np.ndarray, n_tiers: int) -> np.ndarray:
    """A shared-R_D* start from a per-tier fit: the tiers' log R_D* averaged."""
    head, logs = theta_per_tier[:-n_tiers], theta_per_tier[-n_tiers:]
    return np.r_[head, np.mean(logs)]


def _refit_from(law: Any, fitted: Any, start: np.ndarray, data: FitData) -> Any:
    """The better of `fitted` and a fit started at `start`: a shared fit stuck in a worse local
    optimum would make the per-tier law look better than it is."""
    from scaler.fitting.fitter import estimate

    other = estimate(law, data.columns, data.loss, starts=np.vstack([fitted.theta, start]), **LEAST_SQUARES)
    return other if other.objective < fitted.objective else fitted


def repetition_test(data: FitData, tiers: list[str], reference: str) -> dict[str, Any]:
    """Shared against per-tier R_D* on `data` (mix weights and pools U_<t> for every tier): both
    fits' R_D* values, the statistic, its degrees of freedom, p, the verdict ("per_tier" or
    "shared") and a one-line note saying why."""
    from scaler.fitting import laws
    from scaler.fitting.fitter import estimate

    repeating = repeating_tiers(data, tiers)
    shared_law = laws.quality(tiers, reference=reference, pools=True)
    shared = estimate(shared_law, data.columns, data.loss, **LEAST_SQUARES)
    out: dict[str, Any] = {"alpha": ALPHA, "repeating_tiers": repeating,
                           "shared": {"R_D_star": shared.derived["R_D_star"]}}
    if len(repeating) < len(tiers):
        never = ", ".join(t for t in tiers if t not in repeating)
        out.update(verdict="shared", note=f"one R_D* for every tier: no run repeats {never}, so the runs cannot "
                                          "tell a per-tier R_D* for it")
        return out
    tier_law = laws.quality(tiers, reference=reference, pools=True, repetition="per_tier")
    per_tier = estimate(tier_law, data.columns, data.loss, **LEAST_SQUARES)
    shared = _refit_from(shared_law, shared, _collapsed(per_tier.theta, len(tiers)), data)
    rss_shared, rss_tier = _rss(shared_law, shared.theta, data), _rss(tier_law, per_tier.theta, data)
    df = (len(tiers) - 1, data.n_points - tier_law.n_params)
    if df[1] < 1:
        out.update(verdict="shared", note=f"one R_D* for every tier: {data.n_points} runs are too few to fit "
                                          f"{tier_law.n_params} parameters and test them")
        return out
    statistic = max(0.0, (rss_shared - rss_tier) / df[0]) / (rss_tier / df[1]) if rss_tier > 0 else math.inf
    p_value = float(stats.f.sf(statistic, *df))
    out["per_tier"] = {t: per_tier.derived[f"R_D_star_{t}"] for t in repeating}
    out.update(statistic=statistic, df=list(df), p_value=p_value, rss_shared=rss_shared, rss_per_tier=rss_tier)
    test = f"F = {statistic:.3g} on ({df[0]}, {df[1]}) df, p = {p_value:.2g}"
    if p_value < ALPHA:
        out.update(verdict="per_tier", note=f"one R_D* per tier: the runs tell the tiers apart ({test} < {ALPHA:g})")
    else:
        out.update(verdict="shared", note=f"one R_D* for every tier: a per-tier R_D* does not fit the runs better "
                                          f"than chance would ({test} >= {ALPHA:g})")
    return out
