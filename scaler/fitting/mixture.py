"""Mixture laws nested in N and D, and the choice between them by held-out error (issue 22).

A mixture sweep trains runs of several tier mixes (weights w_t >= 0, sum_t w_t = 1; e.g.
RegMix-style Dirichlet draws) at several model sizes N (parameters) and token counts D. Each
candidate below is a `laws.Law` over the columns N, D, w_<t> and U_<t> (tier t's pool of unique
tokens) and is fitted by the one fitter (`fitter.estimate`: sum of Huber on log loss). Repeated
data is charged by the one repetition formula, Muennighoff et al. 2023's (`laws.tier_tokens`,
`laws.repeated_tokens`), with one shared R_D* fitted on the log scale:

    D_eff = sum_t D'_t,   D'_t = U_t + U_t R_D* (1 - exp(-R_t / R_D*)),  R_t = w_t D / U_t - 1
    (D'_t = w_t D while w_t D <= U_t)

The candidates (natural logs throughout; A = e^a, B = e^b):

- "ye": L = A/N^alpha + B/D_eff^beta + c + k exp(sum_t t_t w_t), Ye et al. 2024's mixing law as
  the data-dependent term, t_<reference> = 0 (the weights sum to 1, so one t is not identified).
  theta = (a, b, alpha, beta, log_c, log_k, t_<t != reference>..., log_R_D_star).
- "regmix": a RegMix-style regression (Liu et al. 2024) nested in N and D: L = A/N^alpha +
  B/D_eff^beta + exp(P(w)), P(w) = sum_j b_j w_j + sum_{j<k} b_jk w_j w_k, Scheffé's quadratic
  mixture polynomial (no intercept: the weights sum to 1). The polynomial is exponentiated: a
  bare polynomial can make the loss zero or negative at a start or between the runs' mixes, and
  the fitter fits log L; exp(P) is a positive, mix-dependent irreducible loss, log-quadratic in w.
  theta = (a, b, alpha, beta, b_<t>..., b_<j>_<k>..., log_R_D_star).
- "quality": `laws.quality(tiers, reference, pools=True, e_shift=True)`, already a law linear in
  effective data across tiers: chinchilla(N, sum_t kappa_t D'_t) with log E linear in w.

`choose_mixture_law` scores each candidate by K-fold cross-validation over distinct mixes (every
run of a held-out mix is held out together, at every N and D), refitting from the law's whole
start grid with the held-out rows weighted 0 (one compiled solver for every fold). A run's error
is |log L_pred - log L_obs|, the relative error of its loss (the fit's own residual scale, as
`choose.py` scores backtests); a law's score is the mean over every run, in percent. The lowest
score wins unless a law with fewer parameters is within one standard error of it (the paired
difference per run, each mix one cluster: `choose._clustered_mean`, Breiman's one-SE rule as in
`choose.choose`). The folds are a seeded permutation of the mixes: everything is deterministic.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from scaler.fitting.choose import _clustered_mean
from scaler.fitting.inputs import FitData, FitDataError, json_safe, load_table, with_clusters
from scaler.fitting.laws import Law, _grid, quality, tier_tokens

__all__ = ["MIXTURE_LAWS", "DEFAULT_FOLDS", "WEIGHT_SUM_TOLERANCE", "ye", "regmix", "mixture_law", "candidate_laws",
           "effective_tokens", "mix_labels", "mix_folds", "residual_sd", "MixtureChoice", "choose_mixture_law",
           "mixture_tiers", "with_pools", "load_mixture_table"]

MIXTURE_LAWS = ("ye", "regmix", "quality")
DEFAULT_FOLDS = 5
WEIGHT_SUM_TOLERANCE = 1e-3  # a row's weights may miss 1 by this much (rounding); they are then renormalised
MIN_MIXES = 3  # distinct mixes a choice needs (every fold then leaves two or more to fit on)
MIX_DECIMALS = 6  # weights equal to this many decimals are one mix (a spec rounds its Dirichlet draws to 6)
R_STARTS = (math.log(5.0), math.log(20.0))  # log R_D* starts, as the quality law's grid


def effective_tokens(data: Mapping[str, Any], tiers: Sequence[str], r_star: Any, *, xp: Any) -> Any:
    """D_eff = sum_t D'_t(w_t D, U_t, R_D*): every tier's repeated tokens, unweighted (module docstring)."""
    total = 0.0
    for t in tiers:
        total = total + tier_tokens(data["D"], data[f"w_{t}"], 1.0, data[f"U_{t}"], r_star, xp=xp)
    return total


def _columns(tiers: Sequence[str]) -> tuple[str, ...]:
    return ("N", "D", *(f"w_{t}" for t in tiers), *(f"U_{t}" for t in tiers))


def _power_terms(a: Any, b: Any, alpha: Any, beta: Any, data: Mapping[str, Any], d_eff: Any, xp: Any) -> Any:
    """log(A/N^alpha + B/D_eff^beta), the Chinchilla part without its irreducible term."""
    return xp.logaddexp(a - alpha * xp.log(data["N"]), b - beta * xp.log(d_eff))


def _chin_derived(theta: np.ndarray) -> dict[str, float]:
    a, b, alpha, beta = (float(x) for x in theta[:4])
    return {"A": math.exp(a), "B": math.exp(b), "alpha": alpha, "beta": beta}


def ye(tiers: Sequence[str], reference: str) -> Law:
    """Ye et al. 2024's mixing law nested in N and D (module docstring), t_<reference> = 0.

    Start grid: a, b in {4, 8}, alpha, beta in {0.25, 0.5}, log_c in {0, 0.5, 1}, log_k in {-3, -1},
    each free t in {-1, 1}, log R_D* in {log 5, log 20} (768 starts for three tiers)."""
    return _ye(tuple(tiers), str(reference))


@functools.cache
def _ye(tiers: tuple[str, ...], reference: str) -> Law:
    free = tuple(t for t in tiers if t != reference)
    i_r = 6 + len(free)

    def log_loss(theta: Any, data: Mapping[str, Any], xp: Any) -> Any:
        a, b, alpha, beta, log_c, log_k = (theta[i] for i in range(6))
        d_eff = effective_tokens(data, tiers, xp.exp(theta[i_r]), xp=xp)
        mixing = log_k
        for j, t in enumerate(free):
            mixing = mixing + theta[6 + j] * data[f"w_{t}"]
        return xp.logaddexp(_power_terms(a, b, alpha, beta, data, d_eff, xp), xp.logaddexp(log_c, mixing))

    def start_grid() -> np.ndarray:
        return _grid((4.0, 8.0), (4.0, 8.0), (0.25, 0.5), (0.25, 0.5), (0.0, 0.5, 1.0), (-3.0, -1.0),
                     *([(-1.0, 1.0)] * len(free)), R_STARTS)

    def derived(theta: np.ndarray) -> dict[str, float]:
        out = _chin_derived(theta)
        out.update(c=math.exp(float(theta[4])), k=math.exp(float(theta[5])), **{f"t_{reference}": 0.0})
        out.update({f"t_{t}": float(theta[6 + j]) for j, t in enumerate(free)})
        out["R_D_star"] = math.exp(float(theta[i_r]))
        return out

    return Law(name="ye", param_names=("a", "b", "alpha", "beta", "log_c", "log_k", *(f"t_{t}" for t in free),
                                       "log_R_D_star"),
               columns=_columns(tiers), log_loss=log_loss, start_grid=start_grid, derived=derived,
               spec={"family": "mixture_ye", "tiers": tiers, "reference": reference},
               positive_columns=("N", "D", *(f"U_{t}" for t in tiers)),
               description=f"L = A/N^alpha + B/D_eff^beta + c + k exp(sum_t t_t w_t), t_{reference} = 0")


def _pairs(tiers: Sequence[str]) -> list[tuple[str, str]]:
    return list(itertools.combinations(tiers, 2))


def regmix(tiers: Sequence[str]) -> Law:
    """The RegMix-style law (module docstring): L = A/N^alpha + B/D_eff^beta + exp(P(w)).

    Start grid: a, b in {4, 8}, alpha, beta in {0.25, 0.5}, each b_t in {0, 1}, every b_jk 0,
    log R_D* in {log 5, log 20} (256 starts for three tiers)."""
    return _regmix(tuple(tiers))


@functools.cache
def _regmix(tiers: tuple[str, ...]) -> Law:
    pairs = _pairs(tiers)
    i_pair = 4 + len(tiers)
    i_r = i_pair + len(pairs)

    def log_loss(theta: Any, data: Mapping[str, Any], xp: Any) -> Any:
        a, b, alpha, beta = (theta[i] for i in range(4))
        d_eff = effective_tokens(data, tiers, xp.exp(theta[i_r]), xp=xp)
        poly = 0.0
        for j, t in enumerate(tiers):
            poly = poly + theta[4 + j] * data[f"w_{t}"]
        for j, (s, t) in enumerate(pairs):
            poly = poly + theta[i_pair + j] * data[f"w_{s}"] * data[f"w_{t}"]
        return xp.logaddexp(_power_terms(a, b, alpha, beta, data, d_eff, xp), poly)

    def start_grid() -> np.ndarray:
        return _grid((4.0, 8.0), (4.0, 8.0), (0.25, 0.5), (0.25, 0.5), *([(0.0, 1.0)] * len(tiers)),
                     *([(0.0,)] * len(pairs)), R_STARTS)

    def derived(theta: np.ndarray) -> dict[str, float]:
        out = _chin_derived(theta)
        out.update({f"E_{t}": math.exp(float(theta[4 + j])) for j, t in enumerate(tiers)})  # E of tier t alone
        out["R_D_star"] = math.exp(float(theta[i_r]))
        return out

    return Law(name="regmix", param_names=("a", "b", "alpha", "beta", *(f"b_{t}" for t in tiers),
                                           *(f"b_{s}_{t}" for s, t in pairs), "log_R_D_star"),
               columns=_columns(tiers), log_loss=log_loss, start_grid=start_grid, derived=derived,
               spec={"family": "mixture_regmix", "tiers": tiers},
               positive_columns=("N", "D", *(f"U_{t}" for t in tiers)),
               description="L = A/N^alpha + B/D_eff^beta + exp(sum_j b_j w_j + sum_{j<k} b_jk w_j w_k)")


def mixture_law(name: str, tiers: Sequence[str], reference: str) -> Law:
    """The candidate `name` (MIXTURE_LAWS) over `tiers`; `reference` fixes ye's t and quality's kappa."""
    if reference not in tiers:
        raise ValueError(f"mixture law {name!r}: reference tier {reference!r} is not among the tiers {list(tiers)}")
    if name == "ye":
        return ye(tiers, reference)
    if name == "regmix":
        return regmix(tiers)
    if name == "quality":
        return quality(list(tiers), reference=reference, pools=True, e_shift=True)
    raise ValueError(f"mixture law {name!r}: expected one of {', '.join(MIXTURE_LAWS)}")


def candidate_laws(tiers: Sequence[str], reference: str, names: Sequence[str] = MIXTURE_LAWS) -> dict[str, Law]:
    return {name: mixture_law(name, tiers, reference) for name in names}


# --------------------------------------------------------------------------------------------
# Held-out error over distinct mixes


def mixture_tiers(data: FitData) -> list[str]:
    """The tiers the runs mix (`w_<t>` columns), sorted by name."""
    return sorted(k.removeprefix("w_") for k in data.columns if k.startswith("w_"))


def mix_labels(data: FitData, tiers: Sequence[str]) -> np.ndarray:
    """One label per row, shared by the rows of one mix (weights equal to MIX_DECIMALS decimals)."""
    weights = np.column_stack([np.round(data.columns[f"w_{t}"], MIX_DECIMALS) for t in tiers])
    return np.array(["+".join(f"{t}:{w:g}" for t, w in zip(tiers, row, strict=True)) for row in weights])


def mix_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The fold (0..folds-1) of every row: the distinct mixes, sorted then permuted by `seed`, dealt
    round-robin, so every run of a mix is held out together."""
    mixes = np.array(sorted(set(labels.tolist())))
    order = np.random.default_rng(seed).permutation(len(mixes))
    fold_of = {mixes[i]: k % folds for k, i in enumerate(order)}
    return np.array([fold_of[label] for label in labels.tolist()])


def residual_sd(law: Law, theta: np.ndarray, data: FitData) -> float:
    """The runs' scatter about the fit on the log scale, sqrt(sum r^2 / (n - P)), r = log L_obs - log L_pred."""
    r = np.log(data.loss) - law.predict_log(np.asarray(theta), dict(data.columns), np)
    return float(math.sqrt(np.sum(r**2) / max(data.n_points - law.n_params, 1)))


def _held_out_errors(law: Law, data: FitData, folds: np.ndarray) -> np.ndarray:
    """|log L_pred - log L_obs| of every row, each predicted by the fit on the other folds."""
    from scaler.fitting.fitter import estimate  # lazy: JAX

    errors = np.full(data.n_points, np.nan)
    starts = law.start_grid()  # never the full fit's optimum: it has seen the held-out mixes
    for k in np.unique(folds):
        held = folds == k
        fit = estimate(law, data.columns, data.loss, starts=starts, weights=(~held).astype(np.float64))
        predicted = law.predict_log(fit.theta, {c: v[held] for c, v in data.columns.items()}, np)
        errors[held] = np.abs(predicted - np.log(data.loss[held]))
    return errors


@dataclass(frozen=True)
class MixtureChoice:
    """The chosen law (`name` among MIXTURE_LAWS), its fit on every run, and each candidate's held-out score."""

    name: str
    law: Law
    fit: Any  # fitter.FitResult of `law` on every run
    candidates: list[dict[str, Any]]  # per law: n_params, cv_error_pct, its se, gap to the best and its se
    reason: str
    folds: int
    seed: int
    noise_sd: float  # residual_sd of the chosen fit (log scale)
    errors: dict[str, np.ndarray] = field(repr=False, default_factory=dict)  # per law, per row held-out |log residual|

    def to_json(self) -> dict[str, Any]:
        return json_safe({"law": self.name, "spec": dict(self.law.spec), "params": self.fit.params,
                          "derived": self.fit.derived, "converged": self.fit.converged, "noise_sd_log": self.noise_sd,
                          "candidates": self.candidates, "chosen_by": self.reason, "folds": self.folds,
                          "seed": self.seed})


def _score_rows(errors: Mapping[str, np.ndarray], laws: Mapping[str, Law], clusters: np.ndarray
                ) -> list[dict[str, Any]]:
    """Per law: its parameters, mean held-out error (%) with its cluster-robust SE, and its paired
    gap to the best law (percentage points) with that gap's SE."""
    ok = {name: e for name, e in errors.items() if np.all(np.isfinite(e))}
    best = min(ok, key=lambda name: float(np.mean(ok[name]))) if ok else None
    rows = []
    for name, law in laws.items():
        row: dict[str, Any] = {"law": name, "n_params": law.n_params}
        if name in ok:
            mean, se = _clustered_mean(ok[name], np.ones(len(ok[name])), clusters)
            gap, gap_se = _clustered_mean(ok[name] - ok[best], np.ones(len(ok[name])), clusters)
            row.update(cv_error_pct=100 * mean, cv_error_se_pct=100 * se, gap_to_best_pct=100 * gap,
                       gap_se_pct=100 * gap_se if name != best else 0.0)
        else:
            row["refused"] = "a held-out fit failed or predicted a non-finite loss"
        rows.append(row)
    return rows


def _one_se_choice(rows: list[dict[str, Any]]) -> tuple[str, str]:
    """The simplest law whose paired gap to the best is within one SE of it, and why."""
    scored = [r for r in rows if "cv_error_pct" in r]
    if not scored:
        raise ValueError("no mixture law could be cross-validated: " + "; ".join(f"{r['law']}: {r['refused']}" for r in rows))
    best = min(scored, key=lambda r: r["cv_error_pct"])
    chosen = next(r for r in sorted(scored, key=lambda r: r["n_params"])
                  if r is best or r["gap_to_best_pct"] <= r["gap_se_pct"])
    if chosen is best:
        return best["law"], f"{best['law']}: the lowest held-out error ({best['cv_error_pct']:.3f}%)"
    return chosen["law"], (f"{chosen['law']}: {chosen['n_params']} parameters, within one standard error of the best "
                           f"({best['law']} {best['cv_error_pct']:.3f}%, {chosen['law']} {chosen['cv_error_pct']:.3f}%: "
                           f"{chosen['gap_to_best_pct']:+.3f} +- {chosen['gap_se_pct']:.3f} points)")


def choose_mixture_law(data: FitData, tiers: Sequence[str] | None = None, reference: str | None = None, *,
                       folds: int = DEFAULT_FOLDS, seed: int = 0, names: Sequence[str] = MIXTURE_LAWS) -> MixtureChoice:
    """Cross-validate every candidate over distinct mixes, keep one by the one-SE rule (module
    docstring), and fit it on every run. `reference` (default: the first tier) fixes ye's t = 0
    and the quality law's kappa = 1. With fewer distinct mixes than `folds`, each mix is a fold."""
    from scaler.fitting.fitter import estimate  # lazy: JAX

    tiers = list(tiers or mixture_tiers(data))
    reference = reference or tiers[0]
    labels = mix_labels(data, tiers)
    n_mixes = len(set(labels.tolist()))
    if folds < 2:
        raise FitDataError(f"{{folds}} {folds}: expected 2 folds or more", "folds")
    if n_mixes < MIN_MIXES:
        raise FitDataError(f"{data.source}: {n_mixes} distinct mixes; a mixture law needs at least {MIN_MIXES} "
                           "(held out one fold at a time)")
    folds = min(folds, n_mixes)  # fewer mixes than folds: leave one mix out
    laws = candidate_laws(tiers, reference, names)
    fold = mix_folds(labels, folds, seed)
    errors: dict[str, np.ndarray] = {}
    for name, law in laws.items():
        try:
            errors[name] = _held_out_errors(law, data, fold)
        except ValueError:  # too few rows left in a fold for its parameters, or no finite start
            errors[name] = np.full(data.n_points, np.nan)
    rows = _score_rows(errors, laws, labels)
    chosen, reason = _one_se_choice(rows)
    law = laws[chosen]
    fit = estimate(law, data.columns, data.loss)
    return MixtureChoice(chosen, law, fit, rows, reason, folds, seed, residual_sd(law, fit.theta, data), errors)


# --------------------------------------------------------------------------------------------
# Inputs: pools for a store's runs, a table of runs trained anywhere


def with_pools(data: FitData, pools: Mapping[str, float]) -> FitData:
    """`data` with a `U_<t>` column (tier t's pool, tokens) wherever it has none; the runs' own
    recorded pools are kept."""
    columns = dict(data.columns)
    for tier, tokens in pools.items():
        columns.setdefault(f"U_{tier}", np.full(data.n_points, float(tokens)))
    return FitData(data.source, columns, data.loss, data.groups, dict(data.dropped), data.run_ids, data.clusters,
                   data.compute, dict(data.excluded))


def _weights(frame: pl.DataFrame, weights: Mapping[str, str], source: str) -> dict[str, np.ndarray]:
    """Each tier's weight column, checked: numeric, >= 0, every row summing to 1 (then renormalised)."""
    out: dict[str, np.ndarray] = {}
    for tier, column in weights.items():
        if column not in frame.columns:
            raise FitDataError(f"{source}: {{weight}} {tier}={column}: no such column (columns: {frame.columns})", "weight")
        try:
            out[tier] = frame[column].cast(pl.Float64).to_numpy()
        except pl.exceptions.InvalidOperationError:
            raise FitDataError(f"{source}: {{weight}} {tier}={column}: not numeric", "weight") from None
        if not np.all(np.isfinite(out[tier]) & (out[tier] >= 0)):
            raise FitDataError(f"{source}: {{weight}} {tier}={column}: expected weights >= 0 in every row", "weight")
    total = np.sum(list(out.values()), axis=0)
    off = np.flatnonzero(np.abs(total - 1.0) > WEIGHT_SUM_TOLERANCE)
    if len(off):
        raise FitDataError(f"{source}: the {{weight}} columns sum to {total[off[0]]:.4g} in row {off[0]} "
                           f"({len(off)} rows off); expected 1 in every row (a weight for every tier)", "weight")
    return {t: w / total for t, w in out.items()}


def load_mixture_table(path: str | Path, n: str, d: str, loss: str, weight: Mapping[str, str],
                       pool: Mapping[str, float]) -> FitData:
    """Runs of a mixture sweep from a CSV (6ND convention, `inputs.load_table`): N, D, loss, and
    for each tier its weight column (`weight`: tier -> column) and its pool (`pool`: tier ->
    unique tokens, the same for every run). Repeated configurations (equal N, D and mix) are
    clustered for the bootstrap."""
    data = load_table(path, n=n, loss=loss, d=d)
    weights, pools = weight, pool
    if len(weights) < 2:
        raise FitDataError(f"{path}: {{weight}}: give two tiers or more (TIER=COLUMN each); got {len(weights)}", "weight")
    missing = sorted(set(weights) - set(pools))
    extra = sorted(set(pools) - set(weights))
    if missing or extra:
        which = f"tier {missing[0]!r} has a weight but no pool" if missing else f"tier {extra[0]!r} has a pool but no weight"
        raise FitDataError(f"{path}: {{pool}}: {which}; expected TIER=TOKENS for every --weight tier", "pool")
    bad = sorted(t for t, u in pools.items() if not (math.isfinite(u) and u > 0))
    if bad:
        raise FitDataError(f"{path}: {{pool}} {bad[0]}={pools[bad[0]]}: expected a positive number of tokens", "pool")
    frame = pl.read_csv(path, infer_schema_length=None)
    columns = dict(data.columns)
    for tier, w in _weights(frame, weights, str(path)).items():
        columns[f"w_{tier}"] = w
        columns[f"U_{tier}"] = np.full(data.n_points, float(pools[tier]))
    return with_clusters(FitData(data.source, columns, data.loss, compute=data.compute))
