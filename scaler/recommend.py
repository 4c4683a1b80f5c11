"""Budget recommendation (docs/design.md §5): spend a compute budget on model size or on cleaning?

Given a budget (FLOPs, GPU-hours at a measured throughput, or dollars), the raw token pool and,
per data tier, its effective-data multiplier kappa_t (from the fitted quality law), its yield
(tokens kept / raw tokens) and its cleaning cost (FLOPs per raw token) -- measured by `data build`,
or given by hand for runs trained anywhere -- find for every tier the compute-optimal (N, D), and
say whether the budget is better spent on model size (raw data, all compute on training) or on
cleaning.

The model of one choice (tier t, budget C, raw pool U raw tokens):

- cleaning is charged first: Cc_t = cost_t x U (raw tier: 0); the training budget is
  C_t = C - Cc_t; an option whose cleaning alone uses the whole budget is infeasible (reported);
- the tier's unique pool is U_t = yield_t x U;
- training spends C_t under one compute convention (`scaler.fit.compute.Compute`, the fit's:
  flops_v1 with attention for a store's runs, the textbook 6ND otherwise and by default): every D
  derived from a budget is D = compute.tokens(N, C_t), so each answer costs exactly its budget
  under the convention the law was fitted in; the convention is named in the output;
- repeated data counts by Muennighoff et al. 2023 (`laws.repeated_tokens`): D' = U_t + U_t R*
  (1 - exp(-R/R*)), R = D/U_t - 1 (D' = D while D <= U_t); R* = R_D* of the law where it fits
  one (quality law with pools, data_constrained), else the published R_D* = 15.4 (Muennighoff
  et al. 2023, fit on their 8.7B-token runs; a borrowed constant, not a measurement of this data);
- the loss is the fitted law's own formula (`LawSamples`: `Law.predict_log` at every parameter
  sample) for a run on tier t alone: a quality law gets w_t = 1 (and U_t = the tier's pool when it
  fits repetition, else D' as above), data_constrained gets U = the pool (its own R_D* and R_N*),
  and a law of N and D alone (chinchilla, kaplan, overtrain, broken) gets kappa_t D' (kappa_t 1
  unless given), the repetition it does not model added.

For every tier the N minimising L is found over log N in [0, log(C_t/6)] (up to one token per
parameter under 6ND; every convention spends at least 6 FLOPs per parameter and token) by
`scaler.fit.compute.minimise_log_n` (a dense grid, then golden-section refinement), vectorised
across bootstrap parameter samples; every sample re-optimises its own N, so the 95% interval of
the predicted loss is over "the best this sample of the law can do". When the fit carries an
error model (`scaler.fit.predict`), each option also gets the 95% prediction interval of its run's
loss: the bootstrap spread at that (N, D) plus run-to-run scatter and misspecification growing with
the extrapolation distance. The verdict compares the raw tier's best (all budget on model size and
raw data) with the best cleaned tier (point estimate); its probability is the share of parameter
samples whose overall best option is the same option (`probability`), and the share in which the
same kind of choice wins (`probability_kind`: any cleaned tier beats raw, or raw beats all).

How far the answer reaches: `extrapolation` is the budget over the largest fitted run's compute
(same convention). Beyond 100x a note names the fitted range; beyond 1e4x `recommend_from_fit`
refuses (`ExtrapolationRefused`) unless forced. When the fit measured seed-to-seed noise (repeated
configurations), a gap smaller than one run's seed standard deviation is flagged: single runs
could not tell the options apart.

The crossover (`Recommendation.crossover`): the budget where the verdict flips, from the gap
g(C) = best raw loss - best cleaned loss (every tier charged its cleaning at C; per sample, its own
best cleaned tier). The range runs from the largest fitted run's compute (the budget / 100
without one; the budget itself if smaller) to 100x the budget: below the largest run the sweep's
own runs already say which tier wins, and 100x above shows whether a larger budget would change
the answer. On a geometric grid of 40 budgets over it, the flip is the first change of sign of g,
refined by 10 bisections in log C between its two grid budgets; for the point estimate and,
vectorised, for every bootstrap sample (all budgets x samples in one search per tier: a 48-point
grid over each row's own log N range, then golden-section refinement). The direction is the point
estimate's first flip (else the one most samples make); `share_crossing` is the share of samples
whose verdict flips in that direction within the range, and `interval` the 95% percentile interval
of their first such flip. `curves` keeps, on the same grid, each tier's best loss (the point
estimate and the samples' 95% interval) and the share of samples in which cleaning wins: the
report's crossover figure.

Next experiments (a heuristic, documented here): the verdict is a comparison between the raw tier
and the best cleaned tier at a budget beyond the data. Candidate runs sit at `n_steps` training
budgets geometrically spaced between the largest run's compute and the target budget (both
excluded), at each contending tier's point-estimate optimal N for that compute (no cleaning
charge: the build's tiers already exist) on the build's pools. At each budget the pair of runs
(raw, best cleaned) would measure the loss gap; the candidates are ranked by the bootstrap
spread (95% percentile width) of that predicted gap: where the fitted laws disagree most, a
measurement moves the verdict most. Larger runs are usually more informative and always costlier;
the list reports both. When the fit gives the noise of one run (its error model's run scatter
sigma, else the seed noise over the loss), the pairs are ranked instead by expected information
per FLOP, to first order: with Sigma the bootstrap samples' covariance, g the least-squares
regression of the samples' gaps at the target on their parameters (Var gap ~ g' Sigma g), and J the
pair's log-loss gradients (central differences), a pair removes
v' (sigma^2 I + J' Sigma J)^-1 v, v = J' Sigma g, of the gap's variance (the Gaussian update of
Sigma by two runs); that over the pair's FLOPs ranks it, and `gap_sd` / `gap_sd_after` say how much
nearer the verdict it would bring. `toml` / `toml_grid` are ready `[design]` snippets for `scaler plan/run`.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from scaler.errors import ParameterError
from scaler.fit.compute import SIX_ND, Compute, max_log_n, minimise_log_n
from scaler.fit.data import json_safe
from scaler.fit.laws import repeated_tokens
from scaler.fit.predict import EXTRAPOLATION_REFUSE, EXTRAPOLATION_WARN, Z95, ErrorModel, FittedRange, law_disagreement
from scaler.fit.result import SweepFit
from scaler.fit.stats import order_probability, percentile_interval

__all__ = [
    "PUBLISHED_R_D_STAR",
    "EXTRAPOLATION_WARN",
    "EXTRAPOLATION_REFUSE",
    "TierOption",
    "OptionResult",
    "Experiment",
    "Recommendation",
    "ExtrapolationRefused",
    "to_flops",
    "tier_options_from_report",
    "recommend",
    "recommend_from_fit",
]

PUBLISHED_R_D_STAR = 15.4  # Muennighoff et al. 2023, R_D* = 15.39
MIN_FLOPS_PER_PARAM_TOKEN = 6.0  # the search's largest N is C / 6: one token per parameter under 6ND
CROSSOVER_BUDGETS = 40  # the crossover's geometric grid of budgets
CROSSOVER_REACH = 100.0  # the crossover's range ends at this multiple of the budget
CROSSOVER_GRID = 48  # grid points of the crossover's N search (golden-section refinement follows) ...
CROSSOVER_ITERS = 30  # ... and its golden-section steps (the bracket shrinks 0.618^30 ~ 5e-7 times)
CROSSOVER_BISECTIONS = 10  # bisections of a flip's grid interval in log C (to 1/1024 of a grid step)
SETTLED = 0.9  # a verdict is settled when this share of bootstrap samples choose its kind of spend
Z_SETTLED = 1.2815515655446004  # the normal quantile of SETTLED: |gap| / sd above it settles the verdict
SETTLE_SEEDS = (1, 2, 4, 8, 16, 32)  # seeds per run of the settling pair that `settle` tries
UNITS = {"flops": "flops", "flop": "flops", "gpu-hours": "gpu-hours", "gpu_hours": "gpu-hours",
         "gpuh": "gpu-hours", "usd": "usd", "$": "usd", "dollars": "usd"}
SPEND = {"size": "model size", "cleaning": "cleaning"}


class ExtrapolationRefused(ValueError):
    """The budget is more than EXTRAPOLATION_REFUSE times the largest fitted run's compute."""


# --------------------------------------------------------------------------------------------
# Units


def to_flops(budget: float, unit: str = "flops", peak_flops: float | None = None, mfu: float | None = None,
             usd_per_hour: float | None = None) -> float:
    """A budget in FLOPs.

    unit = flops: as is; gpu-hours: hours x 3600 x peak_flops x mfu (peak FLOP/s of one GPU and
    the measured model-FLOPs utilisation); usd: usd / usd_per_hour (one GPU's hourly price) gives
    GPU-hours, then as gpu-hours. A rate the unit needs and that is missing is a ValueError.
    """
    key = UNITS.get(str(unit).strip().lower())
    if key is None:
        raise ValueError(f"budget unit {unit!r}: expected one of flops, gpu-hours, usd")
    budget = float(budget)
    if not (math.isfinite(budget) and budget > 0):
        raise ValueError(f"budget must be a positive finite number, got {budget}")
    if key == "flops":
        return budget
    if key == "usd":
        if usd_per_hour is None or not usd_per_hour > 0:
            raise ValueError("a budget in usd needs usd_per_hour (the price of one GPU-hour, > 0)")
        budget = budget / float(usd_per_hour)
    missing = [name for name, v in (("peak_flops", peak_flops), ("mfu", mfu)) if v is None]
    if missing:
        raise ValueError(f"a budget in {key} needs {' and '.join(missing)} (peak FLOP/s of one GPU and the "
                         "measured utilisation) to convert GPU-hours to FLOPs")
    if not peak_flops > 0 or not 0 < mfu <= 1:  # type: ignore[operator]
        raise ValueError(f"peak_flops must be > 0 and mfu in (0, 1], got {peak_flops}, {mfu}")
    return budget * 3600.0 * float(peak_flops) * float(mfu)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Data


@dataclass
class TierOption:
    """One way to spend the data side of a budget.

    kappa: effective-data multiplier (raw = 1); used when the law does not fit one for `name`
    (a quality law's log_kappa_<name> wins, per bootstrap sample). yield_fraction: tokens kept /
    raw tokens. cleaning_flops_per_raw_token: the cost of producing the tier, charged on the whole
    raw pool (raw tier = 0).
    """

    name: str
    kappa: float = 1.0
    yield_fraction: float = 1.0
    cleaning_flops_per_raw_token: float = 0.0


@dataclass
class OptionResult:
    name: str
    kappa: float
    yield_fraction: float
    cleaning_flops: float
    training_flops: float
    pool_tokens: float
    feasible: bool
    reason: str = ""
    n_params: float = float("nan")
    tokens: float = float("nan")
    epochs: float = float("nan")
    loss: float = float("nan")
    loss_interval: tuple[float, float] = (float("nan"), float("nan"))  # bootstrap: the best each sample can do
    n_params_interval: tuple[float, float] = (float("nan"), float("nan"))
    win_share: float = 0.0  # share of bootstrap samples in which this option is the best
    # 95% prediction interval of the loss of the run (n_params, tokens), misspecification included
    # (the fit's error model); None without one
    loss_prediction_interval: tuple[float, float] | None = None
    # what that interval's width is made of (ErrorModel.width_terms: shares, dominant, shrink)
    interval_width: dict[str, Any] | None = None


@dataclass
class Experiment:
    tier: str
    n_params: float
    tokens: float
    flops: float
    epochs: float
    predicted_loss: float
    loss_interval: tuple[float, float]
    gap_spread: float  # 95% width of the predicted (raw - cleaned) gap at this compute
    rank: int = 0
    # what the pair at this compute would teach about the verdict's gap at the target budget
    # (linearised, module docstring): its sd now and after the pair, and the variance removed per FLOP
    gap_sd: float | None = None
    gap_sd_after: float | None = None
    information_per_flop: float | None = None


@dataclass
class Recommendation:
    budget_flops: float
    raw_tokens: float
    law: str
    r_star: float
    r_star_source: str
    n_samples: int
    options: list[OptionResult]
    raw_option: str
    best_clean: str | None
    verdict: str  # "size" | "cleaning"
    winner: str
    gap: float  # raw best loss - best cleaned loss (> 0: cleaning predicted better)
    gap_interval: tuple[float, float]
    probability: float  # share of samples whose best option is `winner`
    probability_kind: float  # share of samples in which the same kind of choice wins
    flops_convention: str = SIX_ND  # the convention of every FLOP figure (scaler.fit.compute)
    extrapolation: float | None = None  # budget / the largest fitted run's compute; None if unknown
    # {"flops", "interval", "share_crossing", "direction", "range", "throughout", "curves"} (module
    # docstring; "curves": per tier the best loss on the budget grid with its interval, and the share
    # of samples in which cleaning wins, for the report's crossover figure);
    # None without a cleaned tier
    crossover: dict[str, Any] | None = None
    seed_noise_nats: float | None = None  # sd of one run's loss between seeds, when the fit measured it
    experiments: list[Experiment] = field(default_factory=list)
    toml: str = ""
    toml_grid: str = ""
    notes: list[str] = field(default_factory=list)
    settle: str = ""  # whether the verdict is settled (>= SETTLED of samples) and, if not, what would settle it
    # the feasible tiers ordered by predicted loss at this budget (each at its best N), best first, with the
    # share of bootstrap samples that order them all the same way and each adjacent pair's share
    ranking: dict[str, Any] | None = None

    @property
    def verdict_text(self) -> str:
        return f"spend on cleaning (tier {self.winner})" if self.verdict == "cleaning" else "spend on model size"

    def option(self, name: str) -> OptionResult:
        return next(o for o in self.options if o.name == name)

    def to_json(self) -> dict[str, Any]:
        out = json_safe(asdict(self))
        out["verdict_text"] = self.verdict_text
        return out

    def lines(self) -> list[str]:
        """Plain-language summary for the CLI and the report."""
        reach = "" if self.extrapolation is None else f", {self.extrapolation:.3g}x the largest fitted run"
        out = [f"budget {self.budget_flops:.3g} FLOPs ({self.flops_convention}){reach}, raw pool "
               f"{self.raw_tokens:.3g} tokens, law {self.law} ({self.n_samples} bootstrap samples; repetition "
               f"R_D* = {self.r_star:.3g}, {self.r_star_source})"]
        for o in self.options:
            head = (f"  {o.name}: kappa {o.kappa:.3g}, yield {o.yield_fraction:.1%}, "
                    f"cleaning {o.cleaning_flops:.3g} FLOPs ({o.cleaning_flops / self.budget_flops:.1%} of budget)")
            if not o.feasible:
                out.append(head + f" -- infeasible: {o.reason}")
                continue
            predicted = "" if o.loss_prediction_interval is None else (
                f", 95% prediction interval of that run [{o.loss_prediction_interval[0]:.4f}, "
                f"{o.loss_prediction_interval[1]:.4f}] (misspecification included)")
            out.append(head + f"; best N {o.n_params:.3g}, D {o.tokens:.3g} ({o.epochs:.2f} epochs of {o.pool_tokens:.3g}), "
                       f"loss {o.loss:.4f} [{o.loss_interval[0]:.4f}, {o.loss_interval[1]:.4f}] (bootstrap)"
                       f"{predicted}, "
                       f"best in {o.win_share:.0%} of samples")
        if self.best_clean is None:
            out.append(f"verdict: {self.verdict_text} (no feasible cleaned tier)")
        else:
            out.append(f"verdict: {self.verdict_text}: predicted loss {self.option(self.raw_option).loss:.4f} "
                       f"({self.raw_option}) vs {self.option(self.best_clean).loss:.4f} ({self.best_clean}), "
                       f"gap {self.gap:+.4f} nats [{self.gap_interval[0]:+.4f}, {self.gap_interval[1]:+.4f}] "
                       f"(positive favours cleaning)")
            out.append(f"probability the verdict holds: {self.probability:.0%} of bootstrap samples pick "
                       f"{self.winner}; {self.probability_kind:.0%} pick the same kind of spend")
        if self.settle:
            out.append(self.settle)
        if self.ranking is not None:
            pairs = ", ".join(f"{p['better']} < {p['worse']} in {p['probability']:.0%}" for p in self.ranking["pairs"])
            out.append(f"predicted order at this budget: {' < '.join(self.ranking['order'])} (loss, best first) in "
                       f"{self.ranking['probability']:.0%} of bootstrap samples ({pairs})")
        width = self.option(self.winner).interval_width
        if width is not None:
            out.append(f"{self.winner}'s 95% prediction interval is mostly {width['dominant'].replace('_', ' ')} "
                       f"({width['shares'][width['dominant']]:.0%} of its variance); what would shrink it: {width['shrink']}")
        if self.crossover is not None:
            out.append(self._crossover_line())
        if self.experiments:
            informed = self.experiments[0].information_per_flop is not None
            out.append("next experiments (ranked by " + ("the gap variance each pair would remove per FLOP" if informed
                       else "the bootstrap spread of the predicted gap") + "):")
            for e in self.experiments[:6]:
                what = (f"gap sd {e.gap_sd:.4f} -> {e.gap_sd_after:.4f} nats" if informed
                        else f"gap spread {e.gap_spread:.4f}")
                out.append(f"  #{e.rank} {e.tier}: N {e.n_params:.3g}, D {e.tokens:.3g} ({e.flops:.3g} FLOPs, "
                           f"{e.epochs:.2f} epochs), predicted loss {e.predicted_loss:.4f}, {what}")
        out.extend(f"note: {n}" for n in self.notes)
        return out

    def _crossover_line(self) -> str:
        x = self.crossover or {}
        lo, hi = x["range"]
        span = f"between {lo:.3g} and {hi:.3g} FLOPs"
        if x["flops"] is not None:
            before, after = x["direction"].split("->")
            line = (f"crossover: the verdict turns from {SPEND[before]} to {SPEND[after]} at a budget of about "
                    f"{x['flops']:.3g} FLOPs (searched {span})")
        else:
            line = f"no crossover {span}: the verdict is {SPEND[x['throughout']]} throughout"
        if self.n_samples and x["direction"] is not None and x["share_crossing"] > 0:
            before, after = x["direction"].split("->")
            line += (f"; {x['share_crossing']:.0%} of bootstrap samples turn from {SPEND[before]} to {SPEND[after]} "
                     f"in this range, 95% of them between {x['interval'][0]:.3g} and {x['interval'][1]:.3g} FLOPs")
        elif self.n_samples:
            line += "; no bootstrap sample's verdict flips in this range"
        return line


# --------------------------------------------------------------------------------------------
# The law, as NumPy arrays over parameter samples


@dataclass(frozen=True)
class LawSamples:
    """The fitted law at S parameter rows (`thetas`, (S, P)) and what a run on one tier feeds it.

    Every loss is the law's own formula (`Law.predict_log`, theta as (P, S, 1) so each row is one
    sample), on the columns of a run that trains on `tier` alone from a pool of `pool` unique
    tokens: a quality law gets w_tier = 1 (and U_t = pool when it fits repetition); a law with a U
    column (data_constrained) gets U = pool; a law with neither sees its tokens repeated,
    D' = repeated_tokens(D, pool, R_D*) with the published R_D* (Muennighoff et al. 2023), times
    the option's kappa (1 unless given)."""

    law: Any
    thetas: np.ndarray
    kappa: Mapping[str, float]  # each option's kappa, used by a law that fits none
    r_star: np.ndarray  # (S,) the repetition constant: the law's fitted R_D*, else the published one
    r_star_source: str

    @classmethod
    def of(cls, law: Any, thetas: np.ndarray, tiers: Sequence[TierOption]) -> LawSamples:
        thetas = np.asarray(thetas, dtype=np.float64).reshape(len(thetas), -1)
        family, names = law.spec.get("family"), list(law.param_names)
        wanted = set(law.columns) - {"N", "D", "U"} - ({f"{p}_{t}" for t in law.spec.get("tiers", ()) for p in "wU"}
                                                       if family == "quality" else set())
        if wanted:
            raise ValueError(f"law {law.name!r} needs columns {sorted(wanted)} that a tier's run does not give; "
                             "recommend needs a law of N and D (chinchilla, kaplan, overtrain, broken, "
                             "data_constrained) or the quality law")
        if family == "quality" and {t.name for t in tiers} - set(law.spec["tiers"]):
            raise ValueError(f"tiers {sorted({t.name for t in tiers} - set(law.spec['tiers']))} are not the quality "
                             f"law's ({', '.join(law.spec['tiers'])})")
        fitted = "log_R_D_star" in names
        r_star = np.exp(thetas[:, names.index("log_R_D_star")]) if fitted else np.full(len(thetas), PUBLISHED_R_D_STAR)
        return cls(law, thetas, {t.name: t.kappa for t in tiers}, r_star,
                   "fitted" if fitted else "published (Muennighoff et al. 2023)")

    def __len__(self) -> int:
        return len(self.thetas)

    def take(self, rows: Any) -> LawSamples:
        """These samples at `rows` (a slice, or indices that may repeat)."""
        return replace(self, thetas=self.thetas[rows], r_star=self.r_star[rows])

    def kappa_of(self, tier: str) -> float:
        """The tier's kappa at row 0 (the point estimate): fitted by a quality law, else the option's."""
        name = f"log_kappa_{tier}"
        return float(np.exp(self.thetas[0, self.law.param_names.index(name)])) if name in self.law.param_names \
            else float(self.kappa[tier])

    def loss_nd(self, log_n: np.ndarray, tokens: Any, pool: float, tier: str) -> np.ndarray:
        """Predicted loss (S, K) of runs on `tier` alone at log_n (S, K) and `tokens` (broadcasting
        to it), each row under its own sample."""
        spec, r_star = self.law.spec, self.r_star[:, None]
        cols: dict[str, Any] = {"N": np.exp(log_n)}
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if spec.get("family") == "quality":
                cols.update({f"w_{t}": float(t == tier) for t in spec["tiers"]})
                if spec.get("pools"):
                    cols.update({"D": tokens, **{f"U_{t}": pool for t in spec["tiers"]}})
                else:
                    cols["D"] = repeated_tokens(tokens, pool, r_star, xp=np)
            elif "U" in self.law.columns:
                cols.update(D=tokens, U=pool)
            else:
                cols["D"] = self.kappa[tier] * repeated_tokens(tokens, pool, r_star, xp=np)
            return np.exp(self.law.predict_log(self.thetas.T[:, :, None], cols, np))


def _loss(log_n: np.ndarray, c_train: Any, pool: float, p: LawSamples, tier: str, compute: Compute) -> np.ndarray:
    """The loss of runs that spend `c_train` FLOPs (a number, or (S, 1) per row) at log_n (S, K):
    D = compute.tokens(N, c_train)."""
    return p.loss_nd(log_n, compute.tokens(np.exp(log_n), c_train), pool, tier)


def _loss_at(n: float, d: float, pool: float, p: LawSamples, tier: str) -> np.ndarray:
    """Per-sample loss of one fixed run (N, D) on `tier` with pool `pool`: (S,). A fixed run's
    loss does not depend on the compute convention."""
    return p.loss_nd(np.full((len(p), 1), math.log(n)), d, pool, tier)[:, 0]


def _optimise(c_train: float, pool: float, p: LawSamples, tier: str, compute: Compute
              ) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, the log N in [0, log(C/6)] minimising the loss: (log_n (S,), loss (S,))."""
    return minimise_log_n(lambda x: _loss(x, c_train, pool, p, tier, compute), 0.0, float(max_log_n(c_train)),
                          len(p))


# --------------------------------------------------------------------------------------------
# The crossover


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


# --------------------------------------------------------------------------------------------
# The recommendation


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


def _prediction_interval(o: OptionResult, samples: LawSamples, compute: Compute, errors: ErrorModel,
                         fitted: FittedRange, ensemble: Sequence[Mapping[str, Any]] | None = None
                         ) -> tuple[tuple[float, float], dict[str, Any]]:
    """95% interval of the loss of the run (o.n_params, o.tokens) on o's tier (scaler.fit.predict's
    error model at the run's reach beyond the fitted runs, sd_boot the samples' spread of log L at
    that run, and under `--law auto` the candidate laws' disagreement there, as `predict` adds it),
    and what its width is made of."""
    log_samples = np.log(_loss_at(o.n_params, o.tokens, o.pool_tokens, samples, o.name))
    log_samples = log_samples[np.isfinite(log_samples)]
    sd_boot = float(np.std(log_samples)) if len(log_samples) > 1 else 0.0
    sd_laws = float(law_disagreement(ensemble, {"N": [o.n_params], "D": [o.tokens]})[0]) if ensemble else 0.0
    reach = float(fitted.reach(o.n_params, o.tokens, compute.flops(o.n_params, o.tokens)))
    lo, hi = errors.interval(o.loss, sd_boot, reach, sd_laws)
    return (float(lo), float(hi)), errors.width_terms(sd_boot, reach, sd_laws)


def _fitted_span(smallest: float | None, largest: float, compute: Compute) -> str:
    return FittedRange(math.inf, math.inf, largest, smallest or 0.0).span_text(compute.convention)


def recommend(theta_samples: np.ndarray, theta: np.ndarray, law: Any, tiers: list[TierOption], budget_flops: float,
              raw_tokens: float, *, raw: str | None = None, largest_run_flops: float | None = None,
              n_steps: int = 4, level: float = 0.95, compute: Compute | None = None,
              smallest_run_flops: float | None = None, seed_noise_nats: float | None = None,
              error_model: ErrorModel | None = None, fitted_range: FittedRange | None = None,
              crossover_budgets: int = CROSSOVER_BUDGETS, experiment_flops: Sequence[float] | None = None,
              ensemble: Sequence[Mapping[str, Any]] | None = None) -> Recommendation:
    """Best (N, D) per tier under `budget_flops` and the verdict size vs cleaning (module docstring).

    theta_samples: (B, P) bootstrap parameter samples of `law` (may be empty: then the
    probabilities are those of the point estimate alone); theta: (P,) the point estimate.
    raw: the reference tier ("raw" if present, else tiers[0]). compute: the FLOP convention of the
    budget and of the law's fit (None: 6ND). largest_run_flops (and smallest_run_flops, for the
    note): the fitted runs' compute, where the extrapolation is measured from and the
    next-experiment ladder and the crossover's range start (default budget / 100, no
    extrapolation figure). seed_noise_nats: one run's seed-to-seed loss sd (the fit's
    seed_noise). error_model and fitted_range (the fit's): add each option's prediction interval.
    crossover_budgets: the crossover's grid (0: no crossover). experiment_flops: the training budgets
    of the candidate next experiments (default: `n_steps` between the largest run and the budget).
    """
    compute = compute or Compute(SIX_ND)
    budget_flops = float(budget_flops)
    raw_tokens = float(raw_tokens)
    if not (math.isfinite(budget_flops) and budget_flops > 0):
        raise ValueError(f"budget_flops must be positive, got {budget_flops}")
    if not (raw_tokens > 0):
        raise ValueError(f"raw_tokens must be positive, got {raw_tokens}")
    if not tiers:
        raise ValueError("recommend needs at least one tier")
    names = [t.name for t in tiers]
    if len(set(names)) != len(names):
        raise ValueError(f"tier names must be distinct: {names}")
    raw = raw or ("raw" if "raw" in names else names[0])
    if raw not in names:
        raise ValueError(f"raw tier {raw!r} is not among the tiers {names}")
    theta = np.asarray(theta, dtype=np.float64).reshape(1, -1)
    ts = np.asarray(theta_samples, dtype=np.float64).reshape(-1, theta.shape[1]) if np.size(theta_samples) else \
        np.zeros((0, theta.shape[1]))
    ts = ts[np.isfinite(ts).all(axis=1)]
    S = len(ts)
    p = LawSamples.of(law, np.vstack([theta, ts]), tiers)  # row 0: point estimate
    by_name = {t.name: t for t in tiers}

    options: list[OptionResult] = []
    sample_losses: dict[str, np.ndarray] = {}
    for t in tiers:
        if not (0 < t.yield_fraction <= 1.0 + 1e-9) or t.cleaning_flops_per_raw_token < 0 or t.kappa <= 0:
            raise ValueError(f"tier {t.name!r}: yield in (0, 1], cleaning cost >= 0 and kappa > 0 needed")
        cc = t.cleaning_flops_per_raw_token * raw_tokens
        ct = budget_flops - cc
        pool = t.yield_fraction * raw_tokens
        kappa = p.kappa_of(t.name)
        res = OptionResult(name=t.name, kappa=kappa, yield_fraction=t.yield_fraction, cleaning_flops=cc,
                           training_flops=max(ct, 0.0), pool_tokens=pool, feasible=ct >= MIN_FLOPS_PER_PARAM_TOKEN)
        if not res.feasible:
            res.reason = (f"cleaning {cc:.3g} FLOPs ({t.cleaning_flops_per_raw_token:.3g}/raw token x {raw_tokens:.3g}) "
                          f"{'exceeds' if cc > budget_flops else 'uses all of'} the budget {budget_flops:.3g}")
            sample_losses[t.name] = np.full(S, np.inf)
            options.append(res)
            continue
        log_n, loss = _optimise(ct, pool, p, t.name, compute)
        res.n_params = float(np.exp(log_n[0]))
        res.tokens = float(compute.tokens(res.n_params, ct))
        res.epochs = res.tokens / pool
        res.loss = float(loss[0])
        if S:
            res.loss_interval = percentile_interval(loss[1:], level)
            res.n_params_interval = percentile_interval(np.exp(log_n[1:]), level)
        else:
            res.loss_interval = (res.loss, res.loss)
            res.n_params_interval = (res.n_params, res.n_params)
        if error_model is not None and fitted_range is not None:
            res.loss_prediction_interval, res.interval_width = _prediction_interval(
                res, p.take(slice(1, None)), compute, error_model, fitted_range, ensemble)
        sample_losses[t.name] = np.where(np.isfinite(loss[1:]), loss[1:], np.inf)
        options.append(res)

    feasible = [o for o in options if o.feasible]
    cleaned = [o for o in feasible if o.name != raw]
    raw_opt = next(o for o in options if o.name == raw)
    best_clean = min(cleaned, key=lambda o: o.loss) if cleaned else None
    if best_clean is not None and best_clean.loss < raw_opt.loss:
        verdict, winner = "cleaning", best_clean.name
    else:
        verdict, winner = "size", raw
    notes: list[str] = []
    if not raw_opt.feasible:
        raise ValueError(f"the raw tier {raw!r} is infeasible: {raw_opt.reason}")

    # bootstrap: which option wins in each sample
    gap, gap_iv, prob, prob_kind = float("nan"), (float("nan"), float("nan")), 1.0, 1.0
    ranking = None
    if best_clean is not None:
        gap = raw_opt.loss - best_clean.loss
    if S:
        order = [o.name for o in options]
        mat = np.column_stack([sample_losses[n] for n in order])  # (S, T)
        ok = np.isfinite(mat[:, order.index(raw)])
        best = np.argmin(mat, axis=1)
        for j, o in enumerate(options):
            o.win_share = float(np.mean(best[ok] == j)) if ok.any() else 0.0
        prob = float(np.mean(best[ok] == order.index(winner))) if ok.any() else float("nan")
        if cleaned:
            clean_idx = [order.index(o.name) for o in cleaned]
            clean_wins = mat[:, clean_idx].min(axis=1) < mat[:, order.index(raw)]
            prob_kind = float(np.mean(clean_wins[ok] == (verdict == "cleaning"))) if ok.any() else float("nan")
            assert best_clean is not None
            gap_iv = percentile_interval((mat[:, order.index(raw)] - mat[:, order.index(best_clean.name)])[ok], level)
        else:
            prob_kind = prob
        if ok.sum() < S:
            notes.append(f"{S - int(ok.sum())} bootstrap samples gave no finite loss and were left out")
        ranked = [j for j, o in enumerate(options) if o.feasible]
        if len(ranked) >= 2:
            idx, p_order, p_pairs = order_probability([options[j].loss for j in ranked], mat[ok][:, ranked])
            names = [options[ranked[i]].name for i in idx]
            ranking = {"order": names, "probability": p_order,
                       "pairs": [{"better": a, "worse": b, "probability": q}
                                 for a, b, q in zip(names[:-1], names[1:], p_pairs, strict=True)]}
    else:
        for o in options:
            o.win_share = float(o.name == winner)
        if best_clean is not None:
            gap_iv = (gap, gap)
        notes.append("no bootstrap samples: probabilities are those of the point estimate alone")
    for o in options:
        if not o.feasible:
            notes.append(f"tier {o.name} is infeasible at this budget: {o.reason}")
        elif o.n_params > 0.97 * o.training_flops / MIN_FLOPS_PER_PARAM_TOKEN or o.n_params < 1.5:
            notes.append(f"tier {o.name}: the optimum sits at the edge of the search range (the law has no interior "
                         "optimum here)")
    if raw_opt.epochs > 1 or (best_clean is not None and best_clean.epochs > 1):
        notes.append("some options repeat their pool (epochs > 1): the repetition model (R_D* = "
                     f"{float(p.r_star[0]):.3g}, {p.r_star_source}) decides part of the answer")

    extrapolation = budget_flops / float(largest_run_flops) if largest_run_flops else None
    if largest_run_flops and extrapolation > EXTRAPOLATION_WARN:  # type: ignore[operator]
        notes.append(f"{_fitted_span(smallest_run_flops, float(largest_run_flops), compute)}; this budget is "
                     f"{extrapolation:.3g}x beyond the largest: the law is extrapolated far past its runs")
    if seed_noise_nats is not None and best_clean is not None and abs(gap) < seed_noise_nats:
        notes.append(f"the predicted gap ({gap:+.4f} nats) is inside the seed-to-seed noise ({seed_noise_nats:.4f} "
                     "nats, the sd of one run's loss between seeds): single runs could not tell the options apart")

    c_lo = float(largest_run_flops) if largest_run_flops else budget_flops / 100.0
    crossover = None
    if len(tiers) > 1 and crossover_budgets >= 2:
        crossover, n_flips = _crossover(p, tiers, raw, raw_tokens, min(c_lo, budget_flops),
                                        CROSSOVER_REACH * budget_flops, compute, crossover_budgets, level)
        if n_flips > 1:
            notes.append(f"the point estimate's verdict flips {n_flips} times between {crossover['range'][0]:.3g} and "
                         f"{crossover['range'][1]:.3g} FLOPs; the crossover reported is the first")

    contenders = [raw] + ([best_clean.name] if best_clean is not None else [])
    ladder = list(experiment_flops) if experiment_flops is not None else experiment_ladder(c_lo, budget_flops, n_steps)
    information = None
    sigma_log = error_model.sigma_run if error_model is not None else (
        seed_noise_nats / raw_opt.loss if seed_noise_nats else None)
    if S and best_clean is not None and sigma_log:
        information = gap_information(law, theta[0], ts, mat[:, order.index(raw)] - mat[:, order.index(best_clean.name)],
                                      tiers, raw_tokens, sigma_log)
    exps = _experiments(p, by_name, contenders, raw_tokens, ladder, compute, information) if S else []
    settle = _settle(verdict, prob_kind, gap, gap_iv, raw_opt.loss, exps, information) if S and best_clean else ""
    iso, grid = _snippets(exps, contenders)
    return Recommendation(
        budget_flops=budget_flops, raw_tokens=raw_tokens, law=str(getattr(law, "name", "?")),
        r_star=float(p.r_star[0]), r_star_source=p.r_star_source, n_samples=S, options=options,
        raw_option=raw, best_clean=best_clean.name if best_clean is not None else None, verdict=verdict,
        winner=winner, gap=gap, gap_interval=gap_iv, probability=prob, probability_kind=prob_kind,
        flops_convention=compute.convention, extrapolation=extrapolation, crossover=crossover,
        seed_noise_nats=seed_noise_nats, experiments=exps, toml=iso, toml_grid=grid, notes=notes, settle=settle,
        ranking=ranking)


# --------------------------------------------------------------------------------------------
# From a fit (and a data build, or yields and costs given by hand)


def _tier_chain(report: dict[str, Any], tier: str) -> list[str]:
    chain, seen = [], set()
    t: str | None = tier
    while t is not None and t not in seen:
        seen.add(t)
        chain.append(t)
        t = (report.get("tiers", {}).get(t) or {}).get("base")
    return chain


def tier_options_from_report(report: dict[str, Any] | str | Path, tiers: Sequence[str], tokenizer: str | None = None,
                             cleaning_flops_per_second: float | None = None,
                             kappas: dict[str, float] | None = None) -> tuple[list[TierOption], dict[str, Any]]:
    """TierOptions from a `data build` report.json, and facts about the build.

    yield: the tier's training tokens / the raw tier's for `tokenizer` (else `bytes_yield`).
    cleaning cost per raw token: the FLOPs of every step on the tier's path (the tier and its
    bases), plus the steps' seconds x `cleaning_flops_per_second` when given, over the raw tokens
    the build read (the raw tier's bytes / bytes per token). The perplexity step's FLOPs include
    training its reference model: a fixed cost, here spread over this build's pool.
    """
    if not isinstance(report, dict):
        report = json.loads(Path(report).read_text())
    rtiers = report.get("tiers", {})
    if "raw" not in rtiers:
        raise ValueError("report.json: no raw tier")
    toks = report.get("tokenizers", {}) or {}
    if tokenizer is None and toks:
        tokenizer = "bytes" if "bytes" in toks and len(toks) > 1 else next(iter(toks))
    tok = toks.get(tokenizer, {}) if tokenizer else {}
    ttiers = tok.get("tiers", {})
    raw_train_tokens = float(ttiers["raw"]["tokens"]) if "raw" in ttiers else float(rtiers["raw"].get(
        "bytes_train_tokens", rtiers["raw"]["train_bytes"]))
    bpt = float(ttiers.get("raw", {}).get("bytes_per_token", 1.0)) or 1.0
    raw_read = float(rtiers["raw"].get("bytes", rtiers["raw"].get("train_bytes"))) / bpt
    out = []
    for name in tiers:
        if name not in rtiers:
            raise ValueError(f"report.json: the store's tier {name!r} is not in the build (tiers: {sorted(rtiers)})")
        if name in ttiers and "raw" in ttiers:
            y = float(ttiers[name]["tokens"]) / raw_train_tokens
        else:
            y = float(rtiers[name].get("bytes_yield", rtiers[name].get("yield_bytes", 1.0)))
        chain = set(_tier_chain(report, name)) - {"raw"}
        flops = sum(float(s.get("flops") or 0.0) for s in report.get("steps", []) if s.get("tier") in chain)
        if cleaning_flops_per_second:
            flops += float(cleaning_flops_per_second) * sum(float(s.get("seconds") or 0.0)
                                                            for s in report.get("steps", []) if s.get("tier") in chain)
        kappa = (kappas or {}).get(name, 1.0)
        out.append(TierOption(name=name, kappa=kappa, yield_fraction=min(y, 1.0),
                              cleaning_flops_per_raw_token=flops / raw_read if name != "raw" else 0.0))
    facts = {"tokenizer": tokenizer, "raw_train_tokens": raw_train_tokens, "raw_tokens_read": raw_read}
    return out, facts


def _smallest_run_flops(entry: Mapping[str, Any], fit: Mapping[str, Any]) -> float | None:
    """The smallest fitted run's compute, where the fit records it (older fits do not)."""
    for source in (entry.get("fitted_range") or {}, entry, fit):
        for key in ("flops_min", "smallest_run_flops"):
            if source.get(key):
                return float(source[key])
    return None


def recommend_from_fit(fit: Mapping[str, Any], data_report: Mapping[str, Any] | None = None, budget_flops: float | None = None,
                       raw_tokens: float | None = None, tokenizer: str | None = None,
                       cleaning_flops_per_second: float | None = None, n_steps: int = 4, *,
                       yields: Mapping[str, float] | None = None, cleaning_costs: Mapping[str, float] | None = None,
                       pools: Mapping[str, float] | None = None, experiment_flops: Sequence[float] | None = None,
                       crossover_budgets: int = CROSSOVER_BUDGETS, force: bool = False,
                       data_source: str = "the data build's report.json") -> Recommendation:
    """The recommendation from a fit: a sweep's (`scaler.fit_sweep` / `fit_store`, i.e. fit.json:
    its quality law, or the Chinchilla fit of a store with runs on one tier) or one law's entry
    (`scaler.fit.pipeline.fit`, e.g. a quality law fitted on a table with a group column). The law's
    point estimate and bootstrap samples are used as fitted (no refit), under the fit's compute
    convention (6ND for a fit that does not record one); `budget_flops` is in that convention.

    Tier options: with `data_report` (a `data build`'s report.json as a dict, read by
    `scaler.session.recommend` from a build folder; `data_source` names it in the notes), the
    build's yields and cleaning costs (raw pool: raw's training tokens unless `raw_tokens`); without one,
    `raw_tokens` is required and every tier of the law has yield 1 and no cleaning cost unless
    `yields` (tokens kept / raw tokens) or `cleaning_costs` (FLOPs per raw token) say otherwise.
    Given yields and costs override the build's. `pools` (tokens per tier, the reference tier's
    among them: a sweep's pools cut from one raw pool, `data.raw_pool_tokens`) set the raw pool to
    the reference tier's and each yield to pool / raw pool. A budget beyond EXTRAPOLATION_REFUSE x
    the largest fitted run is refused (`ExtrapolationRefused`) unless `force`.
    """
    from scaler.fit import laws

    if isinstance(data_report, (str, Path)):
        raise TypeError(f"recommend_from_fit: data_report {str(data_report)!r}: expected the build's report.json as a "
                        "dict; for a build folder call scaler.recommend(fit, data_dir, ...) (scaler.session.recommend)")
    if budget_flops is None:
        raise ValueError("budget_flops is required")
    budget_flops = float(budget_flops)
    notes: list[str] = []
    entry, single_tier = SweepFit(fit).decision_law()
    if single_tier is not None:
        notes.append(f"the store has runs on the {single_tier} tier only: no cleaned tier to compare")
    if "error" in entry:
        raise ValueError(f"the fit cannot be used: {entry['error']}")
    law = laws.law_from_spec(entry["spec"])
    names = list(law.spec.get("tiers") or [single_tier or "raw"])
    reference = law.spec.get("reference", names[0])
    names.sort(key=lambda t: t != reference)  # the reference tier first, as the options are listed
    if not entry.get("converged", True):
        notes.append(f"the law's fit did not converge ({entry.get('stopped')})")

    compute = Compute.from_json(entry.get("compute") or fit.get("compute"))
    fitted_raw = entry.get("fitted_range")
    fitted = FittedRange.from_json(fitted_raw, float(fitted_raw["flops_max"])) if fitted_raw else None
    largest = entry.get("largest_run_flops") or fit.get("largest_run_flops") or (fitted.flops_max if fitted else None)
    if not largest:
        raise ValueError("the fit records no largest run's compute (largest_run_flops)")
    largest = float(largest)
    smallest = _smallest_run_flops(entry, fit)
    factor = budget_flops / largest
    if factor > EXTRAPOLATION_REFUSE:
        if not force:
            raise ExtrapolationRefused(
                f"budget {budget_flops:.3g} {compute.label} is {factor:.3g}x the largest fitted run "
                f"({_fitted_span(smallest, largest, compute)}), beyond the {EXTRAPOLATION_REFUSE:.0e}x this "
                "recommendation trusts: pass force=True (--force) to answer anyway")
        notes.append(f"answered beyond {EXTRAPOLATION_REFUSE:.0e}x the largest fitted run because forced")

    for what, given in (("yields", yields), ("cleaning_costs", cleaning_costs)):
        unknown = sorted(set(given or {}) - set(names))
        if unknown:
            raise ValueError(f"{what}: unknown tier(s) {', '.join(unknown)}; the law's tiers are {', '.join(names)}")
    derived = entry.get("derived", {})
    kappas = {t: float(derived.get(f"kappa_{t}") or 1.0) for t in names}
    if data_report is None:
        if raw_tokens is None:
            raise ParameterError("{raw_tokens} U is needed without a data build", "raw_tokens")
        tiers = [TierOption(t, kappa=kappas[t]) for t in names]
        source = "no data build: yields and cleaning costs as given (default yield 100%, no cleaning cost)"
    else:
        report = dict(data_report)
        tiers, facts = tier_options_from_report(report, names, tokenizer, cleaning_flops_per_second, kappas)
        skipped = sorted(set(report.get("tiers", {})) - set(names))
        if skipped:
            notes.append(f"tiers built but not in the sweep (no kappa fitted): {', '.join(skipped)}")
        raw_tokens = raw_tokens if raw_tokens is not None else facts["raw_train_tokens"]
        source = (f"cleaning costs from {data_source} (tokenizer {facts['tokenizer']}, "
                  f"{facts['raw_tokens_read']:.3g} raw tokens read)")
    if pools:
        missing = [t.name for t in tiers if t.name not in pools]
        if missing:
            raise ValueError(f"pools: no pool for tier {missing[0]!r}; the law's tiers are {', '.join(names)}")
        raw_tokens = float(pools[reference])
        for t in tiers:
            t.yield_fraction = float(pools[t.name]) / raw_tokens
        source += (f"; pools cut from one raw pool of {raw_tokens:.3g} tokens: "
                   + ", ".join(f"{t.name} {float(pools[t.name]):.3g}" for t in tiers))
    for t in tiers:
        t.yield_fraction = float((yields or {}).get(t.name, t.yield_fraction))
        t.cleaning_flops_per_raw_token = float((cleaning_costs or {}).get(t.name, t.cleaning_flops_per_raw_token))
    if yields or cleaning_costs:
        given = [f"{t.name} yield {t.yield_fraction:.1%}, {t.cleaning_flops_per_raw_token:.3g} FLOPs/raw token"
                 for t in tiers if t.name in (yields or {}) or t.name in (cleaning_costs or {})]
        source += f"; given: {'; '.join(given)}"

    theta = np.asarray(entry["theta"], dtype=np.float64)
    samples = np.asarray(entry.get("bootstrap_theta") or np.zeros((0, law.n_params)), dtype=np.float64)
    errors = ErrorModel.from_json(entry["error_model"]) if entry.get("error_model") else None
    rec = recommend(samples, theta, law, tiers, budget_flops, float(raw_tokens), raw=reference,
                    largest_run_flops=largest, n_steps=n_steps, compute=compute, smallest_run_flops=smallest,
                    seed_noise_nats=(entry.get("seed_noise") or {}).get("sd_nats"), error_model=errors,
                    fitted_range=fitted, experiment_flops=experiment_flops, crossover_budgets=crossover_budgets,
                    ensemble=entry.get("ensemble"))
    rec.notes = notes + rec.notes + [source]
    return rec
