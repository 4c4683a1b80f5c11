"""Multi-start damped-Newton fitting of scaling laws, plus the row (or cluster) bootstrap
(docs/design.md §5).

Objective (`objective=`), a SUM over rows (weighted by the bootstrap counts):
- "huber" (default): Huber_delta(log L_pred - log L_obs), delta = 1e-3 by default, on log losses
  (Hoffmann et al. 2022; Besiroglu et al. 2024).
- "asymmetric": the lower-envelope estimator of the `chinchilla` toolkit (kyo-takano/chinchilla,
  its default `asymmetric_mae`, w = 10), on RAW losses: with r = L_obs - L_pred it charges |r|
  for r > 0 and `asymmetry` * |r| for r < 0 (a prediction above an observation costs
  `asymmetry` times more, so the law fits the lower envelope of the runs). Our Newton solver
  needs a smooth objective, so |r| is Huber-smoothed with the same asymmetric weights:
  w(r) Huber_delta(r), w = 1 (r >= 0) or `asymmetry` (r < 0), delta in loss units (nats). For
  |r| > delta this is delta * w(r) (|r| - delta/2), a scaled, shifted asymmetric MAE: as
  delta -> 0 the minimiser is the toolkit's.

Method. Exact gradients and Hessians from JAX (one forward-over-reverse pass gives value,
gradient and Hessian), float64, vectorised over all starts with `jax.vmap` inside one
`jax.jit`'d `lax.while_loop`. Each iteration of each start:
  1. eigendecompose the (P x P) Hessian, H = V diag(w) V^T;
  2. try four Levenberg-Marquardt steps p(lam) = -V diag(1/(|w| + lam)) V^T g for
     lam = lam_k * {1e-2, 1, 1e2, 1e4} (|w|: negative curvature is treated as positive, so every
     step is a descent direction; lam is relative to max |w|);
  3. take the trial with the lowest objective if it lowers the objective, and keep its lam;
     otherwise stay and raise lam by 1e6.
A start stops when its gradient norm is below `gtol`, when an accepted step changes the
objective by less than `ftol` (relative) and moves theta by less than `xtol`, or when no step
lowers the objective even at the largest damping ("line_search": the objective cannot be
lowered at float64 resolution; when the gradient norm there is <= 1e-6 this is a numerical optimum
at a Huber kink and is reported as "converged_f"). Starts that are done are masked (frozen).
The loop runs in rounds of a few iterations; after each round only unfinished starts go on,
re-batched into a small padded bucket (compaction), so the batch does not wait on its tail.

Pruning (`estimate`): all starts run `explore_iter` iterations; the `keep` best (by objective) then
run on to `max_iter`. Newton on a handful of parameters reaches its basin in a few iterations,
so the grid's hopeless starts are dropped early. `prune=False` runs every start to the end.

Reporting is honest: the result carries the gradient norm at the best point, its iteration
count, and why it stopped; `converged` is True only for "converged" / "converged_f" stops.

float64: the fitter turns on `jax_enable_x64` only inside its own calls (the
`jax.enable_x64(True)` context manager), never globally, so importing it does not change the
dtype defaults of the model or trainer code in the same process.

Bootstrap: resampling rows with replacement is the same as weighting each row by its
multinomial count, so all resamples share one data array and differ only in a weight vector:
all refits run in one vmapped solve. With `clusters` the unique labels are resampled instead and
a row's weight is the number of times its cluster was drawn (runs that differ only in seed stay
together). Refits use the result's objective. Each refit starts from the
full-data optimum, and from `near_starts` seeded perturbations of it if asked (default none: on
the Chinchilla anchors one start gives the same standard errors, every refit converged, in a
third of the time); not from the 4,500-start grid, since the resampled optimum lies near the
full-data one. The best start per resample wins; refits that did not converge are counted
(`bootstrap_converged`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from scaler.fitting.inputs import json_safe
from scaler.fitting.laws import Law
from scaler.fitting.stats import percentile_interval

__all__ = ["huber", "asymmetric_huber", "OBJECTIVES", "FitResult", "estimate", "bootstrap", "objective",
           "flat_directions"]

STOP_NAMES = {0: "running", 1: "converged", 2: "converged_f", 3: "max_iterations", 4: "line_search"}
_LAM_FACTORS = (1e-2, 1.0, 1e2, 1e4)
_GTOL_STALL = 1e-6  # see _solve
_CHUNK = 128  # starts per vectorised chunk inside the loop
_BUCKETS = (16, 64, 256)  # padded batch sizes for the compacted rounds (few compiled shapes)
OBJECTIVES = ("huber", "asymmetric")


def huber(r: Any, delta: float = 1e-3) -> Any:
    """Huber loss, elementwise: r^2/2 for |r| <= delta, else delta (|r| - delta/2)."""
    a = jnp.abs(r)
    return jnp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def asymmetric_huber(r: Any, delta: float = 1e-3, asymmetry: float = 10.0) -> Any:
    """Huber-smoothed asymmetric absolute error, elementwise, r = L_obs - L_pred (raw losses):
    huber(r, delta) for r >= 0, asymmetry * huber(r, delta) for r < 0 (over-prediction)."""
    return jnp.where(r < 0, asymmetry, 1.0) * huber(r, delta)


class _Criterion(NamedTuple):
    """The objective: its name (static: one compiled solver each), delta and asymmetry (traced)."""

    name: str
    delta: float
    asymmetry: float


def _criterion(objective: str, delta: float, asymmetry: float) -> _Criterion:
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; expected one of {list(OBJECTIVES)}")
    if not (np.isfinite(asymmetry) and asymmetry > 0):
        raise ValueError(f"asymmetry must be a positive number, got {asymmetry!r}")
    if not (np.isfinite(delta) and delta > 0):
        raise ValueError(f"delta must be a positive number, got {delta!r}")
    return _Criterion(objective, float(delta), float(asymmetry) if objective == "asymmetric" else 1.0)


def _hp(crit: _Criterion) -> tuple[Any, Any]:
    return jnp.float64(crit.delta), jnp.float64(crit.asymmetry)


@dataclass
class FitResult:
    law: str  # the law's name; `spec` rebuilds it (laws.law_from_spec), reference tier included
    theta: np.ndarray
    params: dict[str, float]
    derived: dict[str, float]
    objective: float
    n_points: int
    converged: bool
    grad_norm: float
    iterations: int
    stopped: str
    flat_directions: list[str] = field(default_factory=list)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    bootstrap_theta: np.ndarray | None = None
    standard_errors: dict[str, float] = field(default_factory=dict)
    hessian_eigenvalues: list[float] = field(default_factory=list)
    n_starts: int = 0
    n_bootstrap: int = 0
    bootstrap_converged: float = float("nan")
    delta: float = 1e-3
    spec: dict[str, Any] = field(default_factory=dict)
    objective_name: str = "huber"  # "huber" (log losses) or "asymmetric" (raw losses): module docstring
    asymmetry: float = 1.0  # the over-prediction weight of "asymmetric"; 1.0 for the symmetric "huber"
    bootstrap_clusters: int = 0  # clusters resampled by the bootstrap; 0: rows were resampled

    def to_json(self) -> dict[str, Any]:
        return json_safe({
            "law": self.law,
            "spec": dict(self.spec),
            "theta": np.asarray(self.theta, dtype=np.float64),
            "params": self.params,
            "derived": self.derived,
            "objective": float(self.objective),
            "n_points": self.n_points,
            "converged": bool(self.converged),
            "grad_norm": float(self.grad_norm),
            "iterations": int(self.iterations),
            "stopped": self.stopped,
            "flat_directions": list(self.flat_directions),
            "hessian_eigenvalues": [float(x) for x in self.hessian_eigenvalues],
            "intervals": {k: [float(lo), float(hi)] for k, (lo, hi) in self.intervals.items()},
            "standard_errors": self.standard_errors,
            "n_starts": self.n_starts,
            "n_bootstrap": self.n_bootstrap,
            "bootstrap_converged": float(self.bootstrap_converged),
            "delta": self.delta,
            "objective_name": self.objective_name,
            "asymmetry": float(self.asymmetry),
            "bootstrap_clusters": int(self.bootstrap_clusters),
        })


# --------------------------------------------------------------------------------------------
# validation


def _prepare(law: Law, data: Mapping[str, Any], loss: Any) -> tuple[dict[str, np.ndarray], np.ndarray]:
    missing = [c for c in law.columns if c not in data]
    if missing:
        raise ValueError(f"law {law.name!r} needs columns {list(law.columns)}; missing {missing}")
    y = np.asarray(loss, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"loss must be one-dimensional, got shape {y.shape}")
    n = y.shape[0]
    cols: dict[str, np.ndarray] = {}
    for c in law.columns:
        v = np.asarray(data[c], dtype=np.float64)
        if v.shape != (n,):
            raise ValueError(f"column {c!r} has shape {v.shape}; expected ({n},) like the loss")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"column {c!r} has {int((~np.isfinite(v)).sum())} NaN or infinite values")
        if c in law.positive_columns and np.any(v <= 0):
            raise ValueError(f"column {c!r} must be positive; {int((v <= 0).sum())} values are <= 0")
        cols[c] = v
    if not np.all(np.isfinite(y)):
        raise ValueError(f"loss has {int((~np.isfinite(y)).sum())} NaN or infinite values")
    if np.any(y <= 0):
        raise ValueError(f"losses must be positive (the law is fitted in log space); {int((y <= 0).sum())} are <= 0")
    if n < law.n_params + 1:
        raise ValueError(
            f"too few points to fit law {law.name!r}: {n} rows for {law.n_params} parameters (need at least {law.n_params + 1})"
        )
    return cols, y


# --------------------------------------------------------------------------------------------
# the vectorised Newton solver

_SOLVERS: "weakref.WeakKeyDictionary[Law, dict[str, dict[str, Any]]]" = weakref.WeakKeyDictionary()


def _objective_fn(law: Law, objective: str) -> Callable[..., Any]:
    """f(theta, data, logy, w, hp): the weighted sum objective of `law` (+inf where not finite)."""
    def f(theta: Any, data: Any, logy: Any, w: Any, hp: Any) -> Any:
        delta, asymmetry = hp
        if objective == "asymmetric":
            r = jnp.exp(logy) - jnp.exp(law.predict_log(theta, data, jnp))  # L_obs - L_pred, raw
            v = jnp.sum(w * asymmetric_huber(r, delta, asymmetry))
        else:
            r = law.predict_log(theta, data, jnp) - logy
            v = jnp.sum(w * huber(r, delta))
        return jnp.where(jnp.isfinite(v), v, jnp.inf)

    return f


def _value_grad_hessian_fn(f: Callable[..., Any]) -> Callable[..., Any]:
    """fgh(theta, data, logy, w, hp) -> (value, gradient, Hessian) of `f` in one
    forward-over-reverse pass."""
    def gfun(theta: Any, data: Any, logy: Any, w: Any, hp: Any) -> Any:
        v, g = jax.value_and_grad(f)(theta, data, logy, w, hp)
        return g, (v, g)

    def fgh(theta: Any, data: Any, logy: Any, w: Any, hp: Any) -> Any:
        h, (v, g) = jax.jacfwd(gfun, has_aux=True)(theta, data, logy, w, hp)
        return v, g, h

    return fgh


def _damped_step_fn(f: Callable[..., Any]) -> Callable[..., Any]:
    """step(theta, v, g, h, lam, data, logy, w, hp) -> (theta, value, lam) of the best of the
    Levenberg-Marquardt trials lam * _LAM_FACTORS (theta, v, lam unchanged if none lowers v)."""
    def step(theta: Any, v: Any, g: Any, h: Any, lam: Any, data: Any, logy: Any, w: Any, hp: Any) -> Any:
        ok = jnp.all(jnp.isfinite(h)) & jnp.all(jnp.isfinite(g))
        h = jnp.where(ok, h, jnp.eye(h.shape[0]))
        g = jnp.where(ok, g, 0.0)
        ev, V = jnp.linalg.eigh(0.5 * (h + h.T))
        aev = jnp.abs(ev)
        scale = jnp.maximum(jnp.max(aev), 1e-300)
        gt = V.T @ g
        best_v, best_t, best_l = v, theta, lam
        for c in _LAM_FACTORS:
            l_c = lam * c
            p = -V @ (gt / (aev + l_c * scale))
            t_c = theta + p
            v_c = f(t_c, data, logy, w, hp)
            better = v_c < best_v
            best_v = jnp.where(better, v_c, best_v)
            best_t = jnp.where(better, t_c, best_t)
            best_l = jnp.where(better, l_c, best_l)
        return best_t, best_v, best_l

    return step


def _masked_iteration_fn(step: Callable[..., Any], fgh: Callable[..., Any], data: Any, logy: Any, hp: Any,
                         gtol: Any, ftol: Any, xtol: Any) -> Callable[..., Any]:
    """one(theta, v, g, h, lam, status, it, w): one iteration of one start and its stop test
    (status 1 gradient small, 2 objective and theta settled, 4 no step lowers it); a start
    whose status is not 0 is returned unchanged."""
    def one(theta: Any, v: Any, g: Any, h: Any, lam: Any, status: Any, it: Any, w: Any) -> Any:
        active = status == 0
        t_new, v_new, l_new = step(theta, v, g, h, lam, data, logy, w, hp)
        moved = v_new < v
        lam_next = jnp.where(moved, jnp.maximum(l_new, 1e-14), lam * 1e6)
        v2, g2, h2 = fgh(t_new, data, logy, w, hp)
        gn = jnp.linalg.norm(g2)
        small_f = (v - v_new) <= ftol * jnp.maximum(jnp.abs(v_new), 1e-300)
        small_x = jnp.linalg.norm(t_new - theta) <= xtol * (1.0 + jnp.linalg.norm(theta))
        st = jnp.where(
            gn <= gtol, 1,
            jnp.where(moved & small_f & small_x, 2,
                      jnp.where(~moved & (lam_next > 1e12), 4, 0)))
        keep = lambda new, old: jnp.where(active, new, old)  # noqa: E731
        return (keep(t_new, theta), keep(v2, v), keep(g2, g), keep(h2, h), keep(lam_next, lam),
                keep(st, status), keep(it + 1, it))

    return one


def _run_fn(f: Callable[..., Any], fgh: Callable[..., Any]) -> Callable[..., Any]:
    """run(theta0, lam0, status0, it0, data, logy, W, hp, n_iter, gtol, ftol, xtol): the masked,
    chunked while-loop over all starts (see `_solver`)."""
    step = _damped_step_fn(f)

    def run(theta0: Any, lam0: Any, status0: Any, it0: Any, data: Any, logy: Any, W: Any, hp: Any,
            n_iter: Any, gtol: Any, ftol: Any, xtol: Any) -> Any:
        """theta0 (S,P), W (S,n): run up to n_iter more iterations per start (masked)."""
        one = _masked_iteration_fn(step, fgh, data, logy, hp, gtol, ftol, xtol)
        vone = jax.vmap(one, in_axes=(0, 0, 0, 0, 0, 0, 0, 0))
        S, P = theta0.shape
        chunk = min(S, _CHUNK)
        nc = S // chunk

        def split(x: Any) -> Any:
            return x.reshape((nc, chunk) + x.shape[1:])

        def body(c: Any) -> Any:
            k, th, v, g, h, lam, st, it = c
            # chunks of starts in sequence (lax.map), each chunk vectorised: better cache use
            out = lax.map(lambda a: vone(*a), tuple(split(x) for x in (th, v, g, h, lam, st, it, W)))
            th, v, g, h, lam, st, it = (x.reshape((S,) + x.shape[2:]) for x in out)
            return (k + 1, th, v, g, h, lam, st, it)

        def cond(c: Any) -> Any:
            k, st = c[0], c[6]
            return (k < n_iter) & jnp.any(st == 0)

        v0, g0, h0 = lax.map(lambda a: jax.vmap(fgh, in_axes=(0, None, None, 0, None))(a[0], data, logy, a[1], hp),
                             (split(theta0), split(W)))
        v0, g0, h0 = (x.reshape((S,) + x.shape[2:]) for x in (v0, g0, h0))
        gn0 = jnp.linalg.norm(g0, axis=1)
        status0 = jnp.where((status0 == 0) & (gn0 <= gtol), 1, status0)
        c = (jnp.int32(0), theta0, v0, g0, h0, lam0, status0, it0)
        _, th, v, g, h, lam, st, it = lax.while_loop(cond, body, c)
        return th, v, jnp.linalg.norm(g, axis=1), h, lam, st, it

    return run


def _solver(law: Law, objective: str = "huber") -> dict[str, Any]:
    """The jitted solver of `law` under `objective`. `hp` = (delta, asymmetry), traced."""
    per_law = _SOLVERS.setdefault(law, {})
    cached = per_law.get(objective)
    if cached is not None:
        return cached
    f = _objective_fn(law, objective)
    fgh = _value_grad_hessian_fn(f)
    solver = {"run": jax.jit(_run_fn(f, fgh)), "fgh": jax.jit(fgh), "f": jax.jit(f)}
    per_law[objective] = solver
    return solver


def _padded_size(S: int) -> int:
    for b in _BUCKETS:
        if S <= b:
            return b
    return -(-S // _CHUNK) * _CHUNK


def _run_padded(law: Law, data: Any, logy: Any, theta0: np.ndarray, W: np.ndarray, lam0: np.ndarray,
                st0: np.ndarray, it0: np.ndarray, crit: _Criterion, n_iter: int, gtol: float, ftol: float,
                xtol: float) -> tuple[np.ndarray, ...]:
    """One jitted solve on a batch padded to a bucket size (pads are marked done and dropped)."""
    S = theta0.shape[0]
    Sp = _padded_size(S)
    pad = Sp - S
    if pad:
        rep = lambda x: np.concatenate([x, np.repeat(x[:1], pad, axis=0)])  # noqa: E731
        theta0, W, lam0, it0 = rep(theta0), rep(W), rep(lam0), rep(it0)
        st0 = np.concatenate([st0, np.full(pad, 1, dtype=np.int32)])
    out = _solver(law, crit.name)["run"](
        jnp.asarray(theta0, dtype=jnp.float64), jnp.asarray(lam0, dtype=jnp.float64), jnp.asarray(st0, dtype=jnp.int32),
        jnp.asarray(it0, dtype=jnp.int32), data, logy, jnp.asarray(W, dtype=jnp.float64), _hp(crit),
        jnp.int32(n_iter), jnp.float64(gtol), jnp.float64(ftol), jnp.float64(xtol))
    return tuple(np.array(x)[:S] for x in out)


def _solve(law: Law, cols: Mapping[str, np.ndarray], y: np.ndarray, theta0: np.ndarray, W: np.ndarray,
           crit: _Criterion, n_iter: int, gtol: float, ftol: float, xtol: float,
           state: tuple[Any, ...] | None = None, round_iter: int = 8) -> tuple[np.ndarray, ...]:
    """Run every start up to `n_iter` iterations, in rounds of `round_iter`.

    After each round only the starts still running go on, re-batched to a small padded bucket
    (compaction): the vectorised loop otherwise pays for its slowest start on every start.
    Returns (theta, objective, grad_norm, hessian, lam, status, iterations).
    """
    S = theta0.shape[0]
    if state is None:
        lam = np.full(S, 1e-3)
        st = np.zeros(S, dtype=np.int32)
        it = np.zeros(S, dtype=np.int32)
    else:
        lam, st, it = (np.array(x) for x in state)
    data = {k: jnp.asarray(v) for k, v in cols.items()}
    logy = jnp.asarray(np.log(y))
    th = np.array(theta0, dtype=np.float64)
    v = np.full(S, np.inf)
    gn = np.full(S, np.inf)
    h = np.zeros((S, th.shape[1], th.shape[1]))
    idx = np.arange(S)
    done_iter = 0
    first = True
    while done_iter < n_iter and (first or len(idx)):
        k = min(round_iter, n_iter - done_iter) if not first else min(max(round_iter, 1), n_iter)
        st_in = st[idx].copy()
        out = _run_padded(law, data, logy, th[idx], W[idx], lam[idx], st_in, it[idx], crit, k, gtol, ftol, xtol)
        th[idx], v[idx], gn[idx], h[idx], lam[idx], st[idx], it[idx] = out
        done_iter += k
        first = False
        idx = idx[st[idx] == 0]
    if done_iter == 0:  # n_iter == 0: just evaluate
        out = _run_padded(law, data, logy, th, W, lam, st, it, crit, 0, gtol, ftol, xtol)
        th, v, gn, h, lam, st, it = out
    st = np.where(st == 0, 3, st)  # still running at the limit: max_iterations
    # No step lowers the objective at float64 resolution and the gradient is small: a numerical
    # optimum at a Huber kink (the Hessian jumps there). Counted as converged ("converged_f").
    st = np.where((st == 4) & (gn <= _GTOL_STALL), 2, st)
    return th, v, gn, h, lam, st, it


def objective(law: Law, theta: Any, data: Mapping[str, Any], loss: Any, delta: float = 1e-3, *,
              objective: str = "huber", asymmetry: float = 10.0) -> float:
    """The objective `estimate` minimises (sum Huber on log losses, or the asymmetric one on raw
    losses; see the module docstring) of `law` at `theta` on (data, loss)."""
    crit = _criterion(objective, delta, asymmetry)
    cols, y = _prepare(law, data, loss)
    with jax.enable_x64(True):
        s = _solver(law, crit.name)
        v = s["f"](jnp.asarray(np.asarray(theta, dtype=np.float64)), {k: jnp.asarray(v) for k, v in cols.items()},
                   jnp.asarray(np.log(y)), jnp.ones(len(y)), _hp(crit))
        return float(v)


def flat_directions(law: Law, h: np.ndarray, rel_tol: float = 1e-6) -> tuple[list[str], list[float]]:
    """Directions the Hessian at the optimum does not pin down.

    The Hessian is first put on a unit-free footing, Hn = D^-1/2 H D^-1/2 with D = diag(H)
    (a correlation-like matrix, so parameter units do not matter). Eigenvectors of Hn whose
    eigenvalue is below `rel_tol` times the largest are reported, described by the parameters
    that load on them (|loading| >= 0.1), e.g. "0.71*log_R_D_star - 0.70*log_R_N_star (rel.
    curvature 3e-9)". A zero diagonal entry (the objective is locally flat along a parameter
    alone) is reported as a flat direction by itself.
    """
    h = 0.5 * (np.asarray(h, dtype=np.float64) + np.asarray(h, dtype=np.float64).T)
    names = law.param_names
    out: list[str] = []
    d = np.diag(h).copy()
    zero = ~(d > 0)
    for i in np.flatnonzero(zero):
        out.append(f"{names[i]} (zero curvature)")
    idx = np.flatnonzero(~zero)
    if len(idx) == 0:
        return out, []
    s = 1.0 / np.sqrt(d[idx])
    hn = h[np.ix_(idx, idx)] * s[:, None] * s[None, :]
    ev, V = np.linalg.eigh(hn)
    top = max(float(np.max(np.abs(ev))), 1e-300)
    for k in range(len(ev)):
        rel = ev[k] / top
        if rel < rel_tol:
            v = V[:, k] * s  # back to parameter units, then normalised
            v = v / np.linalg.norm(v)
            j = int(np.argmax(np.abs(v)))
            v = v * np.sign(v[j])
            terms = [f"{v[i]:+.2f}*{names[idx[i]]}" for i in np.argsort(-np.abs(v)) if abs(v[i]) >= 0.1]
            out.append(" ".join(terms).lstrip("+") + f" (rel. curvature {rel:.1e})")
    return out, [float(x) for x in ev]


def estimate(law: Law, data: Mapping[str, Any], loss: Any, delta: float = 1e-3, starts: np.ndarray | None = None,
        max_iter: int = 200, tol: float = 1e-10, *, prune: bool = True, explore_iter: int = 3,
        keep: int = 32, ftol: float = 1e-13, xtol: float = 1e-10, flat_tol: float = 1e-6,
        objective: str = "huber", asymmetry: float = 10.0, weights: Any = None) -> FitResult:
    """Fit `law` to (data, loss) from every start; the lowest objective wins.

    `weights` (one per row, >= 0; default all 1) multiply each row's term of the objective. A
    weight of 0 leaves a row out without changing the data's shape, so fits on subsets of one
    table (rolling backtests) reuse one compiled solver instead of compiling one per subset.

    `objective`: "huber" (sum Huber_delta on log losses, the default) or "asymmetric" (the
    Huber-smoothed asymmetric error on raw losses, over-predictions weighted by `asymmetry`;
    `delta` is then in loss units). `tol` is the gradient-norm tolerance (absolute, on the sum
    objective). See the module docstring for the objectives, the method, the pruning and the
    stop reasons.
    """
    crit = _criterion(objective, delta, asymmetry)
    cols, y = _prepare(law, data, loss)
    th0 = np.asarray(law.start_grid() if starts is None else starts, dtype=np.float64)
    if th0.ndim != 2 or th0.shape[1] != law.n_params:
        raise ValueError(f"starts must have shape (S, {law.n_params}) for law {law.name!r}, got {th0.shape}")
    n = len(y)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights must be {n} finite numbers >= 0, one per row")
    n_used = int(np.count_nonzero(w))
    if n_used < law.n_params + 1:
        raise ValueError(f"too few points to fit law {law.name!r}: {n_used} weighted rows for {law.n_params} "
                         f"parameters (need at least {law.n_params + 1})")
    with jax.enable_x64(True):
        if prune and th0.shape[0] > keep and explore_iter < max_iter:
            W = np.tile(w, (th0.shape[0], 1))
            th, v, gn, h, lam, st, it = _solve(law, cols, y, th0, W, crit, explore_iter, tol, ftol, xtol,
                                               round_iter=explore_iter)
            st = np.where(st == 3, 0, st)
            v = np.where(np.isfinite(v), v, np.inf)
            order = np.argsort(v, kind="stable")[:keep]
            th, lam, st, it = th[order], lam[order], st[order], it[order]
            W = np.tile(w, (len(order), 1))
            th, v, gn, h, lam, st, it = _solve(law, cols, y, th, W, crit, max_iter - explore_iter, tol, ftol,
                                               xtol, state=(lam, st, it))
        else:
            W = np.tile(w, (th0.shape[0], 1))
            th, v, gn, h, lam, st, it = _solve(law, cols, y, th0, W, crit, max_iter, tol, ftol, xtol)
    v = np.where(np.isfinite(v), v, np.inf)
    if not np.any(np.isfinite(v)):
        raise ValueError(f"law {law.name!r}: the objective is not finite at any start")
    b = int(np.argmin(v))
    status = int(st[b])
    stopped = STOP_NAMES[status] if status else "max_iterations"
    theta = th[b].copy()
    flats, evs = flat_directions(law, h[b], flat_tol)
    return FitResult(
        law=law.name,
        theta=theta,
        params=dict(zip(law.param_names, map(float, theta))),
        derived=law.derived(theta),
        objective=float(v[b]),
        n_points=n_used,
        converged=stopped in ("converged", "converged_f"),
        grad_norm=float(gn[b]),
        iterations=int(it[b]),
        stopped=stopped,
        flat_directions=flats,
        hessian_eigenvalues=evs,
        n_starts=int(th0.shape[0]),
        delta=delta,
        spec=dict(law.spec),
        objective_name=crit.name,
        asymmetry=crit.asymmetry,
    )


def _derived_row(law: Law, theta: np.ndarray, budgets: Sequence[float]) -> dict[str, float]:
    d = dict(law.derived(theta))
    for C in budgets:
        alloc = law.allocation(theta, float(C))
        n_opt, d_opt = alloc if alloc is not None else (float("nan"), float("nan"))
        d[f"N_opt@{float(C):.3g}"] = n_opt
        d[f"D_opt@{float(C):.3g}"] = d_opt
    return d


def _cluster_counts(clusters: Any, m: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """(n, m) row weights of `n` cluster resamples: K unique labels (sorted, so the draws do not
    depend on the rows' order) drawn K times with replacement; a row's weight is its cluster's
    draw count."""
    labels = np.asarray([str(label) for label in np.asarray(clusters, dtype=object).ravel()])
    if np.shape(clusters) != (m,):
        raise ValueError(f"clusters must give one label per row: shape ({m},), got {np.shape(clusters)}")
    _, inverse = np.unique(labels, return_inverse=True)
    K = int(inverse.max()) + 1
    if K < 2:
        raise ValueError(f"a cluster bootstrap needs at least 2 clusters, got {K}")
    draws = rng.integers(0, K, size=(n, K))
    per_cluster = np.zeros((n, K))
    np.add.at(per_cluster, (np.repeat(np.arange(n), K), draws.ravel()), 1.0)
    return per_cluster[:, inverse], K


def bootstrap(law: Law, data: Mapping[str, Any], loss: Any, result: FitResult, n: int = 1000, seed: int = 0,
              delta: float = 1e-3, *, budgets: Sequence[float] = (), near_starts: int = 0, near_scale: float = 0.05,
              max_iter: int = 100, tol: float = 1e-10, ftol: float = 1e-13, xtol: float = 1e-10,
              level: float = 0.95, objective: str | None = None, asymmetry: float | None = None,
              clusters: Any = None) -> FitResult:
    """Row (or cluster) bootstrap: `n` resamples with replacement (seeded NumPy), each refitted
    (vectorised).

    The refits use `result`'s objective (`objective_name`, `asymmetry`), so an asymmetric fit is
    bootstrapped asymmetrically; `objective` / `asymmetry`, if given, must match it (a
    ValueError otherwise: the intervals would belong to another estimator than the point).
    `clusters`: None resamples rows (the same draws as always for a given seed); else one label
    per row (any hashable values), and the unique labels are resampled with replacement, each row
    weighted by the number of times its cluster was drawn (rows of one cluster, e.g. runs that
    differ only in seed, always move together; `bootstrap_clusters` records how many).

    Returns a copy of `result` with `bootstrap_theta` (n, P), percentile intervals at `level` and
    standard errors (sample SD over resamples) for every parameter and every derived quantity,
    including N_opt@C / D_opt@C for each C in `budgets`, and `derived` extended with the
    full-data N_opt/D_opt at those budgets. Refits whose objective is not finite are dropped
    (`bootstrap_converged` is the fraction of refits that stopped as converged).
    """
    crit = _criterion(result.objective_name, delta, result.asymmetry)
    asked = _criterion(crit.name if objective is None else objective, delta,
                       crit.asymmetry if asymmetry is None else asymmetry)
    if asked != crit:
        raise ValueError(f"bootstrap: objective {asked.name!r} (asymmetry {asked.asymmetry}) differs from the fit's "
                         f"{crit.name!r} (asymmetry {crit.asymmetry}); refit with it first")
    cols, y = _prepare(law, data, loss)
    m = len(y)
    if n < 2:
        raise ValueError("bootstrap needs n >= 2 resamples")
    rng = np.random.default_rng(seed)
    n_clusters = 0
    if clusters is None:
        idx = rng.integers(0, m, size=(n, m))
        counts = np.zeros((n, m))
        np.add.at(counts, (np.repeat(np.arange(n), m), idx.ravel()), 1.0)
    else:
        counts, n_clusters = _cluster_counts(clusters, m, n, rng)
    k = 1 + near_starts
    th_best = np.asarray(result.theta, dtype=np.float64)
    starts = np.repeat(th_best[None, :], n * k, axis=0).reshape(n, k, -1)
    if near_starts:
        pert = rng.normal(size=(n, near_starts, th_best.size)) * near_scale * (np.abs(th_best) + 0.1)
        starts[:, 1:, :] += pert
    starts = starts.reshape(n * k, -1)
    W = np.repeat(counts, k, axis=0)
    with jax.enable_x64(True):
        th, v, gn, h, lam, st, it = _solve(law, cols, y, starts, W, crit, max_iter, tol, ftol, xtol)
    v = np.where(np.isfinite(v), v, np.inf).reshape(n, k)
    best = np.argmin(v, axis=1)
    th = th.reshape(n, k, -1)[np.arange(n), best]
    st = st.reshape(n, k)[np.arange(n), best]
    ok = np.isfinite(v[np.arange(n), best])
    th = th[ok]
    rows = [_derived_row(law, t, budgets) for t in th]
    intervals: dict[str, tuple[float, float]] = {}
    ses: dict[str, float] = {}
    for j, name in enumerate(law.param_names):
        intervals[name] = percentile_interval(th[:, j], level)
        ses[name] = float(np.std(th[:, j], ddof=1))
    keys = list(rows[0].keys()) if rows else []
    for key in keys:
        col = np.array([r.get(key, np.nan) for r in rows], dtype=np.float64)
        col = col[np.isfinite(col)]
        if len(col) < 2:
            continue
        intervals[key] = percentile_interval(col, level)
        ses[key] = float(np.std(col, ddof=1))
    out = FitResult(**{**result.__dict__})
    out.derived = _derived_row(law, np.asarray(result.theta), budgets)
    out.intervals = intervals
    out.standard_errors = ses
    out.bootstrap_theta = th
    out.n_bootstrap = int(ok.sum())
    out.bootstrap_converged = float(np.mean(np.isin(st[ok], (1, 2))))
    out.bootstrap_clusters = n_clusters
    return out
