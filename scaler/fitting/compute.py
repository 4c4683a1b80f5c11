"""One compute convention for every FLOP figure a fit prints (docs/design.md §3, §5).

A `Compute` says how training FLOPs follow from parameters N and tokens D:
C = flops_per_token(N) x D. Two conventions are named:

- `flops_v1`: scaler's own (scaler/config.py `flops_per_token`): 6 n_params + 12 n_layers
  seq_len d_model per token, attention included. It depends on the shape, not only on N, so it
  needs the model family whose ladder gives the shape of every N (`family`). Between ladder
  shapes the FLOPs per token are interpolated (log-linear in N); at every ladder shape they are
  exact. Runs from a store are fitted and allocated under it.
- `6ND`: the textbook C = 6 N D (Kaplan et al. 2020; Hoffmann et al. 2022). Tables of runs
  trained elsewhere are fitted under it, and so are a store's runs that record no model shape.

`allocate` finds the compute-optimal N for a budget under any law in (N, D) and any convention:
D = C / flops_per_token(N) and a vectorised search over log N (a dense grid, then golden-section
refinement), for every parameter sample at once. Under 6ND and Chinchilla it agrees with the
closed form (`laws.chinchilla_allocation`).
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from scaler.config import Family, ModelShape, count_params, flops_per_token

__all__ = ["Compute", "SIX_ND", "FLOPS_V1", "family_of_shapes", "minimise_log_n", "max_log_n", "allocate",
           "law_columns_fixed"]

SIX_ND = "6ND"
FLOPS_V1 = "flops_v1"
GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
LADDER_MAX_PARAMS = 1e16  # the interpolation table reaches this far; beyond it attention is negligible


@dataclass(frozen=True)
class Compute:
    """C = flops_per_token(N) x D under a named convention (module docstring)."""

    convention: str = SIX_ND
    family: Family | None = None
    family_exact: bool = True  # False: the runs' shapes are not all the family's (inferred as the nearest)

    def __post_init__(self) -> None:
        if self.convention not in (SIX_ND, FLOPS_V1):
            raise ValueError(f"unknown compute convention {self.convention!r}; expected {SIX_ND} or {FLOPS_V1}")
        if self.convention == FLOPS_V1 and self.family is None:
            raise ValueError("the flops_v1 convention needs the model family (its shapes set the attention FLOPs)")

    @property
    def label(self) -> str:
        """The unit to print beside a FLOP figure, e.g. "FLOPs (flops_v1)"."""
        return f"FLOPs ({self.convention})"

    def flops_per_token(self, n_params: Any) -> np.ndarray:
        """Training FLOPs per token of models with `n_params` parameters (any array shape)."""
        n = np.asarray(n_params, dtype=np.float64)
        if self.convention == SIX_ND:
            return 6.0 * n
        log_n, log_ratio = _ladder(self.family)  # type: ignore[arg-type]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.exp(np.interp(np.log(n), log_n, log_ratio))  # clamped at both ends
        return 6.0 * n * ratio

    def flops(self, n_params: Any, tokens: Any) -> np.ndarray:
        return self.flops_per_token(n_params) * np.asarray(tokens, dtype=np.float64)

    def tokens(self, n_params: Any, flops: Any) -> np.ndarray:
        return np.asarray(flops, dtype=np.float64) / self.flops_per_token(n_params)

    def to_json(self) -> dict[str, Any]:
        return {"convention": self.convention, "family": None if self.family is None else asdict(self.family),
                "family_exact": self.family_exact}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> Compute:
        """The convention a fit.json records; a fit written before conventions were recorded is 6ND."""
        if not raw:
            return cls(SIX_ND)
        family = raw.get("family")
        return cls(str(raw.get("convention", SIX_ND)), Family(**family) if family else None,
                   bool(raw.get("family_exact", True)))


@functools.cache
def _ladder(family: Family) -> tuple[np.ndarray, np.ndarray]:
    """(log n_params, log(flops_per_token / 6 n_params)) at every ladder shape of `family`, up to
    LADDER_MAX_PARAMS (widths beyond the family's max_d_model included: extrapolation)."""
    log_n, log_ratio = [], []
    d_model = family.head_dim
    while True:
        shape = family.shape(d_model)
        n = count_params(shape)
        log_n.append(math.log(n))
        log_ratio.append(math.log(flops_per_token(shape) / (6.0 * n)))
        if n > LADDER_MAX_PARAMS:
            break
        d_model += family.head_dim * max(1, d_model // (64 * family.head_dim))  # ~1.5% steps at large widths
    return np.array(log_n), np.array(log_ratio)


def family_of_shapes(shapes: Sequence[ModelShape]) -> tuple[Family, bool]:
    """The model family that the runs' shapes come from, and whether it reproduces every shape.

    vocabulary, sequence length and head width are read off the shapes (the most common value); the
    aspect ratio (d_model / n_layers) is the integer that reproduces every run's depth if one does,
    else the median ratio; the MLP width keeps the family's default (SwiGLU 8/3, multiples of 16).
    """
    if not shapes:
        raise ValueError("no shapes to infer a model family from")
    vocab = statistics.mode(s.vocab_size for s in shapes)
    seq_len = statistics.mode(s.seq_len for s in shapes)
    head_dim = statistics.mode(s.head_dim for s in shapes)
    ratios = [s.d_model / s.n_layers for s in shapes]
    median = statistics.median(ratios)
    fits = [a for a in range(1, 4097) if all(max(1, round(s.d_model / a)) == s.n_layers for s in shapes)]
    aspect = min(fits, key=lambda a: abs(a - median)) if fits else max(1, round(median))
    family = Family(vocab_size=vocab, seq_len=seq_len, aspect_ratio=aspect, head_dim=head_dim)
    exact = all(s.d_model % head_dim == 0 and family.shape(s.d_model) == s for s in shapes)
    return family, exact


# --------------------------------------------------------------------------------------------
# The compute-optimal model size


def minimise_log_n(loss: Callable[[np.ndarray], np.ndarray], lo: float, hi: float, samples: int,
                   grid: int = 480, iters: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, the x = log N in [lo, hi] minimising `loss(x)`, where `loss` maps an (S, K)
    array of log N to (S, K) losses: a dense grid, then golden-section refinement around the
    grid's best point, vectorised across the S samples. Returns (x (S,), loss (S,)); non-finite
    losses count as +inf."""
    xs = np.linspace(lo, hi, grid)

    def f(x: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            v = loss(x)
        return np.where(np.isfinite(v), v, np.inf)

    values = f(np.broadcast_to(xs, (samples, grid)))
    i = np.argmin(values, axis=1)
    step = xs[1] - xs[0]
    a, b = np.clip(xs[i] - step, lo, hi), np.clip(xs[i] + step, lo, hi)
    x1, x2 = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
    f1, f2 = f(x1[:, None])[:, 0], f(x2[:, None])[:, 0]
    for _ in range(iters):
        left = f1 < f2  # the minimum is in [a, x2]: drop (x2, b]; else drop [a, x1)
        b = np.where(left, x2, b)
        a = np.where(left, a, x1)
        xn = np.where(left, b - GOLDEN * (b - a), a + GOLDEN * (b - a))
        fn = f(xn[:, None])[:, 0]
        x1, f1, x2, f2 = (np.where(left, xn, x2), np.where(left, fn, f2),
                          np.where(left, x1, xn), np.where(left, f1, fn))
    x = 0.5 * (a + b)
    fx = f(x[:, None])[:, 0]
    grid_best = values[np.arange(samples), i]
    use_grid = ~(fx <= grid_best)
    return np.where(use_grid, xs[i], x), np.where(use_grid, grid_best, fx)


def max_log_n(flops: Any) -> Any:
    """log of the largest N a budget can train: C / 6, one token per parameter under 6ND (under
    flops_v1 such a run costs a little more; the search's upper end, never its answer)."""
    return np.log(np.asarray(flops, dtype=np.float64) / 6.0)


def law_columns_fixed(law: Any) -> dict[str, float] | None:
    """The columns other than N and D a law needs, fixed for an allocation: the reference tier alone
    (w = 1 for it, 0 for the others; the first group for a per-group law) and no repetition (unique
    pools infinite). None when the law is not a law in N and D (the mixing law)."""
    if "N" not in law.columns or "D" not in law.columns:
        return None
    spec = dict(law.spec)
    weights = [c for c in law.columns if c.startswith("w_")]
    reference = spec.get("reference") or (weights[0].removeprefix("w_") if weights else None)
    fixed: dict[str, float] = {}
    for c in law.columns:
        if c.startswith("w_"):
            fixed[c] = 1.0 if c == f"w_{reference}" else 0.0
        elif c == "U" or c.startswith("U_"):
            fixed[c] = math.inf
    return fixed


def allocate(law: Any, thetas: Any, flops: float, compute: Compute,
             fixed: Mapping[str, float] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The compute-optimal (N, D) spending `flops` under `compute`, for every row of `thetas`
    (S, P) (or one theta (P,)): (n_opt (S,), d_opt (S,), loss (S,)), with D = flops /
    flops_per_token(N), so every answer costs exactly its budget under the convention. N is
    searched over [1, flops / 6]. None when the law is not in N and D."""
    columns = dict(law_columns_fixed(law) or {}) if fixed is None else dict(fixed)
    if "N" not in law.columns or "D" not in law.columns:
        return None
    theta = np.atleast_2d(np.asarray(thetas, dtype=np.float64))
    params = theta.T[:, :, None]  # (P, S, 1): each parameter broadcasts against (S, K) grids

    def loss(log_n: np.ndarray) -> np.ndarray:
        n = np.exp(log_n)
        data = {"N": n, "D": compute.tokens(n, flops), **{k: np.full_like(n, v) for k, v in columns.items()}}
        return np.exp(law.predict_log(params, data, np))

    x, best = minimise_log_n(loss, 0.0, float(max_log_n(flops)), theta.shape[0])
    n_opt = np.exp(x)
    return n_opt, compute.tokens(n_opt, flops), best
