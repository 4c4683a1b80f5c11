"""The next experiments and whether the verdict is settled (docs/design.md §5.9). Candidate pairs
(raw, best cleaned) sit at budgets between the largest run and the target, each tier at its
point-estimate optimal N on its pool. With one run's noise sigma known they are ranked by the gap
variance they remove per FLOP, to first order: Sigma the samples' covariance, g the regression of
the samples' gaps on their parameters, J the pair's log-loss gradients; a pair removes
v' (sigma^2 I + J' Sigma J)^-1 v, v = J' Sigma g (`gap_information`); else by the spread of their
predicted gap. `_settle` says in words whether SETTLED of the samples agree and what would settle
it; `_snippets` writes the pairs as `[design]` TOML."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from scaler.fitting.compute import Compute
from scaler.fitting.predict import Z95
from scaler.fitting.stats import percentile_interval
from scaler.decision.result import Experiment, SPEND, TierOption
from scaler.decision.search import LawSamples, _loss_at, _optimise


SETTLED = 0.9  # a verdict is settled when this share of bootstrap samples choose its kind of spend
Z_SETTLED = 1.2815515655446004  # the normal quantile of SETTLED: |gap| / sd above it settles the verdict
SETTLE_SEEDS = (1, 2, 4, 8, 16, 32)  # seeds per run of the settling pair that `settle` tries


def _fmt_toml_list(xs: Sequence[float], as_int: bool = False) -> str:
    return "[" + ", ".join(str(int(round(x))) if as_int else f"{x:.3g}" for x in xs) + "]"


def _snippets(experiments: Sequence[Experiment], contenders: Sequence[str]) -> tuple[str, str]:
    if not experiments:
        return "", ""
    budgets = sorted({e.flops for e in experiments})
    ratio = float(np.exp(np.mean([math.log(e.tokens / e.n_params) for e in experiments])))
    mixes = ", ".join("{" + f"{t} = 1.0" + "}" for t in contenders)
    head = ("# next experiments (scaler.recommend): the contending tiers at budgets between the largest run\n"
            "# and the target, centred on the fitted optimum's tokens per parameter\n"
            "[design]\n" f"mixes = [{mixes}]\n" "seeds = [0]\n\n")
    iso = head + ("[design.isoflop]\n" f"budgets = {_fmt_toml_list(budgets)}\n" "points = 5\n" "span = 8.0\n"
                  f"tokens_per_param = {ratio:.4g}\n")
    # grid: one size per budget (the contenders' optima, geometric mean, 3 significant figures) at
    # the optimum's tokens per parameter: sizes x ratios, not a sizes x tokens cross product
    sizes = sorted({float(f"{math.exp(np.mean([math.log(e.n_params) for e in experiments if e.flops == c])):.3g}")
                    for c in budgets})
    grid = head + ("[design.grid]\n" f"sizes = {_fmt_toml_list(sizes, True)}\n" f"tokens_per_param = [{ratio:.4g}]\n")
    return iso, grid


def experiment_ladder(c_lo: float, c_hi: float, n_steps: int) -> list[float]:
    """`n_steps` training budgets geometrically spaced between c_lo and c_hi, both excluded."""
    if not (c_hi > c_lo > 0) or n_steps < 1:
        return []
    return [c_lo * (c_hi / c_lo) ** (k / (n_steps + 1)) for k in range(1, n_steps + 1)]


def _experiments(p: LawSamples, tiers: dict[str, TierOption], contenders: Sequence[str], raw_tokens: float,
                 budgets: Sequence[float], compute: Compute, information: Any = None) -> list[Experiment]:
    if len(contenders) < 2 or not budgets:
        return []
    theta_p, samples = p.take(slice(0, 1)), p.take(slice(1, None))  # row 0 is the point estimate
    out: list[Experiment] = []
    for c in budgets:
        runs = []
        for name in contenders:
            pool = tiers[name].yield_fraction * raw_tokens
            log_n, _ = _optimise(c, pool, theta_p, name, compute)
            n = float(np.exp(log_n[0]))
            d = float(compute.tokens(n, c))
            losses = _loss_at(n, d, pool, samples, name)
            runs.append((name, n, d, pool, losses))
        gap = runs[0][4] - runs[1][4]
        lo, hi = percentile_interval(gap)
        spread = hi - lo
        for name, n, d, pool, losses in runs:
            point = float(_loss_at(n, d, pool, theta_p, name)[0])
            out.append(Experiment(tier=name, n_params=n, tokens=d, flops=c, epochs=d / pool, predicted_loss=point,
                                  loss_interval=percentile_interval(losses), gap_spread=float(spread)))
    if information is not None:
        for c in budgets:
            pair = [e for e in out if e.flops == c]
            e_sd, e_after, per_flop = information([(e.tier, e.n_params, e.tokens) for e in pair], 2 * c)
            for e in pair:
                e.gap_sd, e.gap_sd_after, e.information_per_flop = e_sd, e_after, per_flop
        out.sort(key=lambda e: (-(e.information_per_flop or 0.0), e.flops))
    else:
        out.sort(key=lambda e: (-e.gap_spread if math.isfinite(e.gap_spread) else math.inf, e.flops))
    for i, e in enumerate(out):
        e.rank = i // len(contenders) + 1  # the pair at one compute shares a rank
    return out


def gap_information(law: Any, theta: np.ndarray, samples: np.ndarray, gaps: np.ndarray,
                    tiers: Sequence[TierOption], raw_tokens: float, sigma_log: float) -> Any:
    """`information(runs, flops) -> (gap sd now, gap sd after, variance removed per FLOP)`: what
    training `runs` ((tier, N, D), each with log-loss noise sd `sigma_log`) would teach about the
    verdict's gap at the target, to first order (module docstring: Sigma the samples' covariance,
    g the regression of the samples' gaps on their parameters, J the runs' log-loss gradients)."""
    ok = np.isfinite(gaps) & np.isfinite(samples).all(axis=1)
    x, y = samples[ok], gaps[ok]
    if len(x) < samples.shape[1] + 2 or not sigma_log > 0:
        return None
    sigma = np.cov(x, rowvar=False)
    g = np.linalg.lstsq(x - x.mean(axis=0), y - y.mean(), rcond=None)[0]
    var_now = float(g @ sigma @ g)
    step = 1e-4 * np.maximum(1.0, np.abs(theta))
    shifted = np.vstack([theta + np.diag(step), theta - np.diag(step)])  # (2P, P)
    p = LawSamples.of(law, shifted, tiers)
    pools = {t.name: t.yield_fraction * raw_tokens for t in tiers}
    P = theta.size

    def information(runs: Sequence[tuple[str, float, float]], flops: float, repeats: int = 1
                    ) -> tuple[float, float, float]:
        jac = []
        for tier, n, d in runs:
            log_l = np.log(_loss_at(n, d, pools[tier], p, tier))
            jac.append((log_l[:P] - log_l[P:]) / (2 * step))
        J = np.stack(jac, axis=1)  # (P, runs)
        v = J.T @ sigma @ g
        noise = sigma_log**2 / repeats  # `repeats` seeds of each run average their noise
        removed = float(v @ np.linalg.solve(noise * np.eye(J.shape[1]) + J.T @ sigma @ J, v))
        return math.sqrt(var_now), math.sqrt(max(var_now - removed, 0.0)), removed / (flops * repeats)

    return information


def _settle(verdict: str, probability_kind: float, gap: float, gap_interval: tuple[float, float], loss: float,
            experiments: Sequence[Experiment], information: Any) -> str:
    """In words: is the verdict settled (SETTLED of the samples choose its kind of spend)? If not,
    how far its gap is from settling, and what would settle it: the most informative next pair (a
    number of seeds of it, to first order), or nothing near (the uncertainty is the law's at the
    target); and how little the choice costs when the gap's whole interval is small."""
    kind = SPEND[verdict]
    if probability_kind >= SETTLED:
        return f"settled: {probability_kind:.0%} of bootstrap samples choose {kind} (>= {SETTLED:.0%})"
    lo, hi = gap_interval
    sd = (hi - lo) / (2 * Z95)
    need = abs(gap) / Z_SETTLED
    out = (f"not settled: {probability_kind:.0%} of bootstrap samples choose {kind}, short of {SETTLED:.0%}. The gap "
           f"({gap:+.4f} nats) is {abs(gap) / sd:.2f} sd of its spread (sd {sd:.4f}); {SETTLED:.0%} needs the sd below "
           f"{need:.4f} nats.")
    top = [e for e in experiments if e.rank == 1]
    if information is not None and top and top[0].gap_sd_after is not None:
        runs, flops = [(e.tier, e.n_params, e.tokens) for e in top], top[0].flops
        pair = f"{' and '.join(e.tier for e in top)} at {flops:.3g} FLOPs"
        seeds = next((k for k in SETTLE_SEEDS if information(runs, 2 * flops, k)[1] <= need), None)
        if seeds is not None:
            out += (f" The measurement that would settle it: the pair {pair}, " +
                    ("once" if seeds == 1 else f"with {seeds} seeds each") + " (to first order).")
        else:
            floor = information(runs, 2 * flops, SETTLE_SEEDS[-1])[1]
            out += (f" The most informative pair ({pair}) would not settle it even with {SETTLE_SEEDS[-1]} seeds "
                    f"(sd {floor:.4f} at best): runs nearer the target budget would.")
    worst = max(abs(lo), abs(hi))
    out += (f" Either way, the options differ by at most {worst:.4f} nats at 95% ({100 * worst / loss:.2f}% of the "
            "loss).")
    return out
