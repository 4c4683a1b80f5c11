"""Budget recommendation (docs/design.md §5): spend a compute budget on model size or on cleaning?

Given a budget (FLOPs, GPU-hours at a measured throughput, or dollars), the raw token pool and,
per data tier, its effective-data multiplier kappa_t (from the fitted quality law), its yield
(tokens kept / raw tokens, measured by `data build`) and its cleaning cost (FLOPs per raw token,
measured by `data build`), find for every tier the compute-optimal (N, D), and say whether the
budget is better spent on model size (raw data, all compute on training) or on cleaning.

The model of one choice (tier t, budget C, raw pool U raw tokens):

- cleaning is charged first: Cc_t = cost_t x U (raw tier: 0); the training budget is
  C_t = C - Cc_t; an option whose cleaning alone uses the whole budget is infeasible (reported);
- the tier's unique pool is U_t = yield_t x U;
- training uses 6 N D = C_t (flops_v1's 6ND approximation, as the law's allocation does);
- repeated data counts by Muennighoff et al. 2023 (`laws.repeated_tokens`): D' = U_t + U_t R*
  (1 - exp(-R/R*)), R = D/U_t - 1 (D' = D while D <= U_t); R* = R_D* of the law where it fits
  one (quality law with pools, data_constrained), else the published R_D* = 15.4 (Muennighoff
  et al. 2023, fit on their 8.7B-token runs; a borrowed constant, not a measurement of this data);
- the loss is the quality law's, with pools, for a run on tier t alone (`laws.tier_tokens`,
  `laws.chinchilla_log_loss`): L = E_t + A / N^alpha + B / (kappa_t D')^beta (E_t = E e^{de_t}
  for an e-shift law). For a quality law with pools this is `law.predict` on that run; for the
  other laws it adds the repetition (and the given kappa_t) they do not model. Model-parameter
  repetition (R_N* of data_constrained) is not modelled: N is free here.

For every tier the N minimising L is found by a dense grid over log N in [0, log(C_t/6)] and a
golden-section refinement, vectorised across bootstrap parameter samples; every sample
re-optimises its own N, so the 95% interval of the predicted loss is over "the best this sample
of the law can do". The verdict compares the raw tier's best (all budget on model size and raw
data) with the best cleaned tier (point estimate); its probability is the share of parameter
samples whose overall best option is the same option (`probability`), and the share in which
the same kind of choice wins (`probability_kind`: any cleaned tier beats raw, or raw beats all).

Next experiments (a heuristic, documented here): the verdict is a comparison between the raw tier
and the best cleaned tier at a budget beyond the data. Candidate runs sit at `n_steps` training
budgets geometrically spaced between the largest run's compute and the target budget (both
excluded), at each contending tier's point-estimate optimal N for that compute (no cleaning
charge: the build's tiers already exist) on the build's pools. At each budget the pair of runs
(raw, best cleaned) would measure the loss gap; the candidates are ranked by the bootstrap
spread (95% percentile width) of that predicted gap: where the fitted laws disagree most, a
measurement moves the verdict most. Larger runs are usually more informative and always costlier;
the list reports both. `toml` / `toml_grid` are ready `[design]` snippets for `scaler plan/run`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scaler.fit.data import json_safe
from scaler.fit.laws import chinchilla_log_loss, tier_tokens
from scaler.fit.stats import percentile_interval

__all__ = [
    "PUBLISHED_R_D_STAR",
    "TierOption",
    "OptionResult",
    "Experiment",
    "Recommendation",
    "to_flops",
    "tier_options_from_report",
    "recommend",
    "recommend_from_store",
]

PUBLISHED_R_D_STAR = 15.4  # Muennighoff et al. 2023, R_D* = 15.39
GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
UNITS = {"flops": "flops", "flop": "flops", "gpu-hours": "gpu-hours", "gpu_hours": "gpu-hours",
         "gpuh": "gpu-hours", "usd": "usd", "$": "usd", "dollars": "usd"}


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
    raw tokens. cleaning_flops_per_raw_token: the build's cost of producing the tier, charged on
    the whole raw pool (raw tier = 0).
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
    loss_interval: tuple[float, float] = (float("nan"), float("nan"))
    n_params_interval: tuple[float, float] = (float("nan"), float("nan"))
    win_share: float = 0.0  # share of bootstrap samples in which this option is the best


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
    experiments: list[Experiment] = field(default_factory=list)
    toml: str = ""
    toml_grid: str = ""
    notes: list[str] = field(default_factory=list)

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
        out = [f"budget {self.budget_flops:.3g} FLOPs, raw pool {self.raw_tokens:.3g} tokens, law {self.law} "
               f"({self.n_samples} bootstrap samples; repetition R_D* = {self.r_star:.3g}, {self.r_star_source})"]
        for o in self.options:
            head = (f"  {o.name}: kappa {o.kappa:.3g}, yield {o.yield_fraction:.1%}, "
                    f"cleaning {o.cleaning_flops:.3g} FLOPs ({o.cleaning_flops / self.budget_flops:.1%} of budget)")
            if not o.feasible:
                out.append(head + f" -- infeasible: {o.reason}")
                continue
            out.append(head + f"; best N {o.n_params:.3g}, D {o.tokens:.3g} ({o.epochs:.2f} epochs of {o.pool_tokens:.3g}), "
                       f"loss {o.loss:.4f} [{o.loss_interval[0]:.4f}, {o.loss_interval[1]:.4f}], "
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
        if self.experiments:
            out.append("next experiments (ranked by the bootstrap spread of the predicted gap):")
            for e in self.experiments[:6]:
                out.append(f"  #{e.rank} {e.tier}: N {e.n_params:.3g}, D {e.tokens:.3g} ({e.flops:.3g} FLOPs, "
                           f"{e.epochs:.2f} epochs), predicted loss {e.predicted_loss:.4f}, gap spread {e.gap_spread:.4f}")
        out.extend(f"note: {n}" for n in self.notes)
        return out


# --------------------------------------------------------------------------------------------
# The law, as NumPy arrays over parameter samples


def _law_arrays(law: Any, thetas: np.ndarray, tiers: Sequence[TierOption]) -> dict[str, Any]:
    names = list(law.param_names)
    consts = dict(getattr(law, "constants", {}) or {})
    S = thetas.shape[0]

    def col(name: str) -> np.ndarray | None:
        if name in names:
            return thetas[:, names.index(name)].astype(np.float64)
        if name in consts and isinstance(consts[name], (int, float)):
            return np.full(S, float(consts[name]))
        return None

    out: dict[str, Any] = {}
    for k in ("a", "b", "e", "alpha", "beta"):
        v = col(k)
        if v is None:
            raise ValueError(f"law {law.name!r} has no Chinchilla parameter {k!r}; recommend needs "
                             "chinchilla, data_constrained or quality")
        out[k] = v
    r = col("log_R_D_star")
    out["r_star"] = np.exp(r) if r is not None else np.full(S, PUBLISHED_R_D_STAR)
    out["r_star_source"] = "fitted" if r is not None else "published (Muennighoff et al. 2023)"
    out["log_kappa"], out["de"] = {}, {}
    for t in tiers:
        lk = col(f"log_kappa_{t.name}")
        out["log_kappa"][t.name] = lk if lk is not None else np.full(S, math.log(t.kappa))
        de = col(f"de_{t.name}")
        out["de"][t.name] = de if de is not None else np.zeros(S)
    return out


def _loss(log_n: np.ndarray, c_train: float, pool: float, p: dict[str, Any], tier: str) -> np.ndarray:
    """Predicted loss of runs on `tier` alone (pool `pool` unique tokens) that spend `c_train`
    FLOPs at log_n (S, K), against per-sample parameters (S,) broadcast as (S, 1): the quality
    law's chinchilla(N, kappa_t D'_t) with e + de_t (module docstring)."""
    s = lambda k: p[k][:, None]  # noqa: E731
    tokens = np.exp(math.log(c_train / 6.0) - log_n)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        d_eff = tier_tokens(tokens, 1.0, np.exp(p["log_kappa"][tier][:, None]), pool, s("r_star"), xp=np)
        e_tier = s("e") + p["de"][tier][:, None]
        return np.exp(chinchilla_log_loss(s("a"), s("b"), e_tier, s("alpha"), s("beta"), log_n, np.log(d_eff), xp=np))


def _loss_at(n: float, d: float, pool: float, p: dict[str, Any], tier: str) -> np.ndarray:
    """Per-sample loss of one fixed run (N, D) on `tier` with pool `pool`: (S,)."""
    return _loss(np.full((len(p["a"]), 1), math.log(n)), 6.0 * n * d, pool, p, tier)[:, 0]


def _optimise(c_train: float, pool: float, p: dict[str, Any], tier: str, grid: int = 480,
              iters: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, the log N in [0, log(C/6)] minimising the loss: (log_n (S,), loss (S,))."""
    S = len(p["a"])
    hi = math.log(c_train / 6.0)
    xs = np.linspace(0.0, hi, grid)
    f = _loss(np.broadcast_to(xs, (S, grid)), c_train, pool, p, tier)
    f = np.where(np.isfinite(f), f, np.inf)
    i = np.argmin(f, axis=1)
    step = xs[1] - xs[0]
    lo_x = np.clip(xs[i] - step, 0.0, hi)
    hi_x = np.clip(xs[i] + step, 0.0, hi)
    # golden section on [lo_x, hi_x], vectorised over samples
    a, b = lo_x.copy(), hi_x.copy()
    x1, x2 = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
    f1 = _loss(x1[:, None], c_train, pool, p, tier)[:, 0]
    f2 = _loss(x2[:, None], c_train, pool, p, tier)[:, 0]
    for _ in range(iters):
        left = f1 < f2  # the minimum is in [a, x2]: drop (x2, b]; else drop [a, x1)
        b = np.where(left, x2, b)
        a = np.where(left, a, x1)
        xn = np.where(left, b - GOLDEN * (b - a), a + GOLDEN * (b - a))
        fn = _loss(xn[:, None], c_train, pool, p, tier)[:, 0]
        x1, f1, x2, f2 = (np.where(left, xn, x2), np.where(left, fn, f2),
                          np.where(left, x1, xn), np.where(left, f1, fn))
    x = 0.5 * (a + b)
    fx = _loss(x[:, None], c_train, pool, p, tier)[:, 0]
    grid_best = f[np.arange(S), i]
    use_grid = ~(fx <= grid_best)
    x = np.where(use_grid, xs[i], x)
    fx = np.where(use_grid, grid_best, fx)
    return x, fx


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


def _experiments(p: dict[str, Any], tiers: dict[str, TierOption], contenders: Sequence[str], raw_tokens: float,
                 c_lo: float, c_hi: float, n_steps: int) -> list[Experiment]:
    if len(contenders) < 2 or not (c_hi > c_lo > 0) or n_steps < 1:
        return []
    theta_p = {k: (v[:1] if isinstance(v, np.ndarray) else ({t: a[:1] for t, a in v.items()} if isinstance(v, dict) else v))
               for k, v in p.items()}  # row 0 is the point estimate
    samples = {k: (v[1:] if isinstance(v, np.ndarray) else ({t: a[1:] for t, a in v.items()} if isinstance(v, dict) else v))
               for k, v in p.items()}
    out: list[Experiment] = []
    for k in range(1, n_steps + 1):
        c = c_lo * (c_hi / c_lo) ** (k / (n_steps + 1))
        runs = []
        for name in contenders:
            pool = tiers[name].yield_fraction * raw_tokens
            log_n, _ = _optimise(c, pool, theta_p, name)
            n = float(np.exp(log_n[0]))
            d = c / (6.0 * n)
            losses = _loss_at(n, d, pool, samples, name)
            runs.append((name, n, d, pool, losses))
        gap = runs[0][4] - runs[1][4]
        lo, hi = percentile_interval(gap)
        spread = hi - lo
        for name, n, d, pool, losses in runs:
            point = float(_loss_at(n, d, pool, theta_p, name)[0])
            out.append(Experiment(tier=name, n_params=n, tokens=d, flops=c, epochs=d / pool, predicted_loss=point,
                                  loss_interval=percentile_interval(losses), gap_spread=float(spread)))
    out.sort(key=lambda e: (-e.gap_spread if math.isfinite(e.gap_spread) else math.inf, e.flops))
    for i, e in enumerate(out):
        e.rank = i // len(contenders) + 1  # the pair at one compute shares a rank
    return out


def recommend(theta_samples: np.ndarray, theta: np.ndarray, law: Any, tiers: list[TierOption], budget_flops: float,
              raw_tokens: float, *, raw: str | None = None, largest_run_flops: float | None = None,
              n_steps: int = 4, level: float = 0.95) -> Recommendation:
    """Best (N, D) per tier under `budget_flops` and the verdict size vs cleaning (module docstring).

    theta_samples: (B, P) bootstrap parameter samples of `law` (may be empty: then the
    probabilities are those of the point estimate alone); theta: (P,) the point estimate.
    raw: the reference tier ("raw" if present, else tiers[0]). largest_run_flops: the largest
    run's compute, where the next-experiment ladder starts (default budget / 100).
    """
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
    p = _law_arrays(law, np.vstack([theta, ts]), tiers)  # row 0: point estimate
    by_name = {t.name: t for t in tiers}

    options: list[OptionResult] = []
    sample_losses: dict[str, np.ndarray] = {}
    for t in tiers:
        if not (0 < t.yield_fraction <= 1.0 + 1e-9) or t.cleaning_flops_per_raw_token < 0 or t.kappa <= 0:
            raise ValueError(f"tier {t.name!r}: yield in (0, 1], cleaning cost >= 0 and kappa > 0 needed")
        cc = t.cleaning_flops_per_raw_token * raw_tokens
        ct = budget_flops - cc
        pool = t.yield_fraction * raw_tokens
        kappa = float(np.exp(p["log_kappa"][t.name][0]))
        res = OptionResult(name=t.name, kappa=kappa, yield_fraction=t.yield_fraction, cleaning_flops=cc,
                           training_flops=max(ct, 0.0), pool_tokens=pool, feasible=ct >= 6.0)
        if not res.feasible:
            res.reason = (f"cleaning {cc:.3g} FLOPs ({t.cleaning_flops_per_raw_token:.3g}/raw token x {raw_tokens:.3g}) "
                          f"{'exceeds' if cc > budget_flops else 'uses all of'} the budget {budget_flops:.3g}")
            sample_losses[t.name] = np.full(S, np.inf)
            options.append(res)
            continue
        log_n, loss = _optimise(ct, pool, p, t.name)
        res.n_params = float(np.exp(log_n[0]))
        res.tokens = ct / (6.0 * res.n_params)
        res.epochs = res.tokens / pool
        res.loss = float(loss[0])
        if S:
            res.loss_interval = percentile_interval(loss[1:], level)
            res.n_params_interval = percentile_interval(np.exp(log_n[1:]), level)
        else:
            res.loss_interval = (res.loss, res.loss)
            res.n_params_interval = (res.n_params, res.n_params)
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
    else:
        for o in options:
            o.win_share = float(o.name == winner)
        if best_clean is not None:
            gap_iv = (gap, gap)
        notes.append("no bootstrap samples: probabilities are those of the point estimate alone")
    for o in options:
        if not o.feasible:
            notes.append(f"tier {o.name} is infeasible at this budget: {o.reason}")
        elif o.n_params > 0.97 * o.training_flops / 6.0 or o.n_params < 1.5:
            notes.append(f"tier {o.name}: the optimum sits at the edge of the search range (the law has no interior "
                         "optimum here)")
    if raw_opt.epochs > 1 or (best_clean is not None and best_clean.epochs > 1):
        notes.append("some options repeat their pool (epochs > 1): the repetition model (R_D* = "
                     f"{float(p['r_star'][0]):.3g}, {p['r_star_source']}) decides part of the answer")

    contenders = [raw] + ([best_clean.name] if best_clean is not None else [])
    c_lo = float(largest_run_flops) if largest_run_flops else budget_flops / 100.0
    exps = _experiments(p, by_name, contenders, raw_tokens, c_lo, budget_flops, n_steps) if S else []
    iso, grid = _snippets(exps, contenders)
    return Recommendation(
        budget_flops=budget_flops, raw_tokens=raw_tokens, law=str(getattr(law, "name", "?")),
        r_star=float(p["r_star"][0]), r_star_source=p["r_star_source"], n_samples=S, options=options,
        raw_option=raw, best_clean=best_clean.name if best_clean is not None else None, verdict=verdict,
        winner=winner, gap=gap, gap_interval=gap_iv, probability=prob, probability_kind=prob_kind,
        experiments=exps, toml=iso, toml_grid=grid, notes=notes)


# --------------------------------------------------------------------------------------------
# From a store and a data build


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


def recommend_from_store(store_root: str | Path, data_dir: str | Path, budget_flops: float,
                         raw_tokens: float | None = None, eval_set: str = "heldout", n_bootstrap: int = 1000,
                         seed: int = 0, reference: str = "raw", cleaning_flops_per_second: float | None = None,
                         tokenizer: str | None = None, n_steps: int = 4) -> Recommendation:
    """Fit the quality law on the store's runs (kappa = 1 for `reference`; Chinchilla when the runs
    cover one tier), bootstrap it, and `recommend_from_fit`. Nothing is written to the store."""
    from scaler.fit.data import from_store
    from scaler.fit.pipeline import fit, tiers_of

    data = from_store(str(store_root), eval_set=eval_set)
    tiers = tiers_of(data)
    if len(tiers) >= 2:
        fitted = {"quality": fit(data, "quality", n_bootstrap, seed, reference)}
    else:
        fitted = {"groups": {tiers[0] if tiers else "stdlib": {"parametric": fit(data, "chinchilla", n_bootstrap, seed)}}}
    return recommend_from_fit(fitted, data_dir, budget_flops, raw_tokens, tokenizer, cleaning_flops_per_second, n_steps)


def recommend_from_fit(fit: dict[str, Any], data_dir: str | Path, budget_flops: float, raw_tokens: float | None = None,
                       tokenizer: str | None = None, cleaning_flops_per_second: float | None = None,
                       n_steps: int = 4) -> Recommendation:
    """The recommendation from a sweep's fit (`scaler.fit_sweep` / `fit_store`, i.e. fit.json) and
    its data build: the quality law's point estimate and bootstrap samples as fitted (no refit),
    the build's yields and cleaning costs from `<data_dir>/report.json`. A store with runs on one
    tier only gets the Chinchilla fit of that tier and no cleaning verdict."""
    from scaler.fit import laws

    notes: list[str] = []
    entry = fit.get("quality")
    if entry is None:
        if len(fit.get("groups", {})) != 1:
            raise ValueError("the fit has no quality law: recommend needs runs on two tiers or more, or on one")
        (tier, group), = fit["groups"].items()
        entry = group["parametric"]
        notes.append(f"the store has runs on the {tier} tier only: no cleaned tier to compare")
    if "error" in entry:
        raise ValueError(f"the fit cannot be used: {entry['error']}")
    law = laws.law_from_spec(entry["spec"])
    names = list(law.spec.get("tiers") or [tier])
    reference = law.spec.get("reference", names[0])
    names.sort(key=lambda t: t != reference)  # the reference tier first, as the options are listed
    from scaler.data.folder import read_report

    report_path = Path(data_dir) / "report.json"
    report = read_report(data_dir).model_dump(mode="json")
    if not entry.get("converged", True):
        notes.append(f"the law's fit did not converge ({entry.get('stopped')})")
    derived = entry.get("derived", {})
    kappas = {t: float(derived.get(f"kappa_{t}") or 1.0) for t in names}
    tiers, facts = tier_options_from_report(report, names, tokenizer, cleaning_flops_per_second, kappas)
    skipped = sorted(set(report.get("tiers", {})) - set(names))
    if skipped:
        notes.append(f"tiers built but not in the sweep (no kappa fitted): {', '.join(skipped)}")
    theta = np.asarray(entry["theta"], dtype=np.float64)
    samples = np.asarray(entry.get("bootstrap_theta") or np.zeros((0, law.n_params)), dtype=np.float64)
    rec = recommend(samples, theta, law, tiers, budget_flops,
                    raw_tokens if raw_tokens is not None else facts["raw_train_tokens"], raw=reference,
                    largest_run_flops=float(entry["largest_run_flops"]), n_steps=n_steps)
    rec.notes = notes + rec.notes + [f"cleaning costs from {report_path} (tokenizer {facts['tokenizer']}, "
                                     f"{facts['raw_tokens_read']:.3g} raw tokens read)"]
    return rec
