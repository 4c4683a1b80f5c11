"""Parametric scaling laws (DESIGN §5), written so the fitter can differentiate them with JAX.

A `Law` is a bundle of plain functions over an unconstrained parameter vector `theta` (P,):

- `predict_log(theta, data)`: log of the predicted loss for every row of `data` (a dict of
  column name -> 1-D array). Pure `jax.numpy`, so `jax.grad` / `jax.hessian` / `jax.vmap` work.
- `start_grid()`: (S, P) starting points for the multi-start fit.
- `derived(theta)`: named quantities computed from theta (E, A, B, exponents, R*, kappa, ...).
- `allocation(theta, C)`: (N_opt, D_opt) under C = 6 N D where the law defines it, else None.
- `constants`: the fixed numbers the law carries (e.g. a base law held fixed).

Laws are built by the factories below (`LAWS[name](...)`). Factories are cached on their
(hashable) arguments, so `chinchilla() is chinchilla()`: the fitter compiles its solver once per
law object.

Laws:

- `chinchilla()`: L = E + A/N^alpha + B/D^beta in the log-sum-exp form of Hoffmann et al. 2022 /
  Besiroglu et al. 2024: log L = LSE(a - alpha log N, b - beta log D, e), theta = (a, b, e,
  alpha, beta), A = e^a, B = e^b, E = e^e.
- `data_constrained(base=None)`: Muennighoff et al. 2023 repetition law (see its docstring).
- `quality(tiers, ...)`: per-tier effective-data multipliers kappa_t (DESIGN §5).
- `mixing(domains)`: Ye et al. 2024 data-mixing law L = c + k exp(sum_j t_j r_j).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax.numpy as jnp
import numpy as np

__all__ = ["Law", "LAWS", "chinchilla", "data_constrained", "quality", "mixing", "chinchilla_allocation"]


@dataclass(frozen=True, eq=False)
class Law:
    """A fittable law. Identity-hashed (eq=False) so it can key compiled-solver caches."""

    name: str
    param_names: tuple[str, ...]
    columns: tuple[str, ...]
    predict_log: Callable[[Any, Mapping[str, Any]], Any]
    start_grid: Callable[[], np.ndarray]
    derived: Callable[[np.ndarray], dict[str, float]]
    allocation: Callable[[np.ndarray, float], tuple[float, float] | None]
    constants: Mapping[str, float] = field(default_factory=dict)
    positive_columns: tuple[str, ...] = ()
    description: str = ""

    @property
    def n_params(self) -> int:
        return len(self.param_names)

    def predict(self, theta: np.ndarray, data: Mapping[str, Any]) -> np.ndarray:
        """Predicted loss (not log) as a NumPy array."""
        cols = {k: jnp.asarray(np.asarray(data[k], dtype=np.float64)) for k in self.columns}
        return np.exp(np.asarray(self.predict_log(jnp.asarray(theta), cols)))


# --------------------------------------------------------------------------------------------
# Chinchilla


def _lse3(x: Any, y: Any, z: Any) -> Any:
    return jnp.logaddexp(jnp.logaddexp(x, y), z)


def _chin_log(a: Any, b: Any, e: Any, alpha: Any, beta: Any, log_n: Any, log_d: Any) -> Any:
    return _lse3(a - alpha * log_n, b - beta * log_d, e + 0.0 * log_n)


def chinchilla_allocation(a: float, b: float, alpha: float, beta: float, C: float) -> tuple[float, float] | None:
    """Closed-form compute-optimal (N_opt, D_opt) under C = 6 N D (DESIGN §5).

    G = (alpha A / (beta B))^(1/(alpha+beta)), N_opt = G (C/6)^(beta/(alpha+beta)),
    D_opt = (C/6) / N_opt (= G^-1 (C/6)^(alpha/(alpha+beta)), written so 6 N D == C exactly
    up to rounding). None when an exponent is not positive (no interior optimum).
    """
    if not (alpha > 0 and beta > 0 and C > 0) or not all(map(math.isfinite, (a, b, alpha, beta, C))):
        return None
    s = alpha + beta
    log_g = (math.log(alpha) + a - math.log(beta) - b) / s
    log_c6 = math.log(C / 6.0)
    n_opt = math.exp(log_g + log_c6 * beta / s)
    d_opt = (C / 6.0) / n_opt
    return n_opt, d_opt


def _chin_derived(a: float, b: float, e: float, alpha: float, beta: float) -> dict[str, float]:
    out = {"E": math.exp(e), "A": math.exp(a), "B": math.exp(b), "alpha": alpha, "beta": beta}
    s = alpha + beta
    if s != 0:
        out["a_exponent"] = beta / s  # N_opt ∝ C^a_exponent
        out["b_exponent"] = alpha / s  # D_opt ∝ C^b_exponent
        if alpha > 0 and beta > 0:
            out["log_G"] = (math.log(alpha) + a - math.log(beta) - b) / s
    return out


CHINCHILLA_GRID = {
    "a": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    "b": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    "e": (-1.0, -0.5, 0.0, 0.5, 1.0),
    "alpha": (0.0, 0.5, 1.0, 1.5, 2.0),
    "beta": (0.0, 0.5, 1.0, 1.5, 2.0),
}


def _grid(*axes: Sequence[float]) -> np.ndarray:
    return np.array(list(itertools.product(*axes)), dtype=np.float64)


@functools.cache
def chinchilla() -> Law:
    """L = E + A/N^alpha + B/D^beta, theta = (a, b, e, alpha, beta); 4,500-start grid (DESIGN §5)."""

    def predict_log(theta: Any, data: Mapping[str, Any]) -> Any:
        a, b, e, alpha, beta = (theta[i] for i in range(5))
        return _chin_log(a, b, e, alpha, beta, jnp.log(data["N"]), jnp.log(data["D"]))

    def start_grid() -> np.ndarray:
        g = CHINCHILLA_GRID
        return _grid(g["a"], g["b"], g["e"], g["alpha"], g["beta"])

    def derived(theta: np.ndarray) -> dict[str, float]:
        return _chin_derived(*map(float, theta[:5]))

    def allocation(theta: np.ndarray, C: float) -> tuple[float, float] | None:
        a, b, _, alpha, beta = map(float, theta[:5])
        return chinchilla_allocation(a, b, alpha, beta, C)

    return Law(
        name="chinchilla",
        param_names=("a", "b", "e", "alpha", "beta"),
        columns=("N", "D"),
        predict_log=predict_log,
        start_grid=start_grid,
        derived=derived,
        allocation=allocation,
        positive_columns=("N", "D"),
        description="log L = LSE(a - alpha log N, b - beta log D, e)",
    )


# --------------------------------------------------------------------------------------------
# Repetition (Muennighoff et al. 2023)


def _repeated(d: Any, u: Any, r_star: Any) -> Any:
    """Effective data D' for D tokens drawn from U unique: U + U R* (1 - exp(-R/R*)), R = D/U - 1.

    With D <= U nothing repeats (U_D = min(U, D) = D, R = 0) and D' = D. Written with a `where`
    whose both branches stay finite so gradients are clean.
    """
    r = jnp.maximum(d / u - 1.0, 0.0)
    return jnp.where(d > u, u + u * r_star * (-jnp.expm1(-r / r_star)), d)


def _base_tuple(base: Any) -> tuple[float, float, float, float, float] | None:
    if base is None:
        return None
    if hasattr(base, "params") and isinstance(base.params, Mapping):  # a FitResult
        base = base.params
    if isinstance(base, Mapping):
        vals = tuple(float(base[k]) for k in ("a", "b", "e", "alpha", "beta"))
    else:
        vals = tuple(float(x) for x in np.asarray(base, dtype=np.float64).ravel())
    if len(vals) != 5 or not all(map(math.isfinite, vals)):
        raise ValueError("base must be (a, b, e, alpha, beta): five finite numbers")
    return vals  # type: ignore[return-value]


def data_constrained(base: Any = None) -> Law:
    """Muennighoff et al. 2023 ("Scaling Data-Constrained Language Models"), their eq. (5)/(6).

    Columns N, D, U (unique tokens). With U_D = min(U, D) and R_D = D/U_D - 1:
        D' = U_D + U_D R_D* (1 - exp(-R_D / R_D*)).
    U_N = min(N, N_opt(U_D)) where N_opt(U_D) is the base law's compute-optimal model size for
    U_D tokens, i.e. the N whose closed-form D_opt (C = 6 N D) equals U_D:
        log N_opt(U_D) = log G + (beta/alpha) (log G + log U_D),  G = (alpha A/(beta B))^(1/(alpha+beta)).
    R_N = N/U_N - 1, N' = U_N + U_N R_N* (1 - exp(-R_N / R_N*)); L = chinchilla(N', D').
    This variant reproduces the authors' published objective (0.0158259 on fit182; DESIGN §8).

    Parameterisation: R* are fitted on the log scale, theta ends with (log_R_D_star,
    log_R_N_star): positivity without bounds and a better-conditioned (but still flat) surface.
    `derived` reports R_D_star and R_N_star.

    `base=(a, b, e, alpha, beta)` (tuple, dict or FitResult) fixes the Chinchilla part and fits
    only the two log R*; `base=None` fits all seven parameters.
    """
    return _data_constrained(_base_tuple(base))


@functools.cache
def _data_constrained(base: tuple[float, ...] | None) -> Law:
    def model(a: Any, b: Any, e: Any, alpha: Any, beta: Any, lrd: Any, lrn: Any, data: Mapping[str, Any]) -> Any:
        n, d, u = data["N"], data["D"], data["U"]
        u_d = jnp.minimum(u, d)
        d_eff = _repeated(d, u_d, jnp.exp(lrd))
        log_g = (jnp.log(alpha) + a - jnp.log(beta) - b) / (alpha + beta)
        log_un = log_g + (beta / alpha) * (log_g + jnp.log(u_d))
        u_n = jnp.minimum(n, jnp.exp(log_un))
        n_eff = _repeated(n, u_n, jnp.exp(lrn))
        return _chin_log(a, b, e, alpha, beta, jnp.log(n_eff), jnp.log(d_eff))

    if base is not None:
        a0, b0, e0, al0, be0 = base

        def predict_log(theta: Any, data: Mapping[str, Any]) -> Any:
            return model(a0, b0, e0, al0, be0, theta[0], theta[1], data)

        def start_grid() -> np.ndarray:
            r = np.log([1.0, 3.0, 10.0, 30.0, 100.0])
            return _grid(r, r)

        def derived(theta: np.ndarray) -> dict[str, float]:
            out = _chin_derived(a0, b0, e0, al0, be0)
            out.update(R_D_star=math.exp(float(theta[0])), R_N_star=math.exp(float(theta[1])))
            return out

        def allocation(theta: np.ndarray, C: float) -> tuple[float, float] | None:
            return chinchilla_allocation(a0, b0, al0, be0, C)

        names: tuple[str, ...] = ("log_R_D_star", "log_R_N_star")
        constants = dict(zip(("a", "b", "e", "alpha", "beta"), base))
    else:

        def predict_log(theta: Any, data: Mapping[str, Any]) -> Any:
            return model(*(theta[i] for i in range(7)), data)

        def start_grid() -> np.ndarray:
            r = np.log([3.0, 15.0, 60.0])
            return _grid((5.0, 10.0), (5.0, 10.0), (0.0, 0.5, 1.0), (0.25, 0.5), (0.25, 0.5), r, r)

        def derived(theta: np.ndarray) -> dict[str, float]:
            out = _chin_derived(*map(float, theta[:5]))
            out.update(R_D_star=math.exp(float(theta[5])), R_N_star=math.exp(float(theta[6])))
            return out

        def allocation(theta: np.ndarray, C: float) -> tuple[float, float] | None:
            a, b, _, alpha, beta = map(float, theta[:5])
            return chinchilla_allocation(a, b, alpha, beta, C)

        names = ("a", "b", "e", "alpha", "beta", "log_R_D_star", "log_R_N_star")
        constants = {}

    return Law(
        name="data_constrained",
        param_names=names,
        columns=("N", "D", "U"),
        predict_log=predict_log,
        start_grid=start_grid,
        derived=derived,
        # Unconstrained (no repetition) Chinchilla allocation of the base law.
        allocation=allocation,
        constants=constants,
        positive_columns=("N", "D", "U"),
        description="chinchilla(N', D') with Muennighoff et al. 2023 repetition decay",
    )


# --------------------------------------------------------------------------------------------
# Quality tiers


def quality(tiers: Sequence[str], pools: bool = False, e_shift: bool = False, base: Any = None) -> Law:
    """Per-tier effective-data law (DESIGN §5).

    Tiers t = tiers[0] ("raw", kappa fixed at 1), tiers[1:], fitted as log_kappa_<t>.
    Columns: N, D, w_<t> for every tier (mix weights, summing to 1 per row) and, with
    `pools=True`, U_<t> (the tier's unique-token pool). A run trains on
        D_eff = sum_t kappa_t D'_t,   D'_t = repeated(w_t D, U_t, R_D*)  (pools=True, shared R_D*)
                                      D'_t = w_t D                        (pools=False)
    and L = chinchilla(N, D_eff). With `e_shift=True` each non-raw tier also shifts the
    irreducible loss: e_eff = e + sum_{t>0} w_t de_<t> (log E linear in the mix weights).
    With `base=(a, b, e, alpha, beta)` the Chinchilla part is fixed; otherwise it is fitted.
    Params: [a, b, e, alpha, beta,] log_kappa_<t>..., [log_R_D_star,] [de_<t>...].
    `allocation` is the base law's (raw tier, no repetition): N_opt and raw-equivalent D_opt.
    """
    tiers = tuple(str(t) for t in tiers)
    if len(tiers) < 1 or len(set(tiers)) != len(tiers):
        raise ValueError("quality law needs one or more distinct tier names")
    return _quality(tiers, bool(pools), bool(e_shift), _base_tuple(base))


@functools.cache
def _quality(tiers: tuple[str, ...], pools: bool, e_shift: bool, base: tuple[float, ...] | None) -> Law:
    T = len(tiers)
    names: list[str] = [] if base is not None else ["a", "b", "e", "alpha", "beta"]
    nb = len(names)
    names += [f"log_kappa_{t}" for t in tiers[1:]]
    if pools:
        names.append("log_R_D_star")
    if e_shift:
        names += [f"de_{t}" for t in tiers[1:]]
    i_kappa = nb
    i_r = nb + T - 1
    i_de = i_r + (1 if pools else 0)
    columns = ("N", "D", *(f"w_{t}" for t in tiers), *((f"U_{t}" for t in tiers) if pools else ()))

    def predict_log(theta: Any, data: Mapping[str, Any]) -> Any:
        if base is None:
            a, b, e, alpha, beta = (theta[i] for i in range(5))
        else:
            a, b, e, alpha, beta = base
        d = data["D"]
        r_star = jnp.exp(theta[i_r]) if pools else None
        d_eff = 0.0
        for j, t in enumerate(tiers):
            d_t = data[f"w_{t}"] * d
            if pools:
                d_t = _repeated(d_t, data[f"U_{t}"], r_star)
            if j > 0:
                d_t = jnp.exp(theta[i_kappa + j - 1]) * d_t
            d_eff = d_eff + d_t
        if e_shift:
            for j, t in enumerate(tiers[1:]):
                e = e + data[f"w_{t}"] * theta[i_de + j]
        return _chin_log(a, b, e, alpha, beta, jnp.log(data["N"]), jnp.log(d_eff))

    def start_grid() -> np.ndarray:
        axes: list[Sequence[float]] = []
        if base is None:
            axes += [(4.0, 8.0), (4.0, 8.0), (0.0, 0.5, 1.0), (0.25, 0.5), (0.25, 0.5)]
        axes += [(0.0, math.log(2.0))] * (T - 1)
        if pools:
            axes.append((math.log(5.0), math.log(20.0)))
        if e_shift:
            axes += [(0.0,)] * (T - 1)
        g = _grid(*axes)
        if len(g) > 4000:  # many tiers: a seeded subset keeps the fit affordable
            g = g[np.random.default_rng(0).choice(len(g), 4000, replace=False)]
        return g

    def derived(theta: np.ndarray) -> dict[str, float]:
        th = [float(x) for x in theta]
        out = _chin_derived(*(th[:5] if base is None else base))
        out[f"kappa_{tiers[0]}"] = 1.0
        for j, t in enumerate(tiers[1:]):
            out[f"kappa_{t}"] = math.exp(th[i_kappa + j])
        if pools:
            out["R_D_star"] = math.exp(th[i_r])
        return out

    def allocation(theta: np.ndarray, C: float) -> tuple[float, float] | None:
        a, b, _, alpha, beta = (float(x) for x in theta[:5]) if base is None else base
        return chinchilla_allocation(a, b, alpha, beta, C)

    name = "quality" + ("_pools" if pools else "") + ("_eshift" if e_shift else "")
    return Law(
        name=name,
        param_names=tuple(names),
        columns=columns,
        predict_log=predict_log,
        start_grid=start_grid,
        derived=derived,
        allocation=allocation,
        constants={"tiers": tiers, **(dict(zip(("a", "b", "e", "alpha", "beta"), base)) if base else {})},  # type: ignore[dict-item]
        positive_columns=("N", "D", *((f"U_{t}" for t in tiers) if pools else ())),
        description="chinchilla(N, sum_t kappa_t D'_t)" + (" with per-tier E shift" if e_shift else ""),
    )


# --------------------------------------------------------------------------------------------
# Mixing law (Ye et al. 2024)


def mixing(domains: Sequence[str]) -> Law:
    """Ye et al. 2024 data-mixing law: L = c + k exp(sum_j t_j r_j), r_j = mix proportion.

    Columns w_<domain>. theta = (log_c, log_k, t_<domain>...); log L = LSE(log_c, log_k + t.r).
    Start grid: log_c in {-1, 0, 0.5, 1}, log_k in {-3, -1, 0}, t_j in {-2, 0, 2} (up to five
    domains; more domains use 3,000 seeded random starts in the same box).
    """
    domains = tuple(str(d) for d in domains)
    if len(domains) < 1 or len(set(domains)) != len(domains):
        raise ValueError("mixing law needs one or more distinct domain names")
    return _mixing(domains)


@functools.cache
def _mixing(domains: tuple[str, ...]) -> Law:
    m = len(domains)

    def predict_log(theta: Any, data: Mapping[str, Any]) -> Any:
        s = theta[1]
        for j, d in enumerate(domains):
            s = s + theta[2 + j] * data[f"w_{d}"]
        return jnp.logaddexp(theta[0] + 0.0 * s, s)

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
        predict_log=predict_log,
        start_grid=start_grid,
        derived=derived,
        allocation=lambda theta, C: None,
        constants={"domains": domains},  # type: ignore[dict-item]
        description="L = c + k exp(sum_j t_j r_j)",
    )


LAWS: dict[str, Callable[..., Law]] = {
    "chinchilla": chinchilla,
    "data_constrained": data_constrained,
    "quality": quality,
    "mixing": mixing,
}
