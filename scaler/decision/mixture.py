"""The recommended data mixture for a compute budget (issue 22; docs/design.md §5.9).

From a mixture sweep's runs (`FitData` with N, D, C, w_<t>, U_<t>), `recommend_mixture`:

1. chooses a mixture law by held-out error over distinct mixes (`fitting.mixture.choose_mixture_law`);
2. finds the mix w (on the simplex) and model size N that minimise the law's loss for a budget of
   C FLOPs, with D = C / flops_per_token(N) under the runs' convention (6ND for a table:
   D = C / 6N), subject to each tier's epochs w_t D / U_t <= cap_t (`epoch_cap`, DEFAULT_EPOCH_CAP
   unless given; None: uncapped). Whatever the cap, repeated tokens are charged by the law's
   fitted R_D* (Muennighoff et al. 2023). N is profiled out: the caps bound D above, hence N below
   (N_min, by bisection), and each mix's best N in [N_min, C/6] comes from `compute.minimise_log_n`
   (a dense grid, then golden section). The mixes: a simplex lattice, then a compass search from
   its best STARTS mixes (moves w + delta (e_i - e_j), delta halved when none improves, down to
   MIN_STEP);
3. refits the law on cluster-bootstrap resamples (the runs of one mix move together) and gives,
   at the fixed recommended point (N, D, w), the 80% and 95% intervals of one run's loss: each
   draw's predicted log loss plus Gaussian noise of the runs' fitted scatter (the residual sd
   on the log scale, NOISE_DRAWS noise draws per bootstrap draw), so the interval is about a run,
   not only the mean; and the 95% interval of the mean (bootstrap alone);
4. P(beats the best single tier): the share of bootstrap draws in which the loss at the FIXED
   recommended point is below the best single tier's, each single tier re-optimised in N per
   draw under the same caps (so the mix is not given the advantage of being re-tuned per draw);
   about the mean loss, parameter uncertainty only;
5. the next mixes worth running: NEXT_MIXES lattice mixes within NEAR_L1 (L1) of the recommended
   mix, at the largest swept run's (N, D), where the bootstrap draws' predicted losses disagree
   most (95% width), at least SEPARATION_L1 apart. The epoch caps are not applied to them: they
   are runs to learn the law from (a sweep's run may read a tier more often than the budget's
   run may), and each lists its epochs;
6. how far the budget extrapolates: budget / the largest fitted run's compute (refused beyond
   EXTRAPOLATION_REFUSE unless forced, as `recommend`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from scaler.decision.budget import ExtrapolationRefused
from scaler.fitting.compute import Compute, max_log_n, minimise_log_n
from scaler.fitting.inputs import FitData, FitDataError, json_safe
from scaler.fitting.laws import Law
from scaler.fitting.mixture import (DEFAULT_FOLDS, MIXTURE_LAWS, MixtureChoice, choose_mixture_law, mix_labels,
                                    mixture_tiers)
from scaler.fitting.predict import EXTRAPOLATION_REFUSE, EXTRAPOLATION_WARN
from scaler.fitting.stats import percentile_interval

__all__ = ["DEFAULT_EPOCH_CAP", "MixtureRecommendation", "recommend_mixture", "optimise_mix", "simplex_lattice"]

DEFAULT_EPOCH_CAP = 4.0  # epochs of a tier's pool; Muennighoff et al. 2023: up to ~4 epochs cost little
DEFAULT_BOOTSTRAP = 200
LEVELS = (0.8, 0.95)
NOISE_DRAWS = 20  # Gaussian run-noise draws per bootstrap draw
LATTICE_POINTS = 2000  # at most this many mixes in the simplex lattice
LATTICE_MAX_DIVISIONS = 40  # at most 1/40 between lattice mixes (three tiers: 861 mixes)
STARTS = 3  # compass searches from the best lattice mixes
MIN_STEP = 1e-3  # the compass search stops below this step (L1 per move: 2 x step)
NEXT_MIXES = 3
NEAR_L1 = 0.3  # "near the recommended mix": within this L1 distance of it
SEPARATION_L1 = 0.1
BISECTIONS = 64  # of log N: far below float64 resolution


@dataclass(frozen=True)
class MixtureRecommendation:
    """What `recommend_mixture` returns; `to_json()` is a plain dict, `text()` the printed summary.
    Losses are in nats per token (the runs' loss), FLOPs under `flops_convention`."""

    budget_flops: float
    flops_convention: str
    extrapolation: float  # budget / the largest fitted run's compute
    largest_run: dict[str, float]  # its n_params, tokens, flops
    law: str
    law_description: str
    candidates: list[dict[str, Any]]  # each law's held-out error (fitting.mixture)
    chosen_by: str
    tiers: list[str]
    pools: dict[str, float]  # unique tokens per tier
    epoch_caps: dict[str, float | None]
    mix: dict[str, float]
    n_params: float
    tokens: float
    epochs: dict[str, float]  # w_t D / U_t
    loss: float  # the law's point prediction at (n_params, tokens, mix)
    loss_interval_80: tuple[float, float]  # one run's loss there (bootstrap and run noise)
    loss_interval_95: tuple[float, float]
    mean_interval_95: tuple[float, float]  # the mean loss there (bootstrap alone)
    noise_sd_log: float  # the runs' scatter about the fit, log scale
    single_tiers: list[dict[str, Any]]  # per tier alone: n_params, tokens, epochs, loss (point)
    best_single_tier: str
    p_beats_best_single: float
    p_beats_how: str
    next_mixes: list[dict[str, Any]]
    n_bootstrap: int
    bootstrap_converged: float
    seed: int
    params: dict[str, float] = field(default_factory=dict)  # the chosen law's fitted parameters and derived values
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return json_safe(asdict(self))

    def text(self) -> str:
        return "\n".join(self.lines())

    def lines(self) -> list[str]:
        mix = ", ".join(f"{t} {w:.3f}" for t, w in self.mix.items())
        epochs = ", ".join(f"{t} {e:.2f}" + ("" if self.epoch_caps[t] is None else f" (cap {self.epoch_caps[t]:g})")
                           for t, e in self.epochs.items())
        best = next(s for s in self.single_tiers if s["tier"] == self.best_single_tier)
        lo80, hi80 = self.loss_interval_80
        lo95, hi95 = self.loss_interval_95
        out = [f"budget {self.budget_flops:.3g} FLOPs ({self.flops_convention}): {self.extrapolation:.3g}x the largest "
               f"fitted run ({self.largest_run['flops']:.3g} FLOPs)",
               f"law {self.law} ({self.chosen_by}); held-out error by mix: " + "; ".join(
                   f"{c['law']} {c['cv_error_pct']:.3f}% +- {c['cv_error_se_pct']:.3f}" if "cv_error_pct" in c
                   else f"{c['law']} refused ({c['refused']})" for c in self.candidates),
               f"recommended mix: {mix}",
               f"  N {self.n_params:.3g} parameters, D {self.tokens:.3g} tokens; epochs {epochs}",
               f"  predicted loss {self.loss:.4f}: one run 80% [{lo80:.4f}, {hi80:.4f}], 95% [{lo95:.4f}, {hi95:.4f}] "
               f"(bootstrap x run noise {100 * self.noise_sd_log:.2f}%); the mean 95% [{self.mean_interval_95[0]:.4f}, "
               f"{self.mean_interval_95[1]:.4f}]",
               f"best single tier: {best['tier']} (N {best['n_params']:.3g}, D {best['tokens']:.3g}, "
               f"{best['epochs']:.2f} epochs), predicted loss {best['loss']:.4f}",
               f"P(the mix beats the best single tier) = {self.p_beats_best_single:.0%} ({self.p_beats_how})"]
        if self.next_mixes:
            out.append("next mixes worth running:")
            for m in self.next_mixes:
                shown = ", ".join(f"{t} {w:.2f}" for t, w in m["mix"].items())
                out.append(f"  {shown}: N {m['n_params']:.3g}, D {m['tokens']:.3g}, predicted {m['predicted_loss']:.4f}; "
                           f"{m['reason']}")
        out.extend(f"note: {n}" for n in self.notes)
        return out


# --------------------------------------------------------------------------------------------
# The law at a budget


def _columns(law: Law, tiers: Sequence[str], n: Any, d: Any, weights: np.ndarray, pools: Mapping[str, float]
             ) -> dict[str, Any]:
    """The law's columns for runs of size n, tokens d and mixes `weights` (..., m), broadcasting."""
    cols: dict[str, Any] = {"N": n, "D": d}
    for j, t in enumerate(tiers):
        cols[f"w_{t}"] = weights[..., j]
        cols[f"U_{t}"] = float(pools[t])
    return cols


def _cap_vector(tiers: Sequence[str], caps: Mapping[str, float | None]) -> np.ndarray:
    return np.array([math.inf if caps.get(t) is None else float(caps[t]) for t in tiers])  # type: ignore[arg-type]


def _smallest_log_n(max_tokens: np.ndarray, budget: float, compute: Compute) -> np.ndarray:
    """Per row, the smallest log N whose run of `budget` FLOPs reads at most `max_tokens` tokens
    (D = compute.tokens(N, budget) falls as N grows): bisection on log N in [0, log(C/6)], 0 where
    every N qualifies. Any convention; under 6ND it is log(C / (6 max_tokens))."""
    lo, hi = np.zeros(len(max_tokens)), np.full(len(max_tokens), float(max_log_n(budget)))
    fits = lambda x: compute.tokens(np.exp(x), budget) <= max_tokens  # noqa: E731
    for _ in range(BISECTIONS):
        mid = 0.5 * (lo + hi)
        ok = fits(mid)
        hi, lo = np.where(ok, mid, hi), np.where(ok, lo, mid)
    return np.where(fits(np.zeros(len(max_tokens))), 0.0, hi)


def _minimise_above(log_loss: Any, lo: np.ndarray, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row k, the log N in [lo_k, hi] minimising `log_loss` ((K, G) log N -> (K, G)):
    `compute.minimise_log_n` on x in [0, 1], log N = lo_k + x (hi - lo_k), so a row's optimum at its
    lower end (a tier at its cap) is found exactly. Returns (log N (K,), log loss (K,))."""
    span = np.maximum(hi - lo, 0.0)[:, None]
    x, value = minimise_log_n(lambda u: log_loss(lo[:, None] + u * span), 0.0, 1.0, len(lo))
    return lo + x * span[:, 0], value


def _profile_n(law: Law, theta: np.ndarray, weights: np.ndarray, budget: float, tiers: Sequence[str],
               pools: Mapping[str, float], caps: np.ndarray, compute: Compute) -> tuple[np.ndarray, np.ndarray]:
    """For each mix (K, m), the log N minimising the log loss at `budget` within the caps, and that
    log loss (K,). The caps bound D from above (w_t D <= cap_t U_t), so N from below."""
    pool = np.array([float(pools[t]) for t in tiers])
    with np.errstate(divide="ignore"):
        max_tokens = np.min(np.where(weights > 0, caps * pool / weights, np.inf), axis=1)
    w = weights[:, None, :]  # (K, 1, m) against the (K, G) grid of log N

    def log_loss(log_n: np.ndarray) -> np.ndarray:
        n = np.exp(log_n)
        columns = _columns(law, tiers, n, compute.tokens(n, budget), np.broadcast_to(w, (*n.shape, len(tiers))), pools)
        return law.predict_log(theta, columns, np)

    return _minimise_above(log_loss, _smallest_log_n(max_tokens, budget, compute), float(max_log_n(budget)))


def simplex_lattice(m: int, points: int = LATTICE_POINTS) -> np.ndarray:
    """Every mix of m tiers with weights in steps of 1/k, for the largest k <= LATTICE_MAX_DIVISIONS
    giving at most `points` mixes: (K, m)."""
    k = max(1, max((k for k in range(1, LATTICE_MAX_DIVISIONS + 1) if math.comb(k + m - 1, m - 1) <= points),
                   default=1))

    def compositions(total: int, parts: int) -> list[list[int]]:
        if parts == 1:
            return [[total]]
        return [[i, *rest] for i in range(total + 1) for rest in compositions(total - i, parts - 1)]

    return np.array(compositions(k, m), dtype=np.float64) / k


def _moves(m: int) -> np.ndarray:
    """The compass directions on the simplex: e_i - e_j for i != j, (m (m - 1), m)."""
    eye = np.eye(m)
    return np.array([eye[i] - eye[j] for i in range(m) for j in range(m) if i != j])


def _compass(profile: Any, w0: np.ndarray, value0: float, step: float) -> tuple[np.ndarray, float]:
    """Compass search from w0 on the simplex: the best of the moves w + step (e_i - e_j) that stay
    on it, taken while it lowers `profile`; the step halves when none does, down to MIN_STEP."""
    w, value, moves = w0, value0, _moves(len(w0))
    while step >= MIN_STEP:
        trial = w + step * moves
        trial = trial[np.all(trial >= -1e-12, axis=1)].clip(0.0, 1.0)
        values = profile(trial)
        i = int(np.argmin(values))
        if values[i] < value - 1e-12:
            w, value = trial[i], float(values[i])
        else:
            step /= 2
    return w, value


def optimise_mix(law: Law, theta: np.ndarray, budget: float, tiers: Sequence[str], pools: Mapping[str, float],
                 caps: Mapping[str, float | None], compute: Compute) -> tuple[np.ndarray, float, float]:
    """The mix (m,), N and predicted loss minimising `law` at `theta` for `budget` under the caps
    (module docstring, step 2): the lattice's best STARTS mixes, each refined by compass search."""
    cap = _cap_vector(tiers, caps)

    def profile(weights: np.ndarray) -> np.ndarray:
        return _profile_n(law, theta, weights, budget, tiers, pools, cap, compute)[1]

    lattice = simplex_lattice(len(tiers))
    values = profile(lattice)
    if not np.any(np.isfinite(values)):
        raise ValueError(f"no mix and model size spend {budget:.3g} FLOPs within the epoch caps")
    step = float(np.min(lattice[lattice > 0])) / 2
    found = [_compass(profile, lattice[i], float(values[i]), step) for i in np.argsort(values)[:STARTS]]
    w, _ = min(found, key=lambda pair: pair[1])
    log_n, log_loss = _profile_n(law, theta, w[None, :], budget, tiers, pools, cap, compute)
    return w, float(np.exp(log_n[0])), float(np.exp(log_loss[0]))


def _single_tiers(law: Law, thetas: np.ndarray, budget: float, tiers: Sequence[str], pools: Mapping[str, float],
                  caps: Mapping[str, float | None], compute: Compute) -> tuple[np.ndarray, np.ndarray]:
    """Each tier alone at its own best N, per parameter row of `thetas` (S, P): log N (m, S) and
    log loss (m, S), under the same caps."""
    cap = _cap_vector(tiers, caps)
    params = thetas.T[:, :, None]  # (P, S, 1): each row one sample
    log_n, log_loss = [], []
    for j, tier in enumerate(tiers):
        w = np.eye(len(tiers))[j]

        def loss(x: np.ndarray) -> np.ndarray:
            n = np.exp(x)
            columns = _columns(law, tiers, n, compute.tokens(n, budget), np.broadcast_to(w, (*n.shape, len(tiers))), pools)
            return law.predict_log(params, columns, np)

        lo = _smallest_log_n(np.full(len(thetas), cap[j] * float(pools[tier])), budget, compute)
        x, v = _minimise_above(loss, lo, float(max_log_n(budget)))
        log_n.append(x)
        log_loss.append(v)
    return np.array(log_n), np.array(log_loss)


def _at_point(law: Law, thetas: np.ndarray, n: float, d: float, w: np.ndarray, tiers: Sequence[str],
              pools: Mapping[str, float]) -> np.ndarray:
    """log loss (S, K) of the runs (n, d, w (K, m)) under each parameter row of `thetas` (S, P)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return law.predict_log(thetas.T[:, :, None], _columns(law, tiers, n, d, w[None, :, :], pools), np)


# --------------------------------------------------------------------------------------------
# Intervals, the next mixes, the recommendation


def _run_intervals(log_losses: np.ndarray, noise_sd: float, seed: int) -> dict[float, tuple[float, float]]:
    """The LEVELS intervals of one run's loss: each draw's log loss plus N(0, noise_sd^2) noise."""
    noise = noise_sd * np.random.default_rng(seed).standard_normal((len(log_losses), NOISE_DRAWS))
    runs = np.exp(log_losses[:, None] + noise).ravel()
    return {level: percentile_interval(runs, level) for level in LEVELS}


def _next_mixes(law: Law, thetas: np.ndarray, w_best: np.ndarray, largest: Mapping[str, float], tiers: Sequence[str],
                pools: Mapping[str, float], swept: np.ndarray) -> list[dict[str, Any]]:
    """The NEXT_MIXES mixes near the recommended one whose predicted loss at the largest swept
    (N, D) the bootstrap draws (rows 1: of `thetas`; row 0 the full fit) disagree on most (module
    docstring, step 5)."""
    n, d = largest["n_params"], largest["tokens"]
    pool = np.array([float(pools[t]) for t in tiers])
    lattice = np.vstack([w_best, simplex_lattice(len(tiers))])
    candidates = lattice[np.abs(lattice - w_best).sum(axis=1) <= NEAR_L1]
    losses = np.exp(_at_point(law, thetas, n, d, candidates, tiers, pools))  # row 0: the full fit
    lo, hi = percentile_interval(losses[1:], 0.95)
    spread = np.where(np.isfinite(hi - lo), hi - lo, -np.inf)
    point = losses[0]
    picked: list[int] = []
    for i in np.argsort(-spread, kind="stable"):
        if len(picked) == NEXT_MIXES:
            break
        if all(np.abs(candidates[i] - candidates[j]).sum() >= SEPARATION_L1 for j in picked):
            picked.append(int(i))
    out = []
    for i in picked:
        from_best = float(np.abs(candidates[i] - w_best).sum())
        from_swept = float(np.min(np.abs(swept - candidates[i]).sum(axis=1)))
        out.append({"mix": dict(zip(tiers, map(float, candidates[i]), strict=True)), "n_params": n, "tokens": d,
                    "epochs": dict(zip(tiers, map(float, candidates[i] * d / pool), strict=True)),
                    "predicted_loss": float(point[i]), "spread_95": float(spread[i]),
                    "reason": (f"the bootstrap draws' 95% spread of its loss at the largest swept run's size is "
                               f"{spread[i]:.4f} nats (the widest near the recommendation); L1 {from_best:.2f} from the "
                               f"recommended mix, {from_swept:.2f} from the nearest swept mix")})
    return out


def _caps_for(tiers: Sequence[str], epoch_cap: Mapping[str, float | None] | None) -> dict[str, float | None]:
    """Each tier's cap: the one given, else DEFAULT_EPOCH_CAP; a cap that is not positive is an error."""
    given = dict(epoch_cap or {})
    unknown = sorted(set(given) - set(tiers))
    if unknown:
        raise FitDataError(f"{{epoch_cap}} {unknown[0]}: not a tier of the runs ({', '.join(tiers)})", "epoch_cap")
    caps = {t: given.get(t, DEFAULT_EPOCH_CAP) for t in tiers}
    bad = [t for t, c in caps.items() if c is not None and not (math.isfinite(c) and c > 0)]
    if bad:
        raise FitDataError(f"{{epoch_cap}} {bad[0]}={caps[bad[0]]}: expected a positive number of epochs", "epoch_cap")
    return caps


def _pools_of(data: FitData, tiers: Sequence[str]) -> dict[str, float]:
    """Each tier's pool as the runs record it (the largest, for runs that list several)."""
    missing = [t for t in tiers if f"U_{t}" not in data.columns]
    if missing:
        raise FitDataError(f"{data.source}: no pool (unique tokens U_{missing[0]}) for tier {missing[0]!r}; "
                           "expected one for every tier", "pool")
    return {t: float(np.max(data.columns[f"U_{t}"])) for t in tiers}


def _largest_run(data: FitData) -> dict[str, float]:
    i = int(np.argmax(data.columns["C"]))
    return {"n_params": float(data.columns["N"][i]), "tokens": float(data.columns["D"][i]),
            "flops": float(data.columns["C"][i])}


def _check_reach(budget: float, largest: float, force: bool) -> list[str]:
    factor = budget / largest
    if factor > EXTRAPOLATION_REFUSE and not force:
        raise ExtrapolationRefused(f"budget {budget:.3g} FLOPs is {factor:.3g}x the largest fitted run ({largest:.3g}), "
                                   f"beyond the {EXTRAPOLATION_REFUSE:.0e}x a recommendation trusts: pass force=True "
                                   "(--force) to answer anyway")
    if factor > EXTRAPOLATION_WARN:
        return [f"the budget is {factor:.3g}x the largest fitted run: the law is extrapolated far past its runs"]
    return []


def _bootstrap_draws(choice: MixtureChoice, data: FitData, tiers: Sequence[str], n_bootstrap: int, seed: int
                     ) -> tuple[np.ndarray, float]:
    """(S + 1, P) parameter rows, the full fit first, then each cluster-bootstrap refit (the runs
    of one mix resampled together); and the share of refits that converged."""
    from scaler.fitting.fitter import bootstrap  # lazy: JAX

    boot = bootstrap(choice.law, data.columns, data.loss, choice.fit, n=n_bootstrap, seed=seed,
                     clusters=mix_labels(data, tiers))
    return np.vstack([choice.fit.theta, boot.bootstrap_theta]), float(boot.bootstrap_converged)


def recommend_mixture(data: FitData, budget_flops: float, *, epoch_cap: Mapping[str, float | None] | None = None,
                      n_bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0, folds: int = DEFAULT_FOLDS,
                      reference: str | None = None, laws: Sequence[str] | None = None,
                      choice: MixtureChoice | None = None, force: bool = False,
                      progress: Callable[[str], None] = lambda message: None) -> MixtureRecommendation:
    """The recommended mixture for `budget_flops` (under the runs' convention, `data.compute`; module
    docstring). `epoch_cap`: tier -> the most epochs of its pool the run may read (None:
    uncapped), DEFAULT_EPOCH_CAP for a tier not named. `laws` restricts the candidates (default
    all of fitting.mixture.MIXTURE_LAWS); `choice` reuses a `choose_mixture_law` result;
    `progress` hears what is being done, once the inputs are checked. Seeded: the same inputs give
    the same answer."""
    if not (math.isfinite(budget_flops) and budget_flops > 0):
        raise FitDataError(f"{{budget_flops}} {budget_flops}: expected a positive number of FLOPs", "budget_flops")
    if n_bootstrap < 2:
        raise FitDataError(f"{{n_bootstrap}} {n_bootstrap}: expected 2 resamples or more", "n_bootstrap")
    tiers = mixture_tiers(data)
    if len(tiers) < 2:
        raise FitDataError(f"{data.source}: the runs mix {len(tiers)} tier; a mixture needs two or more", "weight")
    caps, pools, largest = _caps_for(tiers, epoch_cap), _pools_of(data, tiers), _largest_run(data)
    notes = _check_reach(budget_flops, largest["flops"], force)
    if choice is None:
        names, n_mixes = tuple(laws or MIXTURE_LAWS), len(set(mix_labels(data, tiers).tolist()))
        progress(f"{data.source}: {data.n_points} runs of {n_mixes} mixes; {min(folds, n_mixes)}-fold cross-validation "
                 f"over mixes of {', '.join(names)}")
        choice = choose_mixture_law(data, tiers, reference, folds=folds, seed=seed, names=names)
    law, compute = choice.law, data.compute
    progress(f"{choice.name}: {n_bootstrap} cluster-bootstrap refits (one cluster per mix), then the search")
    thetas, converged = _bootstrap_draws(choice, data, tiers, n_bootstrap, seed)
    w, n_best, loss = optimise_mix(law, thetas[0], budget_flops, tiers, pools, caps, compute)
    d_best = float(compute.tokens(n_best, budget_flops))
    at_best = _at_point(law, thetas[1:], n_best, d_best, w[None, :], tiers, pools)[:, 0]
    single_log_n, single_log_loss = _single_tiers(law, thetas, budget_flops, tiers, pools, caps, compute)
    best_single = int(np.argmin(single_log_loss[:, 0]))
    beats = at_best < np.min(single_log_loss[:, 1:], axis=0)
    runs = _run_intervals(at_best, choice.noise_sd, seed)
    singles = []
    for j, t in enumerate(tiers):
        n_t = float(np.exp(single_log_n[j, 0]))
        d_t = float(compute.tokens(n_t, budget_flops))
        singles.append({"tier": t, "n_params": n_t, "tokens": d_t, "epochs": d_t / pools[t],
                        "loss": float(np.exp(single_log_loss[j, 0]))})
    if converged < 0.9:
        notes.append(f"only {converged:.0%} of the bootstrap refits converged: the intervals may be too narrow or wide")
    if not choice.fit.converged:
        notes.append(f"the {law.name} fit stopped at {choice.fit.stopped} (gradient norm {choice.fit.grad_norm:.2g})")
    if choice.fit.flat_directions:
        notes.append(f"the runs do not pin down {'; '.join(choice.fit.flat_directions)}: bootstrap refits start at the "
                     "fit and may not travel along it, so the intervals can be too narrow; more sizes and token counts "
                     "would pin it")
    return MixtureRecommendation(
        budget_flops=float(budget_flops), flops_convention=compute.convention,
        extrapolation=float(budget_flops / largest["flops"]), largest_run=largest, law=choice.name,
        law_description=law.description, candidates=choice.candidates, chosen_by=choice.reason, tiers=list(tiers),
        pools=pools, epoch_caps=caps, mix=dict(zip(tiers, map(float, w), strict=True)), n_params=n_best, tokens=d_best,
        epochs={t: float(w[j] * d_best / pools[t]) for j, t in enumerate(tiers)}, loss=loss,
        loss_interval_80=runs[0.8], loss_interval_95=runs[0.95],
        mean_interval_95=percentile_interval(np.exp(at_best), 0.95), noise_sd_log=choice.noise_sd,
        single_tiers=singles, best_single_tier=tiers[best_single], p_beats_best_single=float(np.mean(beats)),
        p_beats_how=("share of bootstrap draws in which the loss at the fixed recommended point is below the best "
                     "single tier's, each tier re-optimised in N per draw under the same caps"),
        next_mixes=_next_mixes(law, thetas, w, largest, tiers, pools,
                               np.column_stack([data.columns[f"w_{t}"] for t in tiers])),
        n_bootstrap=len(thetas) - 1, bootstrap_converged=converged, seed=seed,
        params={**choice.fit.params, **choice.fit.derived}, notes=notes)
