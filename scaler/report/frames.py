"""Report frames: what the figures and tables draw, computed from loaded inputs; no matplotlib.

A store's runs (`runs_table`) or a fit JSON's fitted rows (`runs_from_fit`) become one runs frame
(run_id, group, N, D, C, loss, seed, cluster, ...). A fit dict (a sweep fit or one law's entry,
read through `scaler.fitting.result.SweepFit.sweep_json`) becomes `LawView`s (`law_views`): the law
rebuilt with its theta, bootstrap samples, compute convention and the columns held fixed. From
those come predictions with 95% intervals (`predict_runs`), allocations under the fit's own
convention (`allocation_curve`), the interval check of the error model (`interval_check`),
IsoFLOP parabolas, iso-loss surfaces, frontiers and the data build's tallies, as arrays and polars
frames that `scaler.report.figures` draws and `scaler.report.sections` tabulates.
Details: docs/design.md §5.9 (the report).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from scaler.config import mix_label
from scaler.fitting import laws
from scaler.fitting.compute import SIX_ND, Compute, allocate, law_columns_fixed
from scaler.fitting.isoflop import group_budgets
from scaler.fitting.predict import ErrorModel, FittedRange, predict_points, sample_array
from scaler.fitting.result import LawFit, PredictError, SweepFit
from scaler.fitting.stats import percentile_interval

__all__ = [
    "RUN_SCHEMA", "runs_table", "runs_from_fit", "succeeded", "flops_label", "order", "LawView", "law_views",
    "group_names", "fitted_entries", "no_law_reason", "predict_runs", "backtest_of", "heldout_rows",
    "heldout_losses", "interval_check", "error_model_panels", "envelope", "allocation_curve", "compute_span",
    "next_point", "twenty_tokens", "loss_surface", "parabola_minima", "fitted_minimum", "isoflop_points",
    "loss_frontier", "quality_multipliers", "curve_frame", "tokenizer_tiers", "tier_sizes", "removals",
]

BAND_SAMPLES = 200  # bootstrap samples used for a band (a deterministic subset of the saved ones)


# --------------------------------------------------------------------------------------------
# runs


RUN_SCHEMA = {"run_id": pl.String, "group": pl.String, "N": pl.Float64, "D": pl.Float64, "C": pl.Float64,
              "loss": pl.Float64, "seed": pl.Int64, "cluster": pl.String}


def _empty_runs() -> pl.DataFrame:
    return pl.DataFrame(schema=RUN_SCHEMA)


def runs_table(runs: pl.DataFrame, eval_set: str = "heldout", compute: Compute | None = None) -> pl.DataFrame:
    """A store's finished runs as run_id, group, N, D, C, loss, seed, cluster (and U where the
    store records unique tokens), labelled as scaler.fitting.inputs labels them.

    `group` is the data option the fit is grouped by: "<tier>" for a pure mix, else
    "tier:weight+..." (the same strings as fit.json's group labels). C is the runs' recorded
    FLOPs (flops_v1); a store without them gets `compute.flops(N, D)` (6ND without a compute)."""
    if runs.is_empty() or "state" not in runs.columns:
        return _empty_runs()
    runs = runs.filter(pl.col("state") == "done")
    if runs.is_empty():
        return _empty_runs()
    loss_col = f"final_eval_{eval_set}_loss"
    tiers = sorted(c.removeprefix("data_mix_") for c in runs.columns if c.startswith("data_mix_"))
    weights = {t: runs[f"data_mix_{t}"].fill_null(0.0).cast(pl.Float64).to_list() for t in tiers}
    labels = [mix_label({t: weights[t][i] for t in tiers}) for i in range(runs.height)]

    def col(name: str) -> pl.Series:
        if name in runs.columns:
            return runs[name].cast(pl.Float64)
        return pl.Series(name, [None] * runs.height, dtype=pl.Float64)

    n, d = col("n_params"), col("train_tokens")
    c = col("flops")
    if c.null_count() == len(c):
        c = pl.Series("flops", (compute or Compute(SIX_ND)).flops(n.to_numpy(), d.to_numpy()))
    seed = runs["train_seed"].cast(pl.Int64) if "train_seed" in runs.columns else pl.Series([0] * runs.height)
    frame = pl.DataFrame({
        "run_id": runs["run_id"].cast(pl.String), "group": labels, "N": n, "D": d, "C": c, "loss": col(loss_col),
        "seed": seed, "cluster": pl.Series([None] * runs.height, dtype=pl.String),
    }, schema=RUN_SCHEMA)
    if "unique_tokens" in runs.columns:
        frame = frame.with_columns(U=col("unique_tokens"))
    return frame


def runs_from_fit(fit_json: Mapping[str, Any] | None) -> pl.DataFrame:
    """The fitted runs a fit JSON carries in its top-level "data" (columns N, D, C, loss and,
    where present, group, run_id, cluster, U, w_<tier>, U_<tier>), as a runs frame. Rows without
    a group are labelled "all" (the label fit_sweep gives them). Empty when there is no data."""
    data = (fit_json or {}).get("data")
    if not isinstance(data, Mapping) or not data.get("loss") or "N" not in data or "D" not in data:
        return _empty_runs()
    k = len(data["loss"])

    def num(name: str) -> np.ndarray:
        return np.array([np.nan if v is None else float(v) for v in data[name]], dtype=np.float64)

    n, d = num("N"), num("D")
    c = num("C") if "C" in data else (SweepFit(fit_json or {}).compute() or Compute(SIX_ND)).flops(n, d)
    text = lambda name, default: [str(v) for v in data[name]] if name in data else [default] * k  # noqa: E731
    frame = pl.DataFrame({
        "run_id": pl.Series(text("run_id", None), dtype=pl.String), "group": text("group", "all"),
        "N": n, "D": d, "C": c, "loss": num("loss"), "seed": pl.Series([None] * k, dtype=pl.Int64),
        "cluster": pl.Series(text("cluster", None), dtype=pl.String),
    }, schema=RUN_SCHEMA)
    extra = {name: num(name) for name in data
             if (name == "U" or name.startswith(("w_", "U_"))) and len(data[name]) == k}
    return frame.with_columns(**{name: pl.Series(name, v) for name, v in extra.items()}) if extra else frame


# --------------------------------------------------------------------------------------------
# the fit


def succeeded(entry: Any) -> bool:
    """An entry that holds a result, not {"error": ...}."""
    return isinstance(entry, Mapping) and not entry.get("error")


def flops_label(compute: Compute | str | None) -> str:
    """"FLOPs (<convention>)", the unit beside every FLOP figure; plain "FLOPs" when unknown."""
    if compute is None:
        return "FLOPs"
    return compute.label if isinstance(compute, Compute) else f"FLOPs ({compute})"


def order(names: Sequence[str]) -> list[str]:
    """Group labels in report order: "raw" first, then by name."""
    return sorted(names, key=lambda t: (t != "raw", t))


@dataclass
class LawView:
    """One fitted law as the figures draw it: for the runs of `group` (None: all runs), with the
    columns other than N and D held at `fixed` (the tier's one-hot weights; no repetition) for
    allocations and contours (`fixed` None: the law is not a law in N and D)."""

    label: str
    entry: Mapping[str, Any]
    law: laws.Law
    theta: np.ndarray
    samples: np.ndarray  # (S, P) bootstrap samples, possibly none
    compute: Compute
    fixed: dict[str, float] | None
    group: str | None

    @property
    def band_samples(self) -> np.ndarray:
        s = self.samples
        if len(s) > BAND_SAMPLES:
            s = s[np.linspace(0, len(s) - 1, BAND_SAMPLES).astype(int)]
        return s

    def fitted_range(self, runs: pl.DataFrame | None = None) -> FittedRange:
        raw = self.entry.get("fitted_range")
        if raw:
            return FittedRange(**{k: float(v) for k, v in raw.items()})
        part = self.runs(runs) if runs is not None else _empty_runs()
        if part.height:
            return FittedRange(float(part["N"].max()), float(part["D"].max()), float(part["C"].max()),
                               float(part["C"].min()))
        return FittedRange(math.inf, math.inf, float(self.entry.get("largest_run_flops") or math.inf))

    def error_model(self) -> ErrorModel | None:
        raw = self.entry.get("error_model")
        try:
            return ErrorModel.from_json(raw) if raw else None
        except (KeyError, TypeError, ValueError):
            return None

    def runs(self, runs: pl.DataFrame) -> pl.DataFrame:
        part = runs if self.group is None else runs.filter(pl.col("group") == self.group)
        return part.drop_nulls(["N", "D", "C", "loss"])


def law_views(fit_json: Mapping[str, Any] | None) -> list[LawView]:
    """Every fitted law a figure can draw: per group its parametric law (a law over tiers, fitted
    once for all runs, gives one view per tier). Entries that failed or cannot be rebuilt are left out."""
    sweep = SweepFit(fit_json or {}).sweep_json()
    groups = sweep.get("groups") or {}
    single = bool(sweep.get("single_law"))
    views: list[LawView] = []
    for g in order(list(groups)):
        par = groups[g].get("parametric") if isinstance(groups[g], Mapping) else None
        if not succeeded(par):
            continue
        try:
            fitted = LawFit.from_json(par)
        except PredictError:
            continue
        law, theta = fitted.law, fitted.theta
        try:
            compute = Compute.from_json(par.get("compute") or sweep.get("compute"))
        except (TypeError, ValueError):
            compute = Compute(SIX_ND)
        samples = sample_array(par.get("bootstrap_theta"), law.n_params)
        base = law_columns_fixed(law)
        tiers = [c.removeprefix("w_") for c in law.columns if c.startswith("w_")]
        if not tiers:
            views.append(LawView(g, par, law, theta, samples, compute, base, None if single else g))
            continue
        for t in (tiers if single else [g] if g in tiers else []):
            fixed = None if base is None else {**base, **{f"w_{u}": float(u == t) for u in tiers}}
            views.append(LawView(t, par, law, theta, samples, compute, fixed, t))
    return views


def group_names(runs: pl.DataFrame, fit_json: Mapping[str, Any] | None = None) -> list[str]:
    """Every group of the runs and of the fit (its groups and its laws' labels), in report order."""
    names = set(runs["group"].drop_nulls().unique().to_list()) if runs.height else set()
    if fit_json:
        names |= set((fit_json.get("groups") or {}).keys())
        names |= {v.label for v in law_views(fit_json)}
    return order(list(names))


def fitted_entries(sweep: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(group label, parametric entry) of every group whose parametric fit succeeded, in report order."""
    groups = sweep.get("groups") or {}
    return [(g, groups[g]["parametric"]) for g in order(list(groups)) if succeeded(groups[g].get("parametric"))]


def no_law_reason(sweep: Mapping[str, Any], what: str, in_n_and_d: bool = True) -> str:
    """Why no fitted law can be drawn: no fit, every fit failed, a law that cannot be rebuilt, or
    (for allocations and contours) a law that is not a law in N and D."""
    groups = sweep.get("groups") or {}
    entries = [e.get("parametric") for e in groups.values() if isinstance(e, Mapping)]
    if not groups:
        return f"no fit was given: no {what}"
    if not any(succeeded(e) for e in entries):
        return f"every parametric fit failed: no {what}"
    if not law_views(sweep):
        spec = next(e for e in entries if succeeded(e)).get("spec")
        return f"the fitted law cannot be rebuilt here (law spec {spec}): no {what}"
    return f"no fitted law in N and D: no {what}" if in_n_and_d else f"no {what}"


# --------------------------------------------------------------------------------------------
# predictions and their intervals


def predict_runs(view: LawView, runs: pl.DataFrame) -> dict[str, np.ndarray] | None:
    """The view's prediction for each of its runs with the 95% prediction interval
    (`scaler.fitting.predict.predict_points`: bootstrap + run scatter + misspecification):
    {"N", "D", "C", "observed", "predicted", "lo", "hi", "distance", "group"}. None when the runs
    lack a column the law needs (e.g. the unique tokens U of the data-constrained law)."""
    part = view.runs(runs)
    if part.height == 0:
        return None
    points: dict[str, np.ndarray] = {"N": part["N"].to_numpy(), "D": part["D"].to_numpy()}
    for c in view.law.columns:
        if c in points:
            continue
        if c in part.columns and part[c].null_count() == 0:
            points[c] = part[c].cast(pl.Float64).to_numpy()
        elif c.startswith("w_") and view.fixed is not None and c in view.fixed:
            points[c] = np.full(part.height, view.fixed[c])
        else:
            return None
    rows = predict_points(view.law, view.theta, view.samples, points, view.compute, view.fitted_range(runs),
                          view.error_model())
    return {"N": points["N"], "D": points["D"], "C": part["C"].to_numpy(), "observed": part["loss"].to_numpy(),
            "predicted": np.array([r["loss"] for r in rows]), "lo": np.array([r["interval"][0] for r in rows]),
            "hi": np.array([r["interval"][1] for r in rows]), "distance": np.array([r["distance"] for r in rows]),
            "group": np.asarray(part["group"].to_list())}


def backtest_of(sweep: Mapping[str, Any], label: str) -> Mapping[str, Any] | None:
    """The backtest of group `label` when it succeeded and has rows; else None."""
    bt = ((sweep.get("groups") or {}).get(label) or {}).get("backtest")
    return bt if succeeded(bt) and bt.get("rows") else None


def heldout_rows(backtest: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A backtest's held-out rows that have both an observed and a predicted loss."""
    return [r for r in backtest["rows"] if r.get("observed") and r.get("predicted")]


def heldout_losses(backtest: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(observed loss, predicted loss, FLOPs) of a backtest's held-out runs (FLOPs NaN when unknown)."""
    rows = heldout_rows(backtest)
    obs = np.array([r["observed"] for r in rows], dtype=float)
    pr = np.array([r["predicted"] for r in rows], dtype=float)
    fl = np.array([r.get("flops") or np.nan for r in rows], dtype=float)
    return obs, pr, fl


def _model_residuals(model: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """Pooled rolling-backtest residuals of an error model: (reach, (pred - obs) / obs), residual =
    log L_obs - log L_pred."""
    if not model.get("residuals"):
        return None
    try:
        em = ErrorModel.from_json(model)
        r = np.asarray(em.residuals["residual"], float)
        return em.residual_reach(), np.expm1(-r)
    except (KeyError, TypeError, ValueError):
        return None


def interval_check(view: LawView | Sequence[LawView], fit_json: Mapping[str, Any] | None,
                   runs: pl.DataFrame) -> dict[str, Any]:
    """What says whether a law's prediction intervals hold: its error model, the fitted runs'
    in-sample relative errors at their distance, the held-out runs of the group's backtest (fit
    on the runs at or below a compute cut; their distance against that fit side's largest N, D,
    C), the pooled rolling-backtest residuals when the error model stores them, and the rolling
    cuts' summaries. Relative errors are (predicted - observed) / observed; "inside" / "total"
    count the held-out points within the error model's 95% envelope at their reach. Several views of one
    entry (a law over tiers) are checked together."""
    sweep = SweepFit(fit_json or {}).sweep_json()
    views = [view] if isinstance(view, LawView) else list(view)
    view = views[0]
    model = view.error_model()
    raw_model = view.entry.get("error_model") or {}
    out: dict[str, Any] = {"model": model, "cuts": list(raw_model.get("backtests") or []), "inside": 0, "total": 0}
    preds = [p for p in (predict_runs(v, runs) for v in views) if p is not None]
    if preds:
        out["in_sample"] = (np.concatenate([np.zeros(len(p["distance"])) for p in preds]),  # inside: reach 0
                            np.concatenate([p["predicted"] / p["observed"] - 1.0 for p in preds]))
    heldout_x: list[np.ndarray] = []
    heldout_e: list[np.ndarray] = []
    bt = backtest_of(sweep, view.label)
    part = view.runs(runs)
    if len(views) == 1 and bt is not None and bt.get("cut_flops") and part.height:
        side = part.filter(pl.col("C") <= float(bt["cut_flops"]))  # the backtest's own split (flops <= cut)
        if side.height:
            rng = FittedRange(float(side["N"].max()), float(side["D"].max()), float(side["C"].max()),
                              float(side["C"].min()), float(side["N"].min()), float(side["D"].min()))
            rows = heldout_rows(bt)
            pts = [r.get("point") or {} for r in rows]
            n = np.array([p.get("N", 0.0) for p in pts], float)
            d = np.array([p.get("D", 0.0) for p in pts], float)
            c = np.array([r.get("flops") or 0.0 for r in rows], float)
            if rows:
                heldout_x.append(rng.reach(n, d, c))
                heldout_e.append(np.array([r["predicted"] / r["observed"] - 1.0 for r in rows]))
    if heldout_x:
        out["heldout"] = (np.concatenate(heldout_x), np.concatenate(heldout_e))
    pooled = _model_residuals(raw_model)
    if pooled is not None:
        out["pooled"] = pooled
    if model is not None:
        for key in ("heldout", "pooled"):
            if key in out:
                x, e = out[key]
                inside = np.abs(np.log1p(e)) <= model.half_width(0.0, x) + 1e-12
                out["inside"] += int(inside.sum())
                out["total"] += len(x)
    return out


def error_model_panels(views: Sequence[LawView]) -> list[list[LawView]]:
    """The views that carry an error model, grouped by their fit entry (a law over tiers: one)."""
    by_entry: dict[int, list[LawView]] = {}
    for v in views:
        if v.entry.get("error_model"):
            by_entry.setdefault(id(v.entry), []).append(v)
    return list(by_entry.values())


def envelope(model: ErrorModel, x_max: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reach, lower, upper): the error model's 95% envelope of (pred - obs) / obs in percent,
    exp(+-half_width) - 1, from reach 0 to 1.2 `x_max`."""
    xs = np.linspace(0.0, x_max * 1.2, 80)
    half = model.half_width(0.0, xs)
    return xs, 100 * np.expm1(-half), 100 * np.expm1(half)


# --------------------------------------------------------------------------------------------
# allocations, IsoFLOP profiles and frontiers


def allocation_curve(view: LawView, flops: Sequence[float], bands: bool = True) -> dict[str, np.ndarray] | None:
    """N_opt(C), D_opt(C) and the loss there, by `scaler.fitting.compute.allocate` under the view's
    convention at every budget in `flops`, with 95% bands over (a subset of) the bootstrap
    samples when `bands` and there are samples ("n_lo", "n_hi", "d_lo", "d_hi"). None when the
    law is not a law in N and D."""
    if view.fixed is None:
        return None
    cs = np.asarray(flops, dtype=np.float64)
    out: dict[str, Any] = {"flops": cs, "n": np.empty(len(cs)), "d": np.empty(len(cs)), "loss": np.empty(len(cs))}
    samples = view.band_samples if bands else np.zeros((0, view.law.n_params))
    if len(samples):
        for k in ("n_lo", "n_hi", "d_lo", "d_hi"):
            out[k] = np.full(len(cs), np.nan)
    for i, c in enumerate(cs):
        point = allocate(view.law, view.theta, float(c), view.compute, view.fixed)
        if point is None:
            return None
        out["n"][i], out["d"][i], out["loss"][i] = point[0][0], point[1][0], point[2][0]
        if len(samples):
            n_s, d_s, _ = allocate(view.law, samples, float(c), view.compute, view.fixed)  # type: ignore[misc]
            out["n_lo"][i], out["n_hi"][i] = percentile_interval(n_s)
            out["d_lo"][i], out["d_hi"][i] = percentile_interval(d_s)
    return out


def compute_span(views: Sequence[LawView], runs: pl.DataFrame, extra: Sequence[float | None] = ()
                 ) -> tuple[float, float, float]:
    """(smallest run compute, largest run compute, largest compute to draw: the allocations'
    budgets and `extra` included)."""
    c = runs["C"].drop_nulls().to_numpy() if runs.height else np.array([])
    c = c[np.isfinite(c) & (c > 0)]
    if c.size:
        lo, hi = float(c.min()), float(c.max())
    else:
        ranges = [v.fitted_range() for v in views]
        his = [r.flops_max for r in ranges if math.isfinite(r.flops_max)]
        los = [r.flops_min for r in ranges if r.flops_min > 0]
        hi = max(his) if his else 1e17
        lo = min(los) if los else hi / 100
    tops = [float(a["flops"]) for v in views for a in v.entry.get("allocations") or [] if a.get("flops")]
    top = max([hi, *tops, *(float(x) for x in extra if x)])
    return lo, hi, top


def next_point(next_run: Mapping[str, Any] | None, view: LawView) -> tuple[float, float, float] | None:
    """(N, D, C) of the proposed next run under the view's convention; None when not given or for
    another group than the view's."""
    if not next_run or next_run.get("n") is None:
        return None
    if next_run.get("group") is not None and view.group is not None and str(next_run["group"]) != view.group:
        return None
    n = float(next_run["n"])
    d = next_run.get("d")
    c = next_run.get("flops")
    if d is None and c is None:
        return None
    d = float(d) if d is not None else float(view.compute.tokens(n, float(c)))
    c = float(c) if c is not None else float(view.compute.flops(n, d))
    return n, d, c


def twenty_tokens(compute: Compute, cs: np.ndarray) -> np.ndarray:
    """N with D = 20 N spending each budget in `cs` under `compute` (Chinchilla's rule of thumb)."""
    ns = np.geomspace(1.0, 1e16, 4000)
    f = compute.flops(ns, 20.0 * ns)
    return np.exp(np.interp(np.log(cs), np.log(f), np.log(ns)))


def loss_surface(view: LawView, front: Mapping[str, np.ndarray], run_n: Sequence[float],
                 next_n: float | None = None) -> dict[str, Any]:
    """The view's loss over (C, N) on log grids: C the frontier's budgets (`allocation_curve`), N
    spanning the runs' sizes `run_n`, the frontier and the next run's `next_n` (D = the tokens C
    buys at N; NaN where D < 1); "levels": up to 11 contours between the frontier's lowest loss
    and the grid's 80th percentile, None when that range is empty."""
    cs = front["flops"]
    n_all = [*run_n, *front["n"].tolist(), *([next_n] if next_n is not None else [])]
    ns = np.geomspace(max(min(n_all) / 4, 1.0), max(n_all) * 4, 60)
    cc, nn = np.meshgrid(cs, ns)
    dd = view.compute.tokens(nn, cc)
    fixed = view.fixed or {}
    cols = {"N": nn, "D": dd, **{k: np.full_like(nn, val) for k, val in fixed.items()}}
    loss = view.law.predict(view.theta, cols)
    loss = np.where((dd >= 1.0) & np.isfinite(loss), loss, np.nan)
    lo = float(np.nanmin(front["loss"]))
    hi = float(np.nanpercentile(loss, 80)) if np.isfinite(loss).any() else lo
    levels = np.unique(np.round(np.geomspace(lo * 1.002, hi, 11), 4)) if hi > lo else None
    return {"ns": ns, "cc": cc, "nn": nn, "loss": loss, "levels": levels}


def parabola_minima(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Per budget of one group's runs: the quadratic in log N (np.polyfit), its vertex, the points."""
    out: list[dict[str, Any]] = []
    if frame.height == 0:
        return out
    N, L, C = (frame[k].to_numpy().astype(float) for k in ("N", "loss", "C"))
    labels = group_budgets(C)
    for g in np.unique(labels):
        m = labels == g
        x, y = np.log(N[m]), L[m]
        entry: dict[str, Any] = {"budget": float(np.exp(np.log(C[m]).mean())), "N": N[m], "loss": y, "coef": None,
                                 "n_opt": None, "loss_opt": None}
        if np.unique(np.round(x, 9)).size >= 3:
            coef = np.polyfit(x, y, 2)
            entry["coef"] = coef
            if coef[0] > 0:
                xv = -coef[1] / (2 * coef[0])
                entry["n_opt"], entry["loss_opt"] = float(np.exp(xv)), float(np.polyval(coef, xv))
        out.append(entry)
    return out


def fitted_minimum(budgets: Sequence[Mapping[str, Any]], budget: float) -> Mapping[str, Any] | None:
    """The fit's IsoFLOP minimum at `budget` (within 5%) when it has N_opt and its loss; else None."""
    match = [b for b in budgets if b.get("budget") and abs(math.log(b["budget"] / budget)) < 0.05]
    if match and match[0].get("n_opt") and match[0].get("loss_opt") is not None:
        return match[0]
    return None


def isoflop_points(sweep: Mapping[str, Any], label: str, key: str) -> tuple[list, list, list[list]] | None:
    """The IsoFLOP minima of group `label` (budgets flagged "ok") for `key` ("n_opt" or "d_opt"):
    (budgets, values, [distances below, distances above] to their 95% intervals); None if none."""
    iso = ((sweep.get("groups") or {}).get(label) or {}).get("isoflop")
    if not succeeded(iso):
        return None
    bs = [b for b in iso.get("budgets") or [] if b.get("n_opt") and b.get("status") == "ok"]
    pts = [b for b in bs if b.get(key)]
    if not pts:
        return None
    ivs = [b.get(f"{key}_interval") or [b[key], b[key]] for b in pts]
    err = [[max(b[key] - (iv[0] if iv[0] is not None else b[key]), 0) for b, iv in zip(pts, ivs)],
           [max((iv[1] if iv[1] is not None else b[key]) - b[key], 0) for b, iv in zip(pts, ivs)]]
    return [b["budget"] for b in pts], [b[key] for b in pts], err


def loss_frontier(C: np.ndarray, L: np.ndarray) -> tuple[list[float], list[float]]:
    """(budget, best loss) per compute budget (`group_budgets`; the budget its geometric mean)."""
    labels = group_budgets(C)
    fc = [float(np.exp(np.log(C[labels == b]).mean())) for b in np.unique(labels)]
    fl = [float(L[labels == b].min()) for b in np.unique(labels)]
    return fc, fl


def quality_multipliers(sweep: Mapping[str, Any]) -> list[tuple[str, float, Any]]:
    """(tier, kappa_t, its 95% interval or None) of the quality law; empty without one."""
    q = sweep.get("quality")
    if not succeeded(q):
        return []
    derived, intervals = q.get("derived") or {}, q.get("intervals") or {}
    return [(k.removeprefix("kappa_"), v, intervals.get(k)) for k, v in derived.items()
            if k.startswith("kappa_") and v is not None]


# --------------------------------------------------------------------------------------------
# loss curves and the data build


def curve_frame(curves: pl.DataFrame, runs: pl.DataFrame, x: str, col: str) -> pl.DataFrame:
    """The loss curves (`x` against `col`, x > 0) of the finished runs, with each run's group and N."""
    data = curves.select("run_id", x, col).drop_nulls().filter(pl.col(x) > 0)
    return data.join(runs.select("run_id", "group", "N"), on="run_id", how="inner")


def tokenizer_tiers(report: Mapping[str, Any]) -> Mapping[str, Any]:
    """The per-tier token counts of a data build report's first tokenizer ({} without one)."""
    tok = next(iter((report.get("tokenizers") or {}).values()), {}) or {}
    return tok.get("tiers") or {}


def tier_sizes(report: Mapping[str, Any]) -> tuple[list[str], list[float], list[float]]:
    """(tiers, training tokens, byte yields) of a data build report."""
    tiers = report.get("tiers") or {}
    tok_tiers = tokenizer_tiers(report)
    names = list(tiers) or list(tok_tiers)
    sizes = [float((tok_tiers.get(t) or {}).get("tokens") or tiers.get(t, {}).get("bytes_train_tokens")
                   or tiers.get(t, {}).get("train_bytes") or 0) for t in names]
    yields = [float(tiers.get(t, {}).get("yield_bytes") or 0) for t in names]
    return names, sizes, yields


def removals(report: Mapping[str, Any]) -> tuple[list[str], list[tuple[str, np.ndarray]]]:
    """("tier/step" per build step, [(reason, documents removed per step)]); no reasons: empty."""
    steps = report.get("steps") or []
    reasons = sorted({r for s in steps for r in (s.get("removed") or {})})
    if not (steps and reasons):
        return [], []
    labels = [f"{s.get('tier', '?')}/{s.get('step', '?')}" for s in steps]
    counts = [(r, np.array([float(((s.get("removed") or {}).get(r) or {}).get("documents") or 0) for s in steps]))
              for r in reasons]
    return labels, counts
