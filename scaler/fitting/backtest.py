"""Backtests: can a law predict the runs it was not fitted on?

docs/design.md §5: every fit reports a backtest. `backtest` fits on the runs at or below a compute cut
and predicts the runs above it (the extrapolation a budget recommendation relies on); a law that
cannot predict its own largest runs says so (`BacktestResult.verdict`). `leave_one_group_out`
fits without each value of a column (a tier, a mix, a size) and predicts that group: the
extrapolation audit across groups.

The frame holds one row per fitted point (normally one per run: its final loss) with the law's
columns, `loss` and `flops` (falls back to `C`, the name `scaler.fitting.inputs` uses). Every numeric
column is handed to the law (laws that read mix weights `w_<tier>` or pools `U_<tier>` find them);
the law's own `columns` must be present. An optional `run_id` column is carried into the rows.

Relative error is (predicted − observed) / observed, so a positive bias means the law predicts
losses that are too high (too pessimistic) for the held-out runs.

The fitter is imported lazily inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from scaler.fitting.inputs import json_safe

__all__ = ["HeldOutRow", "BacktestResult", "backtest", "leave_one_group_out", "order_stability", "DEFAULT_TOLERANCE"]

DEFAULT_TOLERANCE = 0.02  # mean |relative error| above this: "the law does not extrapolate"


@dataclass
class HeldOutRow:
    index: int  # row position in the frame given
    run_id: str | None
    flops: float | None
    observed: float
    predicted: float
    rel_error: float  # (predicted - observed) / observed
    point: dict[str, float] = field(default_factory=dict)  # the law's columns for this row (N, D, ...)


@dataclass
class BacktestResult:
    law: str
    split: str  # e.g. "flops <= 1.2e+18" or "tier != clean"
    n_fit: int
    n_heldout: int
    mean_abs_rel_error: float
    max_abs_rel_error: float
    bias: float  # signed mean relative error
    cut_flops: float | None = None
    group_col: str | None = None
    group: Any = None
    params: dict[str, float] = field(default_factory=dict)
    objective: float | None = None
    converged: bool | None = None
    rows: list[HeldOutRow] = field(default_factory=list)
    error: str | None = None  # set (and the numbers NaN) when this split could not be fitted

    @property
    def ok(self) -> bool:
        return self.error is None

    def verdict(self, tolerance: float = DEFAULT_TOLERANCE) -> str:
        """One sentence for the report."""
        if self.error:
            return f"{self.law}: backtest {self.split} not run: {self.error}"
        what = "largest runs" if self.group_col is None else f"group {self.group!r}"
        good = self.mean_abs_rel_error <= tolerance
        head = "predicts" if good else "does NOT predict"
        return (
            f"{self.law} {head} its {what} within {tolerance:.1%}: mean |rel. error| "
            f"{self.mean_abs_rel_error:.2%}, max {self.max_abs_rel_error:.2%}, bias {self.bias:+.2%} "
            f"({self.n_heldout} held out, fitted on {self.n_fit}; {self.split})"
        )

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["verdict"] = self.verdict()
        return json_safe(out)


def _flops(frame: pl.DataFrame, flops_col: str) -> np.ndarray:
    for name in (flops_col, "C"):
        if name in frame.columns:
            return frame[name].cast(pl.Float64).to_numpy()
    raise ValueError(f"backtest needs a {flops_col!r} (or 'C') column; columns: {frame.columns}")


def _law_data(law: Any, frame: pl.DataFrame, loss_col: str, exclude: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    cols = tuple(getattr(law, "columns", ()))
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise ValueError(f"law {getattr(law, 'name', law)!r} needs columns {list(cols)}; missing {missing}")
    if loss_col not in frame.columns:
        raise ValueError(f"backtest needs a {loss_col!r} column; columns: {frame.columns}")
    data: dict[str, np.ndarray] = {}
    for name, dtype in frame.schema.items():
        if name == loss_col or name in exclude:
            continue
        if dtype.is_numeric():
            data[name] = frame[name].cast(pl.Float64).to_numpy()
        elif name in cols:
            data[name] = frame[name].to_numpy()
    return data


def _take(data: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[mask] for k, v in data.items()}


def _min_fit(law: Any) -> int:
    return len(tuple(law.param_names)) + 1


def _run(
    law: Any, frame: pl.DataFrame, fit_mask: np.ndarray, split: str, loss_col: str, flops: np.ndarray | None,
    exclude: tuple[str, ...], fit_kwargs: dict[str, Any], **extra: Any,
) -> BacktestResult:
    from scaler.fitting.fitter import estimate  # lazy: the fitter pulls in JAX

    data = _law_data(law, frame, loss_col, exclude)
    loss = frame[loss_col].cast(pl.Float64).to_numpy()
    hold = ~fit_mask
    n_fit, n_hold = int(fit_mask.sum()), int(hold.sum())
    need = _min_fit(law)
    if n_fit < need:
        raise ValueError(
            f"backtest {split}: {n_fit} points on the fit side; law {law.name!r} has "
            f"{need - 1} parameters and needs at least {need}"
        )
    if n_hold == 0:
        raise ValueError(f"backtest {split}: no points held out (all {n_fit} on the fit side)")
    res = estimate(law, _take(data, fit_mask), loss[fit_mask], **fit_kwargs)
    held = _take(data, hold)
    if hasattr(law, "predict"):
        pred = np.asarray(law.predict(np.asarray(res.theta), held), dtype=float)
    else:
        pred = np.exp(np.asarray(law.predict_log(np.asarray(res.theta), held), dtype=float))
    obs = loss[hold]
    rel = (pred - obs) / obs
    idx = np.flatnonzero(hold)
    run_ids = frame["run_id"].cast(pl.Utf8).to_numpy()[idx] if "run_id" in frame.columns else [None] * n_hold
    fl = flops[idx] if flops is not None else [None] * n_hold
    cols = [c for c in getattr(law, "columns", ()) if c in held and np.issubdtype(held[c].dtype, np.number)]
    rows = [
        HeldOutRow(int(i), None if r is None else str(r), None if f is None else float(f), float(o), float(p),
                   float(e), {c: float(held[c][k]) for c in cols})
        for k, (i, r, f, o, p, e) in enumerate(zip(idx, run_ids, fl, obs, pred, rel, strict=True))
    ]
    params = getattr(res, "params", None) or dict(zip(law.param_names, np.asarray(res.theta).tolist(), strict=False))
    return BacktestResult(
        law=law.name, split=split, n_fit=n_fit, n_heldout=n_hold,
        mean_abs_rel_error=float(np.mean(np.abs(rel))), max_abs_rel_error=float(np.max(np.abs(rel))),
        bias=float(np.mean(rel)), params={str(k): float(v) for k, v in dict(params).items()},
        objective=None if getattr(res, "objective", None) is None else float(res.objective),
        converged=None if getattr(res, "converged", None) is None else bool(res.converged),
        rows=rows, **extra,
    )


def backtest(
    law: Any,
    frame: pl.DataFrame,
    cut_flops: float | None = None,
    cut_quantile: float = 0.75,
    *,
    loss_col: str = "loss",
    flops_col: str = "flops",
    **fit_kwargs: Any,
) -> BacktestResult:
    """Fit `law` on the rows with flops <= cut, predict the rows above it.

    The cut defaults to the `cut_quantile` quantile of the rows' flops. `fit_kwargs` go to
    `scaler.fitting.fitter.estimate` (delta, starts, ...). Raises ValueError when the fit side has fewer
    than (number of parameters + 1) points or nothing is held out.
    """
    flops = _flops(frame, flops_col)
    if not np.all(np.isfinite(flops)):
        raise ValueError("backtest: flops must be finite in every row")
    if cut_flops is None:
        if not 0.0 < cut_quantile < 1.0:
            raise ValueError(f"cut_quantile must be in (0, 1), not {cut_quantile}")
        cut_flops = float(np.quantile(flops, cut_quantile))
    fit_mask = flops <= cut_flops
    return _run(law, frame, fit_mask, f"flops <= {cut_flops:.3g}", loss_col, flops, (), fit_kwargs,
                cut_flops=float(cut_flops))


def leave_one_group_out(
    law: Any,
    frame: pl.DataFrame,
    group_col: str,
    *,
    loss_col: str = "loss",
    flops_col: str = "flops",
    **fit_kwargs: Any,
) -> list[BacktestResult]:
    """For each value g of `group_col`: fit on the rows with group != g, predict the rows of g.

    One result per group, in sorted order of the group values. A group whose complement is too
    small to fit is reported with `error` set (and NaN errors), not dropped. The group column
    itself is not handed to the law unless the law lists it among its columns.
    """
    if group_col not in frame.columns:
        raise ValueError(f"no column {group_col!r}; columns: {frame.columns}")
    try:
        flops = _flops(frame, flops_col)
    except ValueError:
        flops = None
    labels = frame[group_col].to_numpy()
    values = sorted(set(labels.tolist()), key=lambda v: (str(type(v)), v))
    exclude = () if group_col in tuple(getattr(law, "columns", ())) else (group_col,)
    out = []
    for g in values:
        fit_mask = labels != g
        split = f"{group_col} != {g}"
        try:
            out.append(_run(law, frame, fit_mask, split, loss_col, flops, exclude, fit_kwargs,
                            group_col=group_col, group=g))
        except ValueError as err:
            nan = float("nan")
            out.append(BacktestResult(
                law=law.name, split=split, n_fit=int(fit_mask.sum()), n_heldout=int((~fit_mask).sum()),
                mean_abs_rel_error=nan, max_abs_rel_error=nan, bias=nan, group_col=group_col, group=g,
                error=str(err),
            ))
    return out


ORDER_BINS_PER_DECADE = 4  # compute bins of the order-stability check


def order_stability(flops: np.ndarray, loss: np.ndarray, groups: np.ndarray) -> dict[str, Any] | None:
    """Since which compute has the groups' observed order been the order of the largest runs?

    DataDecide's question (Magnusson et al. 2025): would small runs have ranked the data the way
    large ones do? Runs fall into compute bins (ORDER_BINS_PER_DECADE a decade); in every bin
    that all groups reach, each group's best (lowest) loss ranks them. `stable_from_flops` is the
    smallest compute from which every bin up to the largest gives the largest bin's order, and
    `ratio` the largest bin's compute over it: the order was already visible at 1/ratio of the
    largest runs' compute. None when fewer than two bins hold every group."""
    labels = sorted(set(groups.tolist()))
    if len(labels) < 2:
        return None
    index = np.floor(np.log10(flops) * ORDER_BINS_PER_DECADE).astype(int)
    bins = []
    for b in np.unique(index):
        inside = index == b
        if all(np.any(inside & (groups == g)) for g in labels):
            best = [float(np.min(loss[inside & (groups == g)])) for g in labels]
            bins.append((float(np.min(flops[inside])), float(np.max(flops[inside])),
                         [labels[i] for i in np.argsort(best, kind="stable")]))
    if len(bins) < 2:
        return None
    final = bins[-1][2]
    first = len(bins) - 1
    while first > 0 and bins[first - 1][2] == final:
        first -= 1
    return {"order": final, "stable_from_flops": bins[first][0], "largest_flops": bins[-1][1],
            "ratio": bins[-1][1] / bins[first][0], "bins": len(bins), "bins_agreeing": len(bins) - first,
            "changed_below": bins[first - 1][1] if first > 0 else None}
