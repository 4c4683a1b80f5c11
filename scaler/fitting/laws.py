"""Parametric scaling laws (docs/design.md §5), each formula written once for NumPy and JAX.

Every formula takes `xp`, the array namespace it computes with: `numpy` (evaluation, figures,
the recommendation's search over bootstrap samples) or `jax.numpy` (the fitter's `jax.grad`,
`jax.hessian` and `jax.vmap`). Arguments broadcast by the usual rules, so one call evaluates
parameter samples (S, 1) against a grid (S, K). JAX is imported only when a law is evaluated
with it: NumPy callers (the report) never load it.

The shared formulas:

- `chinchilla_log_loss`: log L for L = E + A/N^alpha + B/D^beta, in the log-sum-exp form of
  Hoffmann et al. 2022 / Besiroglu et al. 2024: log L = LSE(a - alpha log N, b - beta log D, e),
  A = e^a, B = e^b, E = e^e.
- `repeated_tokens`: Muennighoff et al. 2023's effective data D' = U + U R* (1 - exp(-R/R*)),
  R = D/U - 1, for D tokens drawn from U unique ones.
- `tier_tokens`: a quality tier's effective tokens kappa_t D'_t.
- `allocation_log_g`, `allocation_exponents`, `chinchilla_allocation`: the compute-optimal
  (N_opt, D_opt) under C = 6 N D.

A `Law` bundles a law's functions over an unconstrained parameter vector `theta` (P,):

- `predict_log(theta, data, xp=None)`: log of the predicted loss for every row of `data` (a dict
  of column name -> array); xp=None is `jax.numpy`. `theta[i]` may itself be an array (e.g.
  (S, 1) samples) that broadcasts against the columns.
- `predict(theta, data)`: the predicted loss (not log), evaluated in NumPy float64.
- `start_grid()`: (S, P) starting points for the multi-start fit.
- `derived(theta)`: named quantities computed from theta (E, A, B, exponents, R*, kappa, ...).
- `allocation(theta, C)`: (N_opt, D_opt) under C = 6 N D where the law defines it, else None.
- `constants`: the numbers the law holds fixed (a base law's a, b, e, alpha, beta).
- `spec`: the factory arguments that rebuild it, `law_from_spec(law.spec)` (fit.json keeps it).

Laws are built by the factories below (`LAWS[name](...)`). Factories are cached on their
(hashable) arguments, so `chinchilla() is chinchilla()`: the fitter compiles its solver once per
law object.

- `chinchilla()`: theta = (a, b, e, alpha, beta).
- `data_constrained(base=None)`: Muennighoff et al. 2023 repetition law (see its docstring).
- `quality(tiers, reference="raw", ...)`: per-tier effective-data multipliers kappa_t, with
  kappa = 1 for the reference tier (docs/design.md §5).
- `mixing(domains)`: Ye et al. 2024 data-mixing law L = c + k exp(sum_j t_j r_j).
- `chinchilla_group_e(groups)`: Chinchilla with one irreducible loss per group,
  theta = (a, b, alpha, beta, e_<group>...).
- `kaplan()`: Kaplan et al. 2020 eq. (1.5), theta = (log_N_c, log_D_c, alpha_N, alpha_D).
- `overtrain()`: Gadre et al. 2024, L(C, M) = E + (a M^eta + b M^-eta) C^-c,
  theta = (log_a, log_b, log_E, eta, c).
- `broken()`: a smoothly broken power law in N, theta = (a, b, e, alpha, beta, log_N_b, delta_alpha).

The last four have no closed-form allocation here (`allocation` returns None).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Law",
    "LAWS",
    "chinchilla",
    "data_constrained",
    "quality",
    "mixing",
    "chinchilla_group_e",
    "kaplan",
    "overtrain",
    "broken",
    "law_from_spec",
    "chinchilla_log_loss",
    "repeated_tokens",
    "tier_tokens",
    "allocation_log_g",
    "allocation_exponents",
    "chinchilla_allocation",
]

CHINCHILLA_PARAMS = ("a", "b", "e", "alpha", "beta")


def _jax_numpy() -> Any:
    import jax.numpy as jnp  # lazy: NumPy callers never import JAX

    return jnp


@dataclass(frozen=True, eq=False)
class Law:
    """A fittable law. Identity-hashed (eq=False) so it can key compiled-solver caches.

    `log_loss(theta, data, xp)` is the law's formula; `predict_log` and `predict` call it.
    """

    name: str
    param_names: tuple[str, ...]
    columns: tuple[str, ...]
    log_loss: Callable[[Any, Mapping[str, Any], Any], Any]
    start_grid: Callable[[], np.ndarray]
    derived: Callable[[np.ndarray], dict[str, float]]
    spec: Mapping[str, Any]
    allocation: Callable[[np.ndarray, float], tuple[float, float] | None] = lambda theta, C: None  # closed form, if any
    constants: Mapping[str, float] = field(default_factory=dict)
    positive_columns: tuple[str, ...] = ()
    description: str = ""

    @property
    def n_params(self) -> int:
        return len(self.param_names)

    def predict_log(self, theta: Any, data: Mapping[str, Any], xp: Any = None) -> Any:
        """log L for every row of `data`, computed with `xp` (None: jax.numpy, for the fitter)."""
        return self.log_loss(theta, data, _jax_numpy() if xp is None else xp)

    def predict(self, theta: Any, data: Mapping[str, Any]) -> np.ndarray:
        """Predicted loss (not log) in NumPy float64; out-of-range parameters give inf/NaN silently."""
        cols = {k: np.asarray(data[k], dtype=np.float64) for k in self.columns}
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return np.exp(self.predict_log(np.asarray(theta, dtype=np.float64), cols, np))


# --------------------------------------------------------------------------------------------
# Shared formulas


def chinchilla_log_loss(a: Any, b: Any, e: Any, alpha: Any, beta: Any, log_n: Any, log_d: Any, *, xp: Any) -> Any:
    """log L, L = E + A/N^alpha + B/D^beta: LSE(a - alpha log N, b - beta log D, e)."""
    return xp.logaddexp(xp.logaddexp(a - alpha * log_n, b - beta * log_d), e + 0.0 * log_n)


def repeated_tokens(tokens: Any, unique_tokens: Any, r_star: Any, *, xp: Any) -> Any:
    """Effective data D' of D `tokens` drawn from U `unique_tokens` (Muennighoff et al. 2023, eq. 5):
    D' = U + U R* (1 - exp(-R/R*)), R = D/U - 1.

    With D <= U nothing repeats and D' = D. Written with a `where` whose both branches stay
    finite so gradients are clean.
    """
    repeats = xp.maximum(tokens / unique_tokens - 1.0, 0.0)
    decayed = unique_tokens + unique_tokens * r_star * (-xp.expm1(-repeats / r_star))
    return xp.where(tokens > unique_tokens, decayed, tokens)


def tier_tokens(tokens: Any, weight: Any, kappa: Any, unique_tokens: Any = None, r_star: Any = None, *,
                xp: Any) -> Any:
    """A quality tier's effective tokens kappa_t D'_t in a run of `tokens` tokens with mix weight
    `weight`: D'_t = repeated_tokens(w_t D, U_t, R*) with a pool U_t, else w_t D."""
    d_t = weight * tokens
    if unique_tokens is not None:
        d_t = repeated_tokens(d_t, unique_tokens, r_star, xp=xp)
    return kappa * d_t


def allocation_log_g(a: Any, b: Any, alpha: Any, beta: Any, *, xp: Any) -> Any:
    """log G, G = (alpha A / (beta B))^(1/(alpha+beta)): N_opt = G (C/6)^(beta/(alpha+beta))."""
    return (xp.log(alpha) + a - xp.log(beta) - b) / (alpha + beta)


def allocation_exponents(alpha: float, beta: float) -> tuple[float, float]:
    """(a, b) with N_opt ∝ C^a and D_opt ∝ C^b: a = beta/(alpha+beta), b = alpha/(alpha+beta)."""
    s = alpha + beta
    return beta / s, alpha / s


def chinchilla_allocation(a: float, b: float, alpha: float, beta: float, C: Any) -> tuple[Any, Any] | None:
    """Closed-form compute-optimal (N_opt, D_opt) under C = 6 N D (docs/design.md §5).

    N_opt = G (C/6)^(beta/(alpha+beta)), D_opt = (C/6) / N_opt (= G^-1 (C/6)^(alpha/(alpha+beta)),
    written so 6 N D == C exactly up to rounding). C a number gives floats, an array gives
    arrays. None when an exponent or a budget is not positive (no interior optimum).
    """
    c = np.asarray(C, dtype=np.float64)
    if not (alpha > 0 and beta > 0) or not all(map(math.isfinite, (a, b, alpha, beta))):
        return None
    if not (np.all(c > 0) and np.all(np.isfinite(c))):
        return None
    log_c6 = np.log(c / 6.0)
    n_opt = np.exp(allocation_log_g(a, b, alpha, beta, xp=np) + log_c6 * beta / (alpha + beta))
    d_opt = (c / 6.0) / n_opt
    return (float(n_opt), float(d_opt)) if c.ndim == 0 else (n_opt, d_opt)


# --------------------------------------------------------------------------------------------
# Chinchilla


def _chin_derived(a: float, b: float, e: float, alpha: float, beta: float) -> dict[str, float]:
    out = {"E": math.exp(e), "A": math.exp(a), "B": math.exp(b), "alpha": alpha, "beta": beta}
    if alpha + beta != 0:
        out["a_exponent"], out["b_exponent"] = allocation_exponents(alpha, beta)  # N_opt ∝ C^a, D_opt ∝ C^b
        if alpha > 0 and beta > 0:
            out["log_G"] = float(allocation_log_g(a, b, alpha, beta, xp=np))
    return out


def _chin_allocation(params: Sequence[float], C: float) -> tuple[float, float] | None:
    a, b, _, alpha, beta = (float(x) for x in params[:5])
    return chinchilla_allocation(a, b, alpha, beta, C)


CHINCHILLA_GRID = {
    "a": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    "b": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    "e": (-1.0, -0.5, 0.0, 0.5, 1.0),
    "alpha": (0.0, 0.5, 1.0, 1.5, 2.0),
    "beta": (0.0, 0.5, 1.0, 1.5, 2.0),
}


def _distinct_names(names: Sequence[Any], law: str, what: str) -> tuple[str, ...]:
    """The names as a tuple of strings; a ValueError unless there is at least one and none repeats."""
    out = tuple(str(n) for n in names)
    if len(out) < 1 or len(set(out)) != len(out):
        raise ValueError(f"{law} needs one or more distinct {what} names, got {list(out)}")
    return out


def _grid(*axes: Sequence[float]) -> np.ndarray:
    return np.array(list(itertools.product(*axes)), dtype=np.float64)


@functools.cache
def chinchilla() -> Law:
    """L = E + A/N^alpha + B/D^beta, theta = (a, b, e, alpha, beta); 4,500-start grid (docs/design.md §5)."""

    def log_loss(theta: Any, data: Mapping[str, Any], xp: Any) -> Any:
        a, b, e, alpha, beta = (theta[i] for i in range(5))
        return chinchilla_log_loss(a, b, e, alpha, beta, xp.log(data["N"]), xp.log(data["D"]), xp=xp)

    def start_grid() -> np.ndarray:
        return _grid(*(CHINCHILLA_GRID[k] for k in CHINCHILLA_PARAMS))

    return Law(
        name="chinchilla",
        param_names=CHINCHILLA_PARAMS,
        columns=("N", "D"),
        log_loss=log_loss,
        start_grid=start_grid,
        derived=lambda theta: _chin_derived(*map(float, theta[:5])),
        allocation=_chin_allocation,
        spec={"family": "chinchilla"},
        positive_columns=("N", "D"),
        description="log L = LSE(a - alpha log N, b - beta log D, e)",
    )


# --------------------------------------------------------------------------------------------
# Repetition (Muennighoff et al. 2023)


def _base_tuple(base: Any) -> tuple[float, float, float, float, float] | None:
    if base is None:
        return None
    if hasattr(base, "params") and isinstance(base.params, Mapping):  # a FitResult
        base = base.params
    if isinstance(base, Mapping):
        vals = tuple(float(base[k]) for k in CHINCHILLA_PARAMS)
    else:
        vals = tuple(float(x) for x in np.asarray(base, dtype=np.float64).ravel())
    if len(vals) != 5 or not all(map(math.isfinite, vals)):
        raise ValueError("base must be (a, b, e, alpha, beta): five finite numbers")
    return vals  # type: ignore[return-value]


def _chin_part(theta: Any, base: tuple[float, ...] | None) -> tuple[Any, ...]:
    """(a, b, e, alpha, beta): theta's first five entries, or the fixed base law's."""
    return base if base is not None else tuple(theta[i] for i in range(5))


def _data_constrained_log_loss(chin: Sequence[Any], log_r_d_star: Any, log_r_n_star: Any,
                               data: Mapping[str, Any], xp: Any) -> Any:
    a, b, e, alpha, beta = chin
    n, d, u = data["N"], data["D"], data["U"]
    u_d = xp.minimum(u, d)
    d_eff = repeated_tokens(d, u_d, xp.exp(log_r_d_star), xp=xp)
    log_g = allocation_log_g(a, b, alpha, beta, xp=xp)
    log_u_n = log_g + (beta / alpha) * (log_g + xp.log(u_d))
    u_n = xp.minimum(n, xp.exp(log_u_n))
    n_eff = repeated_tokens(n, u_n, xp.exp(log_r_n_star), xp=xp)
    return chinchilla_log_loss(a, b, e, alpha, beta, xp.log(n_eff), xp.log(d_eff), xp=xp)


def data_constrained(base: Any = None) -> Law:
    """Muennighoff et al. 2023 ("Scaling Data-Constrained Language Models"), their eq. (5)/(6).

    Columns N, D, U (unique tokens). With U_D = min(U, D): D' = repeated_tokens(D, U_D, R_D*).
    U_N = min(N, N_opt(U_D)) where N_opt(U_D) is the base law's compute-optimal model size for
    U_D tokens, i.e. the N whose closed-form D_opt (C = 6 N D) equals U_D:
        log N_opt(U_D) = log G + (beta/alpha) (log G + log U_D)  (G: `allocation_log_g`).
    N' = repeated_tokens(N, U_N, R_N*); L = chinchilla(N', D').
    This variant reproduces the authors' published objective (0.0158259 on fit182;
    docs/design.md §8).

    Parameterisation: R* are fitted on the log scale, theta ends with (log_R_D_star,
    log_R_N_star): positivity without bounds and a better-conditioned (but still flat) surface.
    `derived` reports R_D_star and R_N_star.

    `base=(a, b, e, alpha, beta)` (tuple, dict or FitResult) fixes the Chinchilla part and fits
    only the two log R*; `base=None` fits all seven parameters.
    """
    return _data_constrained(_base_tuple(base))


@functools.cache
def _data_constrained(base: tuple[float, ...] | None) -> Law:
    nb = 0 if base is not None else 5

    def log_loss(theta: Any, data: Mapping[str, Any], xp: Any) -> Any:
        return _data_constrained_log_loss(_chin_part(theta, base), theta[nb], theta[nb + 1], data, xp)

    def start_grid() -> np.ndarray:
        if base is not None:
            r = np.log([1.0, 3.0, 10.0, 30.0, 100.0])
            return _grid(r, r)
        r = np.log([3.0, 15.0, 60.0])
        return _grid((5.0, 10.0), (5.0, 10.0), (0.0, 0.5, 1.0), (0.25, 0.5), (0.25, 0.5), r, r)

    def derived(theta: np.ndarray) -> dict[str, float]:
        out = _chin_derived(*(float(x) for x in _chin_part(theta, base)))
        out.update(R_D_star=math.exp(float(theta[nb])), R_N_star=math.exp(float(theta[nb + 1])))
        return out

    return Law(
        name="data_constrained",
        param_names=(() if base is not None else CHINCHILLA_PARAMS) + ("log_R_D_star", "log_R_N_star"),
        columns=("N", "D", "U"),
        log_loss=log_loss,
        start_grid=start_grid,
        derived=derived,
        # Unconstrained (no repetition) Chinchilla allocation of the base law.
        allocation=lambda theta, C: _chin_allocation(_chin_part(theta, base), C),
        spec={"family": "data_constrained", "base": base},
        constants=dict(zip(CHINCHILLA_PARAMS, base)) if base is not None else {},
        positive_columns=("N", "D", "U"),
        description="chinchilla(N', D') with Muennighoff et al. 2023 repetition decay",
    )


# --------------------------------------------------------------------------------------------
# Quality tiers


def quality(tiers: Sequence[str], reference: str = "raw", pools: bool = False, e_shift: bool = False,
            base: Any = None, repetition: str = "shared") -> Law:
    """Per-tier effective-data law (docs/design.md §5).

    `reference` is the tier whose kappa is 1 (not fitted), wherever it stands in `tiers`; every
    other tier t is fitted as log_kappa_<t>, in the order of `tiers`. A reference that is not
    among `tiers` is a ValueError. Columns: N, D, w_<t> for every tier (mix weights, summing to
    1 per row) and, with `pools=True`, U_<t> (the tier's unique-token pool). A run trains on
        D_eff = sum_t tier_tokens(D, w_t, kappa_t, U_t, R_D*)  (pools=True: one shared R_D*, or with
                                                                repetition="per_tier" one R_D*_<t> per tier)
    and L = chinchilla(N, D_eff). With `e_shift=True` each non-reference tier also shifts the
    irreducible loss: e_eff = e + sum_{t != ref} w_t de_<t> (log E linear in the mix weights).
    With `base=(a, b, e, alpha, beta)` the Chinchilla part is fixed; otherwise it is fitted.
    Params: [a, b, e, alpha, beta,] log_kappa_<t>..., [log_R_D_star | log_R_D_star_<t>...,] [de_<t>...].
    `allocation` is the base law's (reference tier, no repetition): N_opt and
    reference-equivalent D_opt.
    """
    tiers = _distinct_names(tiers, "quality law", "tier")
    if reference not in tiers:
        raise ValueError(f"quality law: reference tier {reference!r} is not among the tiers {list(tiers)}")
    if repetition not in ("shared", "per_tier") or (repetition == "per_tier" and not pools):
        raise ValueError(f"quality law: repetition {repetition!r}: expected 'shared', or 'per_tier' with pools")
    return _quality(tiers, str(reference), bool(pools), bool(e_shift), _base_tuple(base), repetition == "per_tier")


@functools.cache
def _quality(tiers: tuple[str, ...], reference: str, pools: bool, e_shift: bool,
             base: tuple[float, ...] | None, per_tier_r: bool = False) -> Law:
    others = tuple(t for t in tiers if t != reference)
    names: list[str] = [] if base is not None else list(CHINCHILLA_PARAMS)
    i_kappa = len(names)
    names += [f"log_kappa_{t}" for t in others]
    i_r = len(names)
    r_names = [f"log_R_D_star_{t}" for t in tiers] if per_tier_r else ["log_R_D_star"]
    names += r_names if pools else []
    i_de = len(names)
    names += [f"de_{t}" for t in others] if e_shift else []
    columns = ("N", "D", *(f"w_{t}" for t in tiers), *((f"U_{t}" for t in tiers) if pools else ()))

    def log_loss(theta: Any, data: Mapping[str, Any], xp: Any) -> Any:
        a, b, e, alpha, beta = _chin_part(theta, base)
        kappa = {t: xp.exp(theta[i_kappa + j]) for j, t in enumerate(others)}
        d_eff = 0.0
        for j, t in enumerate(tiers):
            pool = data[f"U_{t}"] if pools else None
            r_star = xp.exp(theta[i_r + (j if per_tier_r else 0)]) if pools else None
            d_eff = d_eff + tier_tokens(data["D"], data[f"w_{t}"], kappa.get(t, 1.0), pool, r_star, xp=xp)
        if e_shift:
            for j, t in enumerate(others):
                e = e + data[f"w_{t}"] * theta[i_de + j]
        return chinchilla_log_loss(a, b, e, alpha, beta, xp.log(data["N"]), xp.log(d_eff), xp=xp)

    def start_grid() -> np.ndarray:
        axes: list[Sequence[float]] = []
        if base is None:
            axes += [(4.0, 8.0), (4.0, 8.0), (0.0, 0.5, 1.0), (0.25, 0.5), (0.25, 0.5)]
        axes += [(0.0, math.log(2.0))] * len(others)
        if pools:
            axes += [(math.log(5.0), math.log(20.0))] * len(r_names)
        if e_shift:
            axes += [(0.0,)] * len(others)
        g = _grid(*axes)
        if len(g) > 4000:  # many tiers: a seeded subset keeps the fit affordable
            g = g[np.random.default_rng(0).choice(len(g), 4000, replace=False)]
        return g

    def derived(theta: np.ndarray) -> dict[str, float]:
        out = _chin_derived(*(float(x) for x in _chin_part(theta, base)))
        out[f"kappa_{reference}"] = 1.0
        for j, t in enumerate(others):
            out[f"kappa_{t}"] = math.exp(float(theta[i_kappa + j]))
        for j, r_name in enumerate(r_names if pools else []):
            out[r_name.removeprefix("log_")] = math.exp(float(theta[i_r + j]))
        return out

    name = "quality" + ("_pools" if pools else "") + ("_per_tier_r" if per_tier_r else "") + ("_eshift" if e_shift else "")
    return Law(
        name=name,
        param_names=tuple(names),
        columns=columns,
        log_loss=log_loss,
        start_grid=start_grid,
        derived=derived,
        allocation=lambda theta, C: _chin_allocation(_chin_part(theta, base), C),
        spec={"family": "quality", "tiers": tiers, "reference": reference, "pools": pools, "e_shift": e_shift,
              "base": base, **({"repetition": "per_tier"} if per_tier_r else {})},
        constants=dict(zip(CHINCHILLA_PARAMS, base)) if base is not None else {},
        positive_columns=("N", "D", *((f"U_{t}" for t in tiers) if pools else ())),
        description=(f"chinchilla(N, sum_t kappa_t D'_t), kappa_{reference} = 1"
                     + (" with per-tier E shift" if e_shift else "")),
    )


# --------------------------------------------------------------------------------------------
# Mixing law (Ye et al. 2024)


def mixing(domains: Sequence[str]) -> Law:
    """Ye et al. 2024 data-mixing law: L = c + k exp(sum_j t_j r_j), r_j = mix proportion.

    Columns w_<domain>. theta = (log_c, log_k, t_<domain>...); log L = LSE(log_c, log_k + t.r).
    Every domain has its own t_j: there is no reference domain. Start grid: log_c in
    {-1, 0, 0.5, 1}, log_k in {-3, -1, 0}, t_j in {-2, 0, 2} (up to five domains; more domains
    use 3,000 seeded random starts in the same box).
    """
    domains = _distinct_names(domains, "mixing law", "domain")
    return _mixing(domains)


@functools.cache
def _mixing(domains: tuple[str, ...]) -> Law:
    m = len(domains)

    def log_loss(theta: Any, data: Mapping[str, Any], xp: Any) -> Any:
        s = theta[1]
        for j, d in enumerate(domains):
            s = s + theta[2 + j] * data[f"w_{d}"]
        return xp.logaddexp(theta[0] + 0.0 * s, s)

    def start_grid() -> np.ndarray:
        if m <= 5:
            return _grid((-1.0, 0.0, 0.5, 1.0), (-3.0, -1.0, 0.0), *([(-2.0, 0.0, 2.0)] * m))
        rng = np.random.default_rng(0)
        lo = np.array([-1.0, -3.0] + [-2.0] * m)
        hi = np.array([1.0, 0.0] + [2.0] * m)
        return lo + (hi - lo) * rng.random((3000, m + 2))

    def derived(theta: np.ndarray) -> dict[str, float]:
        out = {"c": math.exp(float(theta[0])), "k": math.exp(float(theta[1]))}
        out.update({f"t_{d}": float(theta[2 + j]) for j, d in enumerate(domains)})
        return out

    return Law(
        name="mixing",
        param_names=("log_c", "log_k", *(f"t_{d}" for d in domains)),
        columns=tuple(f"w_{d}" for d in domains),
        log_loss=log_loss,
        start_grid=start_grid,
        derived=derived,
        spec={"family": "mixing", "domains": domains},
        description="L = c + k exp(sum_j t_j r_j)",
    )


# --------------------------------------------------------------------------------------------
# Chinchilla with a per-group irreducible loss


def chinchilla_group_e(groups: Sequence[str]) -> Law:
    """L = E_w + A/N^alpha + B/D^beta with log E_w = e = sum_g w_g e_g (one e per group).

    Columns N, D and w_<g> for every group: a one-hot indicator of the run's group, or mix
    weights summing to 1 (then log E is linear in the weights, as in `quality(e_shift=True)`).
    theta = (a, b, alpha, beta, e_<g>...) in the order of `groups`: the shared Chinchilla part
    first, then one e per group (natural logs: E_g = exp(e_g), in the loss's units, nats).
    `derived`: E_<g> for each group, A, B, alpha, beta, a_exponent, b_exponent, log_G.
    Start grid: the Chinchilla grid's a, b, alpha, beta with every e_g equal to the same value
    in {-1, -0.5, 0, 0.5, 1} (4,500 starts whatever the number of groups).
    """
    groups = _distinct_names(groups, "chinchilla_group_e", "group")
    return _chinchilla_group_e(groups)


@functools.cache
def _chinchilla_group_e(groups: tuple[str, ...]) -> Law:
    m = len(groups)

    def log_loss(theta: Any, data: Mapping[str, Any], xp: Any) -> Any:
        a, b, alpha, beta = (theta[i] for i in range(4))
        e = 0.0
        for j, g in enumerate(groups):
            e = e + data[f"w_{g}"] * theta[4 + j]
        return chinchilla_log_loss(a, b, e, alpha, beta, xp.log(data["N"]), xp.log(data["D"]), xp=xp)

    def start_grid() -> np.ndarray:
        g = _grid(*(CHINCHILLA_GRID[k] for k in ("a", "b", "alpha", "beta", "e")))
        return np.hstack([g[:, :4], np.repeat(g[:, 4:5], m, axis=1)])

    def derived(theta: np.ndarray) -> dict[str, float]:
        a, b, alpha, beta = (float(x) for x in theta[:4])
        out = {f"E_{g}": math.exp(float(theta[4 + j])) for j, g in enumerate(groups)}
        chin = _chin_derived(a, b, 0.0, alpha, beta)
        del chin["E"]
        out.update(chin)
        return out

    return Law(
        name="chinchilla_group_e",
        param_names=("a", "b", "alpha", "beta", *(f"e_{g}" for g in groups)),
        columns=("N", "D", *(f"w_{g}" for g in groups)),
        log_loss=log_loss,
        start_grid=start_grid,
        derived=derived,
        spec={"family": "chinchilla_group_e", "groups": groups},
        positive_columns=("N", "D"),
        description="log L = LSE(a - alpha log N, b - beta log D, sum_g w_g e_g)",
    )


# --------------------------------------------------------------------------------------------
# Kaplan et al. 2020


KAPLAN_PARAMS = ("log_N_c", "log_D_c", "alpha_N", "alpha_D")


@functools.cache
def kaplan() -> Law:
    """Kaplan et al. 2020 eq. (1.5): L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D.

    Columns N (parameters), D (tokens). theta = (log_N_c, log_D_c, alpha_N, alpha_D), natural
    logs of N_c (parameters) and D_c (tokens):
        log L = alpha_D * logaddexp((alpha_N/alpha_D)(log_N_c - log N), log_D_c - log D).
    No irreducible term: L -> 0 as N, D -> inf. Published (non-embedding N, their tokenizer):
    alpha_N 0.076, alpha_D 0.103, N_c 6.4e13, D_c 1.8e13. Start grid: log_N_c and log_D_c in
    {20, 25, 30, 35, 40}, alpha_N and alpha_D in {0.05, 0.1, 0.2, 0.4} (400 starts).
    """

    def log_loss(theta: Any, data: Mapping[str, Any], xp: Any) -> Any:
        log_nc, log_dc, alpha_n, alpha_d = (theta[i] for i in range(4))
        n_term = (alpha_n / alpha_d) * (log_nc - xp.log(data["N"]))
        return alpha_d * xp.logaddexp(n_term, log_dc - xp.log(data["D"]))

    def start_grid() -> np.ndarray:
        c = (20.0, 25.0, 30.0, 35.0, 40.0)
        x = (0.05, 0.1, 0.2, 0.4)
        return _grid(c, c, x, x)

    def derived(theta: np.ndarray) -> dict[str, float]:
        log_nc, log_dc, alpha_n, alpha_d = (float(x) for x in theta[:4])
        return {"N_c": math.exp(log_nc), "D_c": math.exp(log_dc), "alpha_N": alpha_n, "alpha_D": alpha_d,
                "alpha_N_over_alpha_D": alpha_n / alpha_d if alpha_d != 0 else float("nan")}

    return Law(
        name="kaplan",
        param_names=KAPLAN_PARAMS,
        columns=("N", "D"),
        log_loss=log_loss,
        start_grid=start_grid,
        derived=derived,
        spec={"family": "kaplan"},
        positive_columns=("N", "D"),
        description="log L = alpha_D * LSE((alpha_N/alpha_D)(log N_c - log N), log D_c - log D)",
    )


# --------------------------------------------------------------------------------------------
# Over-training (Gadre et al. 2024)


OVERTRAIN_PARAMS = ("log_a", "log_b", "log_E", "eta", "c")


@functools.cache
def overtrain() -> Law:
    """Gadre et al. 2024 ("Language models scale reliably with over-training"):
    L(C, M) = E + (a M^eta + b M^-eta) C^-c, C = 6 N D (FLOPs), M = D / N (tokens per parameter).

    Columns N (parameters), D (tokens); C and M are computed from them. The form's C is always
    6 N D, whatever convention the fit's FLOP figures use: it is a variable of the formula (a
    constant factor in it is absorbed by a and b), and `M_opt` is the optimum at fixed 6ND. The
    allocation a fit reports under flops_v1 is solved numerically (scaler/fitting/compute.py), not from
    M_opt. theta = (log_a, log_b,
    log_E, eta, c), natural logs of a, b, E:
        log L = LSE(log_E, log_a + eta log M - c log C, log_b - eta log M - c log C).
    The paper ties c = eta (its derivation from a Chinchilla law with alpha = beta); here c is
    free, and c = eta is the special case. (eta, a, b) and (-eta, b, a) are the same law (a fit
    may land on either sign of eta; compare |eta|). `derived` adds M_opt = (b/a)^(1/(2 eta)), the
    tokens per parameter that minimise L at any fixed C (the same for both signs; NaN at
    eta = 0). Start grid: log_a, log_b in {0, 5, 10, 15}, log_E in
    {-1, 0, 0.5, 1}, eta in {0, 0.1, 0.2, 0.4}, c in {0.1, 0.2, 0.4, 0.6} (1,024 starts).
    """

    def log_loss(theta: Any, data: Mapping[str, Any], xp: Any) -> Any:
        log_a, log_b, log_e, eta, c = (theta[i] for i in range(5))
        log_n, log_d = xp.log(data["N"]), xp.log(data["D"])
        log_m = log_d - log_n
        log_c = math.log(6.0) + log_n + log_d
        scale = -c * log_c
        return xp.logaddexp(xp.logaddexp(log_a + eta * log_m + scale, log_b - eta * log_m + scale),
                            log_e + 0.0 * log_m)

    def start_grid() -> np.ndarray:
        s = (0.0, 5.0, 10.0, 15.0)
        return _grid(s, s, (-1.0, 0.0, 0.5, 1.0), (0.0, 0.1, 0.2, 0.4), (0.1, 0.2, 0.4, 0.6))

    def derived(theta: np.ndarray) -> dict[str, float]:
        log_a, log_b, log_e, eta, c = (float(x) for x in theta[:5])
        # M_opt: the tokens per parameter minimising a M^eta + b M^-eta, i.e. L at any fixed C
        # (a minimum for either sign of eta)
        m_opt = float("nan")
        if eta != 0:
            log_m_opt = (log_b - log_a) / (2.0 * eta)
            m_opt = math.exp(log_m_opt) if log_m_opt < 709.0 else float("inf")
        return {"a": math.exp(log_a), "b": math.exp(log_b), "E": math.exp(log_e), "eta": eta, "c": c,
                "M_opt": m_opt}

    return Law(
        name="overtrain",
        param_names=OVERTRAIN_PARAMS,
        columns=("N", "D"),
        log_loss=log_loss,
        start_grid=start_grid,
        derived=derived,
        spec={"family": "overtrain"},
        positive_columns=("N", "D"),
        description="L = E + (a M^eta + b M^-eta) C^-c, C = 6 N D, M = D / N",
    )


# --------------------------------------------------------------------------------------------
# Smoothly broken power law in N


BROKEN_PARAMS = ("a", "b", "e", "alpha", "beta", "log_N_b", "delta_alpha")


@functools.cache
def broken() -> Law:
    """L = E + A N^-alpha (1 + N/N_b)^-delta_alpha + B D^-beta: the N exponent bends smoothly
    from alpha (N << N_b) to alpha + delta_alpha (N >> N_b); delta_alpha may be either sign.

    Columns N (parameters), D (tokens). theta = (a, b, e, alpha, beta, log_N_b, delta_alpha),
    a = log A, b = log B, e = log E, log_N_b = log N_b (natural logs):
        log L = LSE(a - alpha log N - delta_alpha softplus(log N - log_N_b), b - beta log D, e),
    softplus(x) = log(1 + e^x). As N_b -> inf it is `chinchilla()`. Start grid: a, b in
    {0, 5, 10, 15, 20}, e in {-1, 0, 0.5, 1}, alpha, beta in {0.25, 0.5, 1}, N_b in
    {1e7, 1e8, 1e9}, delta_alpha in {-0.2, 0.2} (5,400 starts).
    """

    def log_loss(theta: Any, data: Mapping[str, Any], xp: Any) -> Any:
        a, b, e, alpha, beta, log_nb, d_alpha = (theta[i] for i in range(7))
        log_n, log_d = xp.log(data["N"]), xp.log(data["D"])
        n_term = a - alpha * log_n - d_alpha * xp.logaddexp(0.0, log_n - log_nb)
        return xp.logaddexp(xp.logaddexp(n_term, b - beta * log_d), e + 0.0 * log_n)

    def start_grid() -> np.ndarray:
        s = (0.0, 5.0, 10.0, 15.0, 20.0)
        x = (0.25, 0.5, 1.0)
        return _grid(s, s, (-1.0, 0.0, 0.5, 1.0), x, x, np.log([1e7, 1e8, 1e9]), (-0.2, 0.2))

    def derived(theta: np.ndarray) -> dict[str, float]:
        a, b, e, alpha, beta, log_nb, d_alpha = (float(x) for x in theta[:7])
        return {"E": math.exp(e), "A": math.exp(a), "B": math.exp(b), "alpha": alpha, "beta": beta,
                "N_b": math.exp(log_nb), "delta_alpha": d_alpha, "alpha_large_N": alpha + d_alpha}

    return Law(
        name="broken",
        param_names=BROKEN_PARAMS,
        columns=("N", "D"),
        log_loss=log_loss,
        start_grid=start_grid,
        derived=derived,
        spec={"family": "broken"},
        positive_columns=("N", "D"),
        description="log L = LSE(a - alpha log N - delta_alpha log(1 + N/N_b), b - beta log D, e)",
    )


LAWS: dict[str, Callable[..., Law]] = {
    "chinchilla": chinchilla,
    "data_constrained": data_constrained,
    "quality": quality,
    "mixing": mixing,
    "chinchilla_group_e": chinchilla_group_e,
    "kaplan": kaplan,
    "overtrain": overtrain,
    "broken": broken,
}


def law_from_spec(spec: Mapping[str, Any]) -> Law:
    """The law a `Law.spec` describes (as saved in fit.json: lists for tuples), e.g.
    {"family": "quality", "tiers": ["raw", "clean"], "reference": "raw", ...}. An unknown family
    or arguments its factory does not take are a ValueError."""
    family = spec.get("family")
    if family not in LAWS:
        raise ValueError(f"law spec {dict(spec)!r}: unknown family; expected one of {sorted(LAWS)}")
    try:
        return LAWS[family](**{k: v for k, v in spec.items() if k != "family"})
    except TypeError as err:
        raise ValueError(f"law spec {dict(spec)!r}: {err}") from None
