"""`scaler design`: what a sweep design would tell, before any of its runs (docs/design.md §5.11).

A design is judged by the intervals it would give. Given a prior (a fitted quality law, its seed
noise) and a design (its runs' N, D, compute, tier weights and pools, seeds as repeated rows):

1. synthetic results: every run's loss is the prior law's prediction times exp(z sd), z standard
   normal and sd the prior's seed-to-seed noise on log loss (its error model's run scatter when the
   prior measured no seed noise);
2. each synthetic sweep is fitted as `scaler fit` fits a real one (the quality law, with R_D* when
   its runs repeat data; bootstrap over configurations) and recommends at the target budget;
3. over `n_sims` such sweeps: the expected 95% bootstrap interval width of every kappa and of the
   allocation exponent a (N_opt ~ C^a), the spread of their point estimates (2 x 1.96 sd over the
   sweeps: the width a frequentist would measure by repeating the sweep), and the verdict's expected probability: per
   sweep, the share of its bootstrap samples that choose the prior's kind of spend (size or
   cleaning), averaged; with the share of sweeps whose own verdict is the prior's.

The simulation knows only the noise it is told: misspecification (the law being wrong at scale)
is not in it, so the widths are those of a law that is right. Two or more designs are compared on
the same prior, noise and target.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from scaler.config import ConfigError
from scaler.errors import ParameterError
from scaler.fitting.inputs import FitData, json_safe, with_clusters
from scaler.fitting.predict import Z95



@dataclass(frozen=True)
class DesignRuns:
    """A design as the fit sees it: one row per run (seeds repeat rows), and what it costs."""

    name: str
    columns: dict[str, np.ndarray]  # N, D, C (the prior's convention), w_<tier>, U_<tier>
    groups: np.ndarray  # the tier (or mix) label of every run
    trained_flops: float  # what training the design costs (WSD branches share their trunks)


def noise_of(prior: Mapping[str, Any]) -> tuple[float, str]:
    """The sd of one run's log loss to simulate with, and where it comes from."""
    seeds = prior.get("seed_noise") or {}
    if seeds.get("sd_log"):
        return float(seeds["sd_log"]), f"the prior's seed noise ({seeds['n_runs']} runs of {seeds['n_configs']} configurations)"
    run = (prior.get("error_model") or {}).get("sigma_run")
    if run:
        return float(run), "the prior's run scatter (its error model; no seed noise was measured)"
    raise ParameterError("{prior}: the fit measured neither seed noise nor run scatter; give {noise_sd} SD (log loss)",
                         "prior", "noise_sd")


def synthetic_losses(law: Any, theta: np.ndarray, design: DesignRuns, sd: float, rng: np.random.Generator
                     ) -> np.ndarray:
    """One synthetic sweep: the law's losses times exp(N(0, sd)) per run."""
    clean = law.predict(theta, design.columns)
    if not np.all(np.isfinite(clean)):
        raise ConfigError(f"design {design.name}: the prior law predicts no finite loss for some of its runs")
    return clean * np.exp(rng.normal(0.0, sd, len(clean)))


def simulate(design: DesignRuns, prior: Mapping[str, Any], recommend_at: Any, *, n_sims: int = 20,
             n_bootstrap: int = 100, noise_sd: float | None = None, seed: int = 0) -> dict[str, Any]:
    """Expected intervals and verdict probability of `design` under `prior` (module docstring).

    `prior`: a quality law's fit entry (fit.json's "quality"); `recommend_at(entry)`: the
    Recommendation of a fit entry at the target budget (the caller's pools, yields and costs)."""
    from scaler.fitting import laws
    from scaler.fitting.pipeline import fit

    if n_sims < 2:
        raise ParameterError(f"{{n_sims}} {n_sims}: expected 2 or more synthetic sweeps", "n_sims")
    law = laws.law_from_spec(prior["spec"])
    theta = np.asarray(prior["theta"], dtype=np.float64)
    sd, sd_source = (float(noise_sd), "given") if noise_sd is not None else noise_of(prior)
    prior_verdict = recommend_at(prior).verdict
    reference = law.spec.get("reference", "raw")
    names = [f"kappa_{t}" for t in law.spec.get("tiers", ()) if t != reference] + ["a_exponent"]
    rng = np.random.default_rng(seed)
    points: dict[str, list[float]] = {k: [] for k in names}
    widths: dict[str, list[float]] = {k: [] for k in names}
    shares, agree, failed = [], [], 0
    base = with_clusters(FitData(f"design {design.name}", dict(design.columns), np.ones(len(design.groups)),
                                 design.groups.copy()))
    for _ in range(n_sims):
        data = replace(base, loss=synthetic_losses(law, theta, design, sd, rng))
        try:
            entry = fit(data, "quality", n_bootstrap, int(rng.integers(2**31)), reference, backtests=False)
        except (ValueError, ConfigError):
            failed += 1
            continue
        for k in names:
            points[k].append(float(entry["derived"][k]))
            lo, hi = entry["intervals"][k]
            widths[k].append(float(hi - lo) if lo is not None and hi is not None else math.nan)
        rec = recommend_at(entry)
        shares.append(rec.probability_kind if rec.verdict == prior_verdict else 1.0 - rec.probability_kind)
        agree.append(rec.verdict == prior_verdict)
    if not shares:
        raise ConfigError(f"design {design.name}: none of its {n_sims} synthetic sweeps could be fitted")
    return json_safe({
        "design": design.name, "runs": len(design.groups), "trained_flops": design.trained_flops,
        "sims": n_sims, "sims_failed": failed, "bootstrap": n_bootstrap, "noise_sd_log": sd, "noise_source": sd_source,
        "law": law.name, "prior_verdict": prior_verdict,
        "parameters": {k: {"prior": float(prior["derived"][k]),
                           "expected_width": float(np.nanmean(widths[k])),
                           "spread_of_estimates": _spread(points[k])} for k in names},
        "verdict_probability": float(np.mean(shares)),
        "verdict_agreement": float(np.mean(agree)),
    })


def _spread(values: Sequence[float]) -> float:
    """The 95% width of the sampling distribution of an estimate: 2 x 1.96 x its sd over the
    synthetic sweeps (steadier than their 2.5-97.5 percentiles at a few tens of sweeps)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(2 * Z95 * np.std(v, ddof=1)) if len(v) >= 2 else math.nan


def table_lines(results: Sequence[Mapping[str, Any]], target_flops: float) -> list[str]:
    """Designs side by side: cost, expected widths, the verdict's expected probability."""
    first = results[0]
    names = list(first["parameters"])
    lines = [f"designs simulated on the prior law ({first['law']}): {first['sims']} synthetic sweeps each, noise "
             f"sd {first['noise_sd_log']:.4f} on log loss ({first['noise_source']}); verdict at {target_flops:.3g} "
             f"FLOPs, the prior's: {first['prior_verdict']}"]
    head = f"  {'design':<16} {'runs':>5} {'FLOPs':>9}" + "".join(f" {('width ' + k):>19}" for k in names)
    lines += [head + f" {'P(verdict)':>11} {'agree':>6}"]
    for r in results:
        row = f"  {r['design']:<16} {r['runs']:>5} {r['trained_flops']:>9.3g}"
        for k in names:
            p = r["parameters"][k]
            row += f" {p['expected_width']:>10.3g} ({p['spread_of_estimates']:.3g})"
        lines.append(row + f" {r['verdict_probability']:>10.0%} {r['verdict_agreement']:>6.0%}")
    lines.append("  width: the expected 95% bootstrap interval width; in brackets the spread of the point estimates "
                 "over the synthetic sweeps (what repeating the sweep would show)")
    return lines
