"""The crossover budget (docs/design.md §5.9): where the verdict flips, from the gap g(C) = best
raw loss - best cleaned loss, every tier charged its cleaning at C. On a geometric grid of
CROSSOVER_BUDGETS budgets from the largest fitted run to CROSSOVER_REACH x the budget, the first
change of sign is refined by CROSSOVER_BISECTIONS bisections in log C, for the point estimate and,
vectorised, for every bootstrap sample (one search per tier over budgets x samples). `curves`
keeps each tier's best loss and the share of samples in which cleaning wins: the report's figure."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from scaler.fitting.compute import Compute, max_log_n, minimise_log_n
from scaler.fitting.stats import percentile_interval
from scaler.decision.result import TierOption
from scaler.decision.search import LawSamples, MIN_FLOPS_PER_PARAM_TOKEN, _loss


CROSSOVER_BUDGETS = 40  # the crossover's geometric grid of budgets
CROSSOVER_REACH = 100.0  # the crossover's range ends at this multiple of the budget
CROSSOVER_GRID = 48  # grid points of the crossover's N search (golden-section refinement follows) ...
CROSSOVER_ITERS = 30  # ... and its golden-section steps (the bracket shrinks 0.618^30 ~ 5e-7 times)
CROSSOVER_BISECTIONS = 10  # bisections of a flip's grid interval in log C (to 1/1024 of a grid step)


def _row_best(train_flops: np.ndarray, pool: float, q: LawSamples, tier: str, compute: Compute) -> np.ndarray:
    """The best loss of row r of the law arrays `q` at training budget train_flops[r]: (R,), +inf
    where the budget is too small to train. One search for all rows: x = log N / log(C_r/6) in
    [0, 1], so every row searches its own range [0, log(C_r/6)]."""
    out = np.full(len(train_flops), np.inf)
    ok = train_flops >= MIN_FLOPS_PER_PARAM_TOKEN
    if ok.any():
        c = train_flops[ok][:, None]
        top, rows = max_log_n(c), q.take(ok)
        _, best = minimise_log_n(lambda x: _loss(x * top, c, pool, rows, tier, compute), 0.0, 1.0, len(c),
                                 grid=CROSSOVER_GRID, iters=CROSSOVER_ITERS)
        out[ok] = best
    return out


def _bests(budgets: np.ndarray, q: LawSamples, tiers: Sequence[TierOption], raw_tokens: float,
           compute: Compute) -> dict[str, np.ndarray]:
    """Per tier, the best loss of row r of `q` at budget budgets[r], the tier charged its cleaning."""
    return {t.name: _row_best(budgets - t.cleaning_flops_per_raw_token * raw_tokens, t.yield_fraction * raw_tokens, q,
                              t.name, compute) for t in tiers}


def _gap_of(best: dict[str, np.ndarray], raw: str) -> np.ndarray:
    """Best raw loss - best cleaned loss (> 0: cleaning wins)."""
    cleaned = np.min([v for name, v in best.items() if name != raw], axis=0)
    with np.errstate(invalid="ignore"):
        return best[raw] - cleaned


def _gap(budgets: np.ndarray, q: LawSamples, tiers: Sequence[TierOption], raw: str, raw_tokens: float,
         compute: Compute) -> np.ndarray:
    """Best raw loss - best cleaned loss of row r of `q` at budget budgets[r] (> 0: cleaning wins),
    every tier charged its cleaning."""
    return _gap_of(_bests(budgets, q, tiers, raw_tokens, compute), raw)


def _curves(best: dict[str, np.ndarray], wins: np.ndarray, budgets: np.ndarray, level: float) -> dict[str, Any]:
    """What the report's crossover figure draws, on the crossover's budget grid: per tier the point
    estimate's best loss and the `level` interval over the samples, and the share of samples in
    which cleaning wins. `best` values and `wins` are (budgets, 1 + samples)."""
    out: dict[str, Any] = {"budgets": budgets.tolist(), "best": {}, "best_interval": {}}
    for name, values in best.items():
        out["best"][name] = values[:, 0].tolist()
        if values.shape[1] > 2:
            finite = np.where(np.isfinite(values[:, 1:]), values[:, 1:], np.nan)
            with warnings.catch_warnings():  # a budget too small for every sample: NaN, not drawn
                warnings.simplefilter("ignore", RuntimeWarning)
                lo, hi = np.nanquantile(finite, [(1 - level) / 2, (1 + level) / 2], axis=1)
            out["best_interval"][name] = [lo.tolist(), hi.tolist()]
    out["p_cleaning"] = wins[:, 1:].mean(axis=1).tolist() if wins.shape[1] > 1 else None
    return out


def _crossover(p: LawSamples, tiers: Sequence[TierOption], raw: str, raw_tokens: float, lo: float, hi: float,
               compute: Compute, n_budgets: int, level: float) -> tuple[dict[str, Any], int]:
    """The crossover of the module docstring over [lo, hi], row 0 of `p` being the point estimate;
    and how many times the point estimate's verdict flips on the grid."""
    M = len(p)  # the point estimate and the samples
    budgets = np.geomspace(lo, hi, n_budgets)
    best = _bests(np.repeat(budgets, M), p.take(np.tile(np.arange(M), n_budgets)), tiers, raw_tokens, compute)
    best = {name: values.reshape(n_budgets, M) for name, values in best.items()}
    wins = _gap_of(best, raw) > 0  # cleaning wins, per budget (rows) and sample (columns)
    to_clean, to_size = ~wins[:-1] & wins[1:], wins[:-1] & ~wins[1:]  # flips between grid budgets k and k+1
    first_clean = np.where(to_clean.any(axis=0), np.argmax(to_clean, axis=0), n_budgets)
    first_size = np.where(to_size.any(axis=0), np.argmax(to_size, axis=0), n_budgets)
    if min(first_clean[0], first_size[0]) < n_budgets:  # the point estimate's first flip sets the direction
        direction = "size->cleaning" if first_clean[0] < first_size[0] else "cleaning->size"
    elif to_clean.any() or to_size.any():  # else the direction most samples flip in
        direction = "size->cleaning" if to_clean.any(axis=0).sum() >= to_size.any(axis=0).sum() else "cleaning->size"
    else:
        direction = None
    out: dict[str, Any] = {"flops": None, "interval": None, "share_crossing": 0.0, "direction": direction,
                           "range": [float(lo), float(hi)], "throughout": None,
                           "curves": _curves(best, wins, budgets, level)}
    n_flips = int(np.sum(wins[1:, 0] != wins[:-1, 0]))
    if direction is None:
        out["throughout"] = "cleaning" if wins[0, 0] else "size"
        return out, n_flips
    # refine each flipping column's first flip by bisection in log C between its two grid budgets
    to_cleaning = direction == "size->cleaning"
    first = first_clean if to_cleaning else first_size
    cols = np.flatnonzero(first < n_budgets)
    a, b = np.log(budgets[first[cols]]), np.log(budgets[first[cols] + 1])
    q = p.take(cols)
    for _ in range(CROSSOVER_BISECTIONS):
        mid = 0.5 * (a + b)
        after = (_gap(np.exp(mid), q, tiers, raw, raw_tokens, compute) > 0) == to_cleaning
        a, b = np.where(after, a, mid), np.where(after, mid, b)
    crossing = np.exp(0.5 * (a + b))
    if cols.size and cols[0] == 0:
        out["flops"] = float(crossing[0])
    else:
        out["throughout"] = "cleaning" if wins[0, 0] else "size"
    samples = crossing[cols > 0]
    if M > 1:
        out["share_crossing"] = float(len(samples) / (M - 1))
    if len(samples):
        out["interval"] = list(percentile_interval(samples, level))
    return out, n_flips
