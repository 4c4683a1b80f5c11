"""Compute-optimal allocation without a parametric law: IsoFLOP parabolas and the loss envelope.

Two of the three estimates of Hoffmann et al. (2022) that the report shows side by side
(the third is the parametric fit, `scaler.fitting.laws` / `scaler.fitting.fitter`):

Approach 2 (`approach2`, IsoFLOP profiles)
    Runs are grouped by compute budget C (an explicit `budget` column if the frame has one,
    otherwise runs whose C lie within `rel_tol` (2%) of each other, in log space). Within a
    budget, loss is fitted by a parabola in log N (least squares, degree 2); its vertex is the
    budget's optimum N*(C). D*(C) is read from the runs' own D: log D is fitted as a line in
    log N over the budget's runs and evaluated at log N*. That keeps D* consistent with the
    project's FLOP convention (`flops_v1` counts attention, so C != 6ND exactly); pass
    `d_method="6nd"` for the textbook D* = C / (6 N*) instead.
    A budget whose parabola opens downward ("concave"), whose vertex lies outside the sampled N
    range ("edge": the sizes sit on one side of the optimum, so the vertex is an extrapolation),
    or that has fewer than three distinct sizes ("too_few") is *reported with its status and not
    used* in the power-law fit. Then `log N* = log k_N + a log C` and `log D* = log k_D + b log C`
    by least squares over the good budgets.
    Intervals: bootstrap over runs within each budget (each budget's runs resampled with
    replacement, parabolas refitted, power laws refitted; percentile 95%). A replicate in which a
    budget's parabola is concave or its vertex leaves the budget's sampled N range drops that
    budget from that replicate's power-law fit; replicates with fewer than two usable budgets are
    dropped (their count is reported as `n_boot_used`).

Approach 1 (`approach1`, the envelope)
    Every run's loss curve (loss against cumulative FLOPs) is put on a common log-spaced grid of
    compute values ("bins", `bins_per_decade` per decade). In the default mode "interp" each
    curve is interpolated (linear in log FLOPs) at the bin centres it covers; mode "bin" instead
    takes each run's lowest loss among its points inside each bin. At each bin the lowest loss
    over all runs is the envelope; the run attaining it gives N (its size) and D (its tokens at
    that point). `log N = log k_N + a log C` and `log D = log k_D + b log C` are fitted over the
    bins. A bin is used only when at least three runs cover it and the winner is neither the
    smallest nor the largest run covering it (an edge winner means the true optimum may lie
    outside the sizes present, the same rule as approach 2's "edge"). Intervals: bootstrap over
    runs (runs resampled with replacement, envelope rebuilt, refitted; percentile 95%).

    Caveat (docs/design.md §5): a point in the middle of a cosine run is not "the loss at D" — the
    schedule has not annealed there, so its loss is higher than that of a run whose schedule
    ends at D. The envelope uses those intermediate points anyway, as Hoffmann et al. did; the
    envelope is therefore biased towards points near the end of each run (where the schedule has
    annealed), i.e. towards the run lengths that were actually trained. Densely spaced run
    lengths (or WSD cooldown branches, with only the branch points passed in) reduce the bias;
    filter the curves frame before calling if you want only annealed points.

`compare` puts the two (and, if given, the parametric law's exponents) side by side.

numpy and scipy only: no JAX, no fitter, so this module imports in milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

from scaler.fitting.inputs import json_safe
from scaler.fitting.laws import allocation_exponents
from scaler.fitting.stats import percentile_interval

__all__ = [
    "BudgetMinimum",
    "PowerLawAllocation",
    "IsoflopResult",
    "EnvelopePoint",
    "EnvelopeResult",
    "approach2",
    "approach1",
    "compare",
    "group_budgets",
]

def _masked_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares line y = c + s x per row, with 0/1 (or count) weights; shapes (R, K).

    Rows with fewer than two distinct weighted x get NaN.
    """
    x = np.where(w > 0, x, 0.0)
    y = np.where(w > 0, y, 0.0)
    sw = w.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = (w * x).sum(-1) / sw
        my = (w * y).sum(-1) / sw
        dx = np.where(w > 0, x - mx[..., None], 0.0)
        sxx = (w * dx * dx).sum(-1)
        sxy = (w * dx * (y - my[..., None])).sum(-1)
        slope = sxy / sxx
        bad = (sxx <= 1e-12 * np.maximum(1.0, sw)) | ((w > 0).sum(-1) < 2)
        slope = np.where(bad, np.nan, slope)
        icpt = np.where(bad, np.nan, my - slope * mx)
    return icpt, slope


# ---------------------------------------------------------------------------------------------
# Approach 2: IsoFLOP parabolas
# ---------------------------------------------------------------------------------------------


@dataclass
class BudgetMinimum:
    """One budget's parabola and its vertex; `status` != "ok" means it was not used in the fit."""

    budget: float  # C (FLOPs): the budget column's value, or the group's geometric mean of C
    n_runs: int
    n_sizes: int
    n_min: float  # smallest sampled N
    n_max: float  # largest sampled N
    status: str  # "ok" | "concave" | "edge" | "too_few"
    curvature: float | None = None  # parabola's x^2 coefficient in log N (> 0: opens upward)
    n_opt: float | None = None  # vertex N*; for "edge" the extrapolated vertex (not used)
    n_opt_interval: tuple[float, float] | None = None
    d_opt: float | None = None
    d_opt_interval: tuple[float, float] | None = None
    loss_opt: float | None = None  # parabola's value at the vertex
    loss_opt_interval: tuple[float, float] | None = None
    note: str = ""


@dataclass
class PowerLawAllocation:
    """N_opt = k_N C^a and D_opt = k_D C^b, with the exponents' percentile intervals."""

    a: float
    a_interval: tuple[float, float]
    b: float
    b_interval: tuple[float, float]
    k_n: float
    k_d: float

    def n_opt(self, c: float | np.ndarray) -> np.ndarray:
        return self.k_n * np.asarray(c, dtype=float) ** self.a

    def d_opt(self, c: float | np.ndarray) -> np.ndarray:
        return self.k_d * np.asarray(c, dtype=float) ** self.b


@dataclass
class IsoflopResult(PowerLawAllocation):
    """Approach 2: the allocation power laws fitted over the good budgets' minima."""

    budgets: list[BudgetMinimum]
    n_good: int
    n_boot: int
    n_boot_used: int
    seed: int
    d_method: str
    method: str = "isoflop"

    @property
    def flagged(self) -> list[BudgetMinimum]:
        return [g for g in self.budgets if g.status != "ok"]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["flagged"] = [g.budget for g in self.flagged]
        return json_safe(out)


def group_budgets(c: np.ndarray, rel_tol: float = 0.02) -> np.ndarray:
    """Integer budget labels: sorted C values whose log differs from the group's first by at most
    log(1 + rel_tol) share a label (labels increase with C)."""
    c = np.asarray(c, dtype=float)
    if np.any(~np.isfinite(c)) or np.any(c <= 0):
        raise ValueError("budgets C must be positive and finite")
    order = np.argsort(c, kind="stable")
    lc = np.log(c[order])
    labels_sorted = np.empty(len(c), dtype=np.int64)
    g, start = -1, -np.inf
    tol = math.log1p(rel_tol)
    for i, v in enumerate(lc):
        if v - start > tol:
            g += 1
            start = v
        labels_sorted[i] = g
    labels = np.empty_like(labels_sorted)
    labels[order] = labels_sorted
    return labels


def _parabola_batch(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares y = p0 x^2 + p1 x + p2 for each row of (R, n) arrays -> (R, 3); NaN rows
    where the design is (near) singular (fewer than three distinct x)."""
    xc = x.mean(axis=-1, keepdims=True)  # centre for conditioning
    u = x - xc
    V = np.stack([u * u, u, np.ones_like(u)], axis=-1)  # (R, n, 3)
    A = np.einsum("rni,rnj->rij", V, V)
    rhs = np.einsum("rni,rn->ri", V, y)
    # singular when fewer than three distinct x
    xs = np.sort(x, axis=-1)
    n_distinct = 1 + (np.diff(xs, axis=-1) > 1e-9 * np.maximum(1.0, np.abs(xs[..., 1:]))).sum(-1)
    ok = n_distinct >= 3
    p = np.full(A.shape[:-1], np.nan)
    if ok.any():
        p[ok] = np.linalg.solve(A[ok], rhs[ok][..., None])[..., 0]
    # undo the centring: q(u) with u = x - xc
    c2, c1, c0 = p[:, 0], p[:, 1], p[:, 2]
    xcc = xc[:, 0]
    return np.stack([c2, c1 - 2 * c2 * xcc, c0 - c1 * xcc + c2 * xcc * xcc], axis=-1)


def _vertex(p: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log N*, loss*, usable) for parabola coefficient rows p; usable = convex & vertex in [lo, hi]."""
    c2, c1, c0 = p[..., 0], p[..., 1], p[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        xv = -c1 / (2 * c2)
        yv = c0 - c1 * c1 / (4 * c2)
    usable = np.isfinite(xv) & (c2 > 0) & (xv >= lo) & (xv <= hi)
    return xv, yv, usable


def _isoflop_columns(
    runs: pl.DataFrame, n_col: str, d_col: str, c_col: str, loss_col: str, budget_col: str | None,
    rel_tol: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[int, float]]:
    """(N, D, loss, budget label per run, budget C in FLOPs per label) of the runs with no nulls.

    Labels come from `budget_col` if the frame has it, else from `group_budgets` on C (whose
    budget value is then the group's geometric mean of C)."""
    need = [n_col, d_col, c_col, loss_col]
    missing = [c for c in need if c not in runs.columns]
    if missing:
        raise ValueError(f"approach2 needs columns {need}; missing {missing}")
    df = runs.drop_nulls(need)
    N = df[n_col].to_numpy().astype(float)
    D = df[d_col].to_numpy().astype(float)
    C = df[c_col].to_numpy().astype(float)
    L = df[loss_col].to_numpy().astype(float)
    if np.any(N <= 0) or np.any(D <= 0):
        raise ValueError("N and D must be positive")
    if budget_col is not None and budget_col in df.columns:
        bvals = df[budget_col].to_numpy().astype(float)
        uniq, labels = np.unique(bvals, return_inverse=True)
        budget_value = {g: float(uniq[g]) for g in range(len(uniq))}
    else:
        labels = group_budgets(C, rel_tol)
        budget_value = {g: float(np.exp(np.log(C[labels == g]).mean())) for g in np.unique(labels)}
    return N, D, L, labels, budget_value


def _budget_vertex(log_n: np.ndarray, loss: np.ndarray, budget_flops: float) -> tuple[BudgetMinimum, Any]:
    """One budget's parabola in log N and its vertex, with the budget's status.

    Returns (the budget, its vertex log N*); the vertex is None when no parabola has a minimum
    ("too_few", "concave"). For "ok" the budget still lacks D* and the bootstrap intervals."""
    n_sizes = int(np.unique(np.round(log_n, 9)).size)
    bm = BudgetMinimum(
        budget=budget_flops, n_runs=int(log_n.size), n_sizes=n_sizes, n_min=float(np.exp(log_n.min())),
        n_max=float(np.exp(log_n.max())), status="too_few",
    )
    if n_sizes < 3:
        bm.note = f"{n_sizes} distinct sizes; a parabola needs 3"
        return bm, None
    p = _parabola_batch(log_n[None], loss[None])[0]
    xv, yv, usable = _vertex(p, log_n.min(), log_n.max())
    bm.curvature = float(p[0])
    if not p[0] > 0:
        bm.status = "concave"
        bm.note = "parabola opens downward: no minimum"
        return bm, None
    bm.n_opt, bm.loss_opt = float(np.exp(xv)), float(yv)
    if not usable:
        bm.status = "edge"
        side = "below the smallest" if xv < log_n.min() else "above the largest"
        bm.note = f"vertex lies {side} sampled size: extrapolated, not used"
        return bm, xv
    bm.status = "ok"
    return bm, xv


def _tokens_at_vertex(
    log_n: np.ndarray, log_d: np.ndarray, log_n_opt: Any, budget_flops: float, n_opt: float, d_method: str
) -> float:
    """D* (tokens) at the budget's optimum: C / (6 N*) ("6nd"), or log D fitted as a line in log N
    over the budget's runs and read at log N* ("interp")."""
    if d_method == "6nd":
        return float(budget_flops / (6 * n_opt))
    dc, ds = _masked_line(log_n[None], log_d[None], np.ones((1, log_n.size)))
    return float(np.exp(dc[0] + ds[0] * log_n_opt))


def _bootstrap_budget(
    bm: BudgetMinimum, log_n: np.ndarray, loss: np.ndarray, log_d: np.ndarray, d_method: str, n_boot: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Resample the budget's runs `n_boot` times and refit its parabola; sets `bm`'s N*, D* and
    loss* intervals (and a note on replicates with no usable vertex).

    Returns the replicates' (log N*, log D*), each (n_boot,), NaN where the vertex is unusable."""
    idx = rng.integers(0, log_n.size, size=(n_boot, log_n.size))
    xb, yb = log_n[idx], loss[idx]
    pb = _parabola_batch(xb, yb)
    xvb, yvb, ub = _vertex(pb, log_n.min(), log_n.max())
    xvb = np.where(ub, xvb, np.nan)
    yvb = np.where(ub, yvb, np.nan)
    if d_method == "6nd":
        ldb = np.log(bm.budget / 6) - xvb
    else:
        dcb, dsb = _masked_line(xb, log_d[idx], np.ones_like(xb))
        ldb = dcb + dsb * xvb
    bm.n_opt_interval = tuple(float(v) for v in np.exp(percentile_interval(xvb)))
    bm.d_opt_interval = tuple(float(v) for v in np.exp(percentile_interval(ldb)))
    bm.loss_opt_interval = percentile_interval(yvb)
    lost = int((~ub).sum())
    if lost:
        bm.note = f"{lost}/{n_boot} bootstrap replicates had no usable vertex"
    return xvb, ldb


def _budget_minima(
    N: np.ndarray, D: np.ndarray, L: np.ndarray, labels: np.ndarray, budget_value: dict[int, float],
    d_method: str, n_boot: int, seed: int,
) -> tuple[list[BudgetMinimum], list[np.ndarray], list[np.ndarray]]:
    """Every budget's minimum, in increasing C, and per "ok" budget its bootstrap (log N*, log D*)
    replicates (empty lists when n_boot == 0)."""
    rng = np.random.default_rng(seed)
    budgets: list[BudgetMinimum] = []
    boot_logn: list[np.ndarray] = []  # per good budget: (n_boot,) log N* (NaN if unusable)
    boot_logd: list[np.ndarray] = []
    for g in sorted(budget_value, key=lambda g: budget_value[g]):
        m = labels == g
        x, y, ld, cg = np.log(N[m]), L[m], np.log(D[m]), budget_value[g]
        bm, xv = _budget_vertex(x, y, cg)
        budgets.append(bm)
        if bm.status != "ok":
            continue
        bm.d_opt = _tokens_at_vertex(x, ld, xv, cg, bm.n_opt, d_method)
        if n_boot > 0:
            xvb, ldb = _bootstrap_budget(bm, x, y, ld, d_method, n_boot, rng)
            boot_logn.append(xvb)
            boot_logd.append(ldb)
    return budgets, boot_logn, boot_logd


def _bootstrap_allocation_exponents(
    log_c: np.ndarray, boot_logn: list[np.ndarray], boot_logd: list[np.ndarray]
) -> tuple[tuple[float, float], tuple[float, float], int]:
    """(a interval, b interval, replicates used): the power laws refitted per bootstrap replicate
    over the budgets whose vertex was usable in it."""
    BN = np.stack(boot_logn, axis=1)  # (n_boot, n_good)
    BD = np.stack(boot_logd, axis=1)
    w = (np.isfinite(BN) & np.isfinite(BD)).astype(float)
    LC = np.broadcast_to(log_c, BN.shape)
    _, ab = _masked_line(LC, np.nan_to_num(BN), w)
    _, bb = _masked_line(LC, np.nan_to_num(BD), w)
    n_used = int(np.isfinite(ab).sum())
    return percentile_interval(ab), percentile_interval(bb), n_used


def approach2(
    runs: pl.DataFrame,
    *,
    n_col: str = "N",
    d_col: str = "D",
    c_col: str = "C",
    loss_col: str = "loss",
    budget_col: str | None = "budget",
    rel_tol: float = 0.02,
    d_method: str = "interp",
    n_boot: int = 1000,
    seed: int = 0,
) -> IsoflopResult:
    """IsoFLOP profiles (Hoffmann et al. 2022, Approach 2). See the module docstring.

    `runs`: one row per run (final losses of runs trained to the end of their schedules) with
    columns N, D, C, loss (names configurable) and optionally `budget` (used as the grouping
    if present; `budget_col=None` ignores it). `d_method`: "interp" (log D linear in log N over
    the budget's runs, at N*) or "6nd" (D* = C / (6 N*)).
    """
    if d_method not in ("interp", "6nd"):
        raise ValueError(f"d_method must be 'interp' or '6nd', not {d_method!r}")
    N, D, L, labels, budget_value = _isoflop_columns(runs, n_col, d_col, c_col, loss_col, budget_col, rel_tol)
    budgets, boot_logn, boot_logd = _budget_minima(N, D, L, labels, budget_value, d_method, n_boot, seed)
    good = [bm for bm in budgets if bm.status == "ok"]
    n_good = len(good)
    if n_good < 2:
        raise ValueError(
            f"approach2 needs at least two budgets with a usable minimum; got {n_good} "
            f"(statuses: {[(f'{b.budget:.3g}', b.status) for b in budgets]})"
        )
    lc = np.log(np.array([bm.budget for bm in good]))
    one = np.ones((1, n_good))
    cn, a = _masked_line(lc[None], np.log(np.array([bm.n_opt for bm in good]))[None], one)
    cd, b = _masked_line(lc[None], np.log(np.array([bm.d_opt for bm in good]))[None], one)
    a_int = b_int = (float("nan"), float("nan"))
    n_used = 0
    if n_boot > 0:
        a_int, b_int, n_used = _bootstrap_allocation_exponents(lc, boot_logn, boot_logd)
    return IsoflopResult(
        a=float(a[0]), a_interval=a_int, b=float(b[0]), b_interval=b_int,
        k_n=float(np.exp(cn[0])), k_d=float(np.exp(cd[0])), budgets=budgets, n_good=n_good,
        n_boot=n_boot, n_boot_used=n_used, seed=seed, d_method=d_method,
    )


# ---------------------------------------------------------------------------------------------
# Approach 1: the envelope of the loss curves
# ---------------------------------------------------------------------------------------------


@dataclass
class EnvelopePoint:
    flops: float  # bin centre ("interp") or the winning point's FLOPs ("bin")
    loss: float
    run_id: str
    n: float
    tokens: float
    n_covering: int  # runs whose curves reach this bin
    used: bool  # False: fewer than 3 covering runs, or an edge winner


@dataclass
class EnvelopeResult(PowerLawAllocation):
    """Approach 1: the allocation power laws fitted along the loss envelope."""

    points: list[EnvelopePoint]
    n_used: int
    n_runs: int
    n_boot: int
    n_boot_used: int
    seed: int
    mode: str
    bins_per_decade: float
    method: str = "envelope"
    caveat: str = (
        "envelope uses intermediate points of each run's curve; mid-schedule (e.g. cosine) losses "
        "are not the loss of a run trained to that D (docs/design.md §5), so the envelope favours points "
        "near the end of trained schedules"
    )

    def to_json(self) -> dict[str, Any]:
        return json_safe(asdict(self))


def _envelope_matrices(
    curves: pl.DataFrame, run_col: str, n_col: str, t_col: str, c_col: str, loss_col: str,
    bins_per_decade: float, mode: str,
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(run ids, run sizes (R,), bin flops (K, R), loss (K, R), tokens (K, R), centres (K,)).

    loss is +inf where a run does not cover a bin."""
    df = curves.drop_nulls([run_col, n_col, t_col, c_col, loss_col]).filter(
        (pl.col(c_col) > 0) & (pl.col(t_col) > 0)
    )
    if df.height == 0:
        raise ValueError("approach1: no curve points with positive flops and tokens")
    run_ids = sorted(df[run_col].unique().to_list(), key=str)
    lc_all = np.log10(df[c_col].to_numpy().astype(float))
    lo, hi = lc_all.min(), lc_all.max()
    k = max(1, int(math.ceil((hi - lo) * bins_per_decade)))
    edges = np.linspace(lo, hi, k + 1) if hi > lo else np.array([lo - 0.5, hi + 0.5])
    centres = 0.5 * (edges[:-1] + edges[1:])
    K, R = len(centres), len(run_ids)
    LOSS = np.full((K, R), np.inf)
    TOK = np.full((K, R), np.nan)
    FL = np.tile(10.0 ** centres[:, None], (1, R))
    sizes = np.empty(R)
    parts = {str(key[0] if isinstance(key, tuple) else key): g for key, g in df.group_by(run_col)}
    for r, rid in enumerate(run_ids):
        g = parts[str(rid)].sort(c_col)
        lc = np.log10(g[c_col].to_numpy().astype(float))
        lt = np.log(g[t_col].to_numpy().astype(float))
        y = g[loss_col].to_numpy().astype(float)
        nvals = g[n_col].to_numpy().astype(float)
        if np.ptp(nvals) > 1e-9 * nvals.max():
            raise ValueError(f"run {rid!r} has more than one N in its curve")
        sizes[r] = nvals[0]
        if mode == "interp":
            inside = (centres >= lc.min()) & (centres <= lc.max())
            if lc.size == 1:
                inside = np.abs(centres - lc[0]) <= 0.5 * (edges[1] - edges[0])
            LOSS[inside, r] = np.interp(centres[inside], lc, y)
            TOK[inside, r] = np.exp(np.interp(centres[inside], lc, lt))
        else:
            b = np.clip(np.searchsorted(edges, lc, side="right") - 1, 0, K - 1)
            for kk in np.unique(b):
                sel = np.flatnonzero(b == kk)
                j = sel[np.argmin(y[sel])]
                LOSS[kk, r], TOK[kk, r], FL[kk, r] = y[j], np.exp(lt[j]), 10.0 ** lc[j]
    return [str(r) for r in run_ids], sizes, FL, LOSS, TOK, centres


def _envelope_pick(
    LOSS: np.ndarray, sizes: np.ndarray, include: np.ndarray, min_cover: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For inclusion masks (B, R): winner index (B, K), covering count (B, K), usable (B, K)."""
    cover = np.isfinite(LOSS)[None] & include[:, None, :]  # (B, K, R)
    Lm = np.where(cover, LOSS[None], np.inf)
    win = np.argmin(Lm, axis=-1)  # (B, K)
    ncov = cover.sum(-1)
    big = np.where(cover, sizes[None, None, :], -np.inf).max(-1)
    small = np.where(cover, sizes[None, None, :], np.inf).min(-1)
    wn = sizes[win]
    usable = (ncov >= min_cover) & (wn > small) & (wn < big)
    return win, ncov, usable


def approach1(
    curves: pl.DataFrame,
    *,
    run_col: str = "run_id",
    n_col: str = "N",
    tokens_col: str = "tokens",
    flops_col: str = "flops",
    loss_col: str = "loss",
    bins_per_decade: float = 10.0,
    mode: str = "interp",
    min_cover: int = 3,
    n_boot: int = 1000,
    seed: int = 0,
) -> EnvelopeResult:
    """The loss envelope (Hoffmann et al. 2022, Approach 1). See the module docstring.

    `curves`: one row per evaluated point of every run: run_id, N (constant per run), tokens (D
    seen so far), flops (C so far), loss. `mode`: "interp" (curves interpolated at log-spaced bin
    centres) or "bin" (each run's lowest loss inside each bin). Bins used need at least
    `min_cover` covering runs and a winner that is neither the smallest nor the largest of them.
    """
    if mode not in ("interp", "bin"):
        raise ValueError(f"mode must be 'interp' or 'bin', not {mode!r}")
    need = [run_col, n_col, tokens_col, flops_col, loss_col]
    missing = [c for c in need if c not in curves.columns]
    if missing:
        raise ValueError(f"approach1 needs columns {need}; missing {missing}")
    run_ids, sizes, FL, LOSS, TOK, _ = _envelope_matrices(
        curves, run_col, n_col, tokens_col, flops_col, loss_col, bins_per_decade, mode
    )
    K, R = LOSS.shape
    win, ncov, usable = _envelope_pick(LOSS, sizes, np.ones((1, R), bool), min_cover)
    win, ncov, usable = win[0], ncov[0], usable[0]
    kk = np.arange(K)
    points = [
        EnvelopePoint(
            flops=float(FL[k, win[k]]), loss=float(LOSS[k, win[k]]), run_id=run_ids[win[k]],
            n=float(sizes[win[k]]), tokens=float(TOK[k, win[k]]), n_covering=int(ncov[k]),
            used=bool(usable[k]),
        )
        for k in kk
        if ncov[k] > 0
    ]
    n_used = int(usable.sum())
    if n_used < 2:
        raise ValueError(
            f"approach1 needs at least two usable envelope bins; got {n_used} of {K} "
            f"(each needs >= {min_cover} covering runs and an interior-size winner)"
        )
    lcf = np.log(FL[kk, win])
    ln = np.log(sizes[win])
    lt = np.log(TOK[kk, win])
    w = usable.astype(float)[None]
    cn, a = _masked_line(lcf[None], ln[None], w)
    cd, b = _masked_line(lcf[None], lt[None], w)
    a_int = b_int = (float("nan"), float("nan"))
    n_boot_used = 0
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        a_s, b_s = [], []
        chunk = max(1, int(2e6 // max(1, K * R)))
        for s in range(0, n_boot, chunk):
            m = min(chunk, n_boot - s)
            draws = rng.integers(0, R, size=(m, R))
            inc = np.zeros((m, R), bool)
            np.put_along_axis(inc, draws, True, axis=1)
            wb, _, ub = _envelope_pick(LOSS, sizes, inc, min_cover)
            xb = np.log(FL[kk[None], wb])
            _, ab = _masked_line(xb, np.log(sizes[wb]), ub.astype(float))
            _, bb = _masked_line(xb, np.log(np.where(ub, TOK[kk[None], wb], 1.0)), ub.astype(float))
            a_s.append(ab)
            b_s.append(bb)
        ab, bb = np.concatenate(a_s), np.concatenate(b_s)
        n_boot_used = int(np.isfinite(ab).sum())
        a_int, b_int = percentile_interval(ab), percentile_interval(bb)
    return EnvelopeResult(
        a=float(a[0]), a_interval=a_int, b=float(b[0]), b_interval=b_int, k_n=float(np.exp(cn[0])),
        k_d=float(np.exp(cd[0])), points=points, n_used=n_used, n_runs=R, n_boot=n_boot,
        n_boot_used=n_boot_used, seed=seed, mode=mode, bins_per_decade=bins_per_decade,
    )


# ---------------------------------------------------------------------------------------------
# Side by side
# ---------------------------------------------------------------------------------------------

_ROW_KEYS = ("method", "a", "a_lo", "a_hi", "b", "b_lo", "b_hi")


def _row_from_result(r: IsoflopResult | EnvelopeResult) -> dict[str, Any]:
    return {
        "method": "approach 1 (envelope)" if isinstance(r, EnvelopeResult) else "approach 2 (isoflop)",
        "a": r.a, "a_lo": r.a_interval[0], "a_hi": r.a_interval[1],
        "b": r.b, "b_lo": r.b_interval[0], "b_hi": r.b_interval[1],
    }


def _row_from_parametric(p: dict[str, Any]) -> dict[str, Any]:
    """Accepts {"a", "b"} (N and D exponents) with {"a_lo", "a_hi", ...} or {"a_interval": (lo, hi)},
    or {"alpha", "beta"} (law exponents; a = beta/(alpha+beta), b = alpha/(alpha+beta)) with
    optional "a"/"b" intervals as above."""
    row: dict[str, Any] = {"method": str(p.get("method", "approach 3 (parametric)"))}
    if "a" in p and "b" in p:
        row["a"], row["b"] = float(p["a"]), float(p["b"])
    elif "alpha" in p and "beta" in p:
        row["a"], row["b"] = allocation_exponents(float(p["alpha"]), float(p["beta"]))
    else:
        raise ValueError("parametric needs 'a' and 'b' (or 'alpha' and 'beta')")
    for k in ("a", "b"):
        lo, hi = p.get(f"{k}_lo"), p.get(f"{k}_hi")
        if lo is None and p.get(f"{k}_interval") is not None:
            lo, hi = p[f"{k}_interval"]
        row[f"{k}_lo"] = None if lo is None else float(lo)
        row[f"{k}_hi"] = None if hi is None else float(hi)
    return row


def compare(
    approach1: EnvelopeResult | None,
    approach2: IsoflopResult | None,
    parametric: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Rows (method, a, a_lo, a_hi, b, b_lo, b_hi) for the report: N_opt ∝ C^a, D_opt ∝ C^b.

    Any argument may be None (that row is left out). NaN/inf become None."""
    rows = []
    for r in (approach1, approach2):
        if r is not None:
            rows.append(_row_from_result(r))
    if parametric is not None:
        rows.append(_row_from_parametric(parametric))
    return [json_safe({k: row.get(k) for k in _ROW_KEYS}) for row in rows]
