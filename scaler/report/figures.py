"""Report figures: small functions that each write one compact PNG and return its path.

Every function takes frames/dicts that are already loaded (the runs frame of `runs_table` or
`runs_from_fit`, the curves of `scaler.store.load_curves`, a fit dict, a data-build report dict)
and an output path. Matplotlib runs on the Agg backend; nothing here imports JAX or the trainer,
so a report can be drawn on any machine that can read the store or the fit JSON.

A fit dict is either a sweep fit (`scaler.fit.pipeline.fit_sweep`: per-group entries under
"groups") or one law's entry (`scaler fit --table ... --out F.json`: "spec", "theta", ... at the
top); `scaler.fit.result.SweepFit.sweep_json` gives both the sweep's shape. `law_views` turns it into the fitted laws a figure
draws (`LawView`: the law rebuilt from its spec, theta, bootstrap samples, the fit's compute
convention and the columns held fixed). Laws are evaluated in NumPy. Allocations come from
`scaler.fit.compute.allocate` under the fit's own convention (never a closed form under 6ND),
predictions and their 95% intervals from `scaler.fit.predict.predict_points` (bootstrap, run
scatter and the misspecification that grows with extrapolation: the error model).

A figure whose inputs are missing raises `NotDrawn` with a one-line reason; the report prints it
in place of the figure.
"""

from __future__ import annotations

import math
import textwrap
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

from scaler.config import mix_label  # noqa: E402
from scaler.fit import laws  # noqa: E402
from scaler.fit.compute import SIX_ND, Compute, allocate, law_columns_fixed  # noqa: E402
from scaler.fit.isoflop import group_budgets  # noqa: E402
from scaler.fit.predict import ErrorModel, FittedRange, predict_points, sample_array  # noqa: E402
from scaler.fit.result import LawFit, PredictError, SweepFit  # noqa: E402
from scaler.fit.stats import percentile_interval  # noqa: E402

__all__ = [
    "DPI", "NotDrawn", "LawView", "runs_table", "runs_from_fit", "flops_label",
    "law_views", "group_budgets", "predict_runs", "allocation_curve",
    "interval_check", "parabola_minima",
    "loss_curves", "isoflop_curves", "allocation", "isoloss", "predicted_vs_observed", "calibration",
    "frontier_and_kappa", "data_report",
]

DPI = 110
LINESTYLES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3))]
TIER_COLOURS = plt.get_cmap("tab10").colors
BAND_SAMPLES = 200  # bootstrap samples used for a band (a deterministic subset of the saved ones)
MAX_PANELS = 4


class NotDrawn(Exception):
    """A figure that does not apply to what was given (no curves, no fit, no data report): the
    message is the one-line note the report prints instead."""


# --------------------------------------------------------------------------------------------
# runs


RUN_SCHEMA = {"run_id": pl.String, "group": pl.String, "N": pl.Float64, "D": pl.Float64, "C": pl.Float64,
              "loss": pl.Float64, "seed": pl.Int64, "cluster": pl.String}


def _empty_runs() -> pl.DataFrame:
    return pl.DataFrame(schema=RUN_SCHEMA)


def runs_table(runs: pl.DataFrame, eval_set: str = "heldout", compute: Compute | None = None) -> pl.DataFrame:
    """A store's finished runs as run_id, group, N, D, C, loss, seed, cluster (and U where the
    store records unique tokens), labelled as scaler.fit.data labels them.

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


def _ok(entry: Any) -> bool:
    return isinstance(entry, Mapping) and not entry.get("error")


def flops_label(compute: Compute | str | None) -> str:
    """"FLOPs (<convention>)", the unit beside every FLOP figure; plain "FLOPs" when unknown."""
    if compute is None:
        return "FLOPs"
    return compute.label if isinstance(compute, Compute) else f"FLOPs ({compute})"


def _c_axis(label: str) -> str:
    return f"training compute C, {label}"


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
        if not _ok(par):
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


def _no_law(sweep: Mapping[str, Any], what: str, in_n_and_d: bool = True) -> NotDrawn:
    """Why no fitted law can be drawn: no fit, every fit failed, a law that cannot be rebuilt, or
    (for allocations and contours) a law that is not a law in N and D."""
    groups = sweep.get("groups") or {}
    entries = [e.get("parametric") for e in groups.values() if isinstance(e, Mapping)]
    if not groups:
        return NotDrawn(f"no fit was given: no {what}")
    if not any(_ok(e) for e in entries):
        return NotDrawn(f"every parametric fit failed: no {what}")
    if not law_views(sweep):
        spec = next(e for e in entries if _ok(e)).get("spec")
        return NotDrawn(f"the fitted law cannot be rebuilt here (law spec {spec}): no {what}")
    return NotDrawn(f"no fitted law in N and D: no {what}" if in_n_and_d else f"no {what}")


def predict_runs(view: LawView, runs: pl.DataFrame) -> dict[str, np.ndarray] | None:
    """The view's prediction for each of its runs with the 95% prediction interval
    (`scaler.fit.predict.predict_points`: bootstrap + run scatter + misspecification):
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


def allocation_curve(view: LawView, flops: Sequence[float], bands: bool = True) -> dict[str, np.ndarray] | None:
    """N_opt(C), D_opt(C) and the loss there, by `scaler.fit.compute.allocate` under the view's
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
    bt = ((sweep.get("groups") or {}).get(view.label) or {}).get("backtest")
    part = view.runs(runs)
    if len(views) == 1 and _ok(bt) and bt.get("rows") and bt.get("cut_flops") and part.height:
        side = part.filter(pl.col("C") <= float(bt["cut_flops"]))  # the backtest's own split (flops <= cut)
        if side.height:
            rng = FittedRange(float(side["N"].max()), float(side["D"].max()), float(side["C"].max()),
                              float(side["C"].min()), float(side["N"].min()), float(side["D"].min()))
            rows = [r for r in bt["rows"] if r.get("observed") and r.get("predicted")]
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


# --------------------------------------------------------------------------------------------
# drawing helpers


def _fig(n_panels: int, width: float = 3.4, height: float = 2.9, sharey: bool = False):
    n_panels = max(1, n_panels)
    fig, axes = plt.subplots(1, n_panels, figsize=(min(width * n_panels, 11.0), height), sharey=sharey, squeeze=False)
    return fig, list(axes[0])


def _save(fig: Any, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    title = fig._suptitle  # a title wider than a one-panel figure is wrapped, not cut off
    if title is not None:
        title.set_text(textwrap.fill(title.get_text(), width=max(40, int(fig.get_figwidth() * 15))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a crowded legend: the layout is left as it is
        fig.tight_layout()
    fig.savefig(path, dpi=DPI, format="png")
    plt.close(fig)
    return path


def _legend(ax: Any, **kw: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def order(names: Sequence[str]) -> list[str]:
    """Group labels in report order: "raw" first, then by name."""
    return sorted(names, key=lambda t: (t != "raw", t))


def _groups(runs: pl.DataFrame, fit_json: Mapping[str, Any] | None = None) -> list[str]:
    names = set(runs["group"].drop_nulls().unique().to_list()) if runs.height else set()
    if fit_json:
        names |= set((fit_json.get("groups") or {}).keys())
        names |= {v.label for v in law_views(fit_json)}
    return order(list(names))


def _colour(groups: Sequence[str], g: str | None) -> Any:
    return TIER_COLOURS[list(groups).index(g) % len(TIER_COLOURS)] if g in groups else "0.3"


def _fmt_si(x: float) -> str:
    for unit, s in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= unit:
            return f"{x / unit:.3g}{s}"
    return f"{x:.3g}"


def _style(ax: Any, logx: bool = True, logy: bool = False) -> None:
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both", lw=0.4)
    ax.tick_params(labelsize=7)


def _compute_span(views: Sequence[LawView], runs: pl.DataFrame, extra: Sequence[float | None] = ()
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


def _next_point(next_run: Mapping[str, Any] | None, view: LawView) -> tuple[float, float, float] | None:
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


def _twenty_tokens(compute: Compute, cs: np.ndarray) -> np.ndarray:
    """N with D = 20 N spending each budget in `cs` under `compute` (Chinchilla's rule of thumb)."""
    ns = np.geomspace(1.0, 1e16, 4000)
    f = compute.flops(ns, 20.0 * ns)
    return np.exp(np.interp(np.log(cs), np.log(f), np.log(ns)))


# --------------------------------------------------------------------------------------------
# figures


def loss_curves(curves: pl.DataFrame, runs: pl.DataFrame, path: Path | str, x: str = "tokens",
                eval_set: str = "heldout", flops: str = "FLOPs") -> Path:
    """Held-out loss of every run against tokens (or FLOPs), log x; colour = size, style = tier."""
    col = f"eval_{eval_set}_loss"
    if curves.height == 0 or col not in curves.columns or x not in curves.columns:
        raise NotDrawn(f"no {col} curves (they are read from a store's runs)")
    data = curves.select("run_id", x, col).drop_nulls().filter(pl.col(x) > 0)
    data = data.join(runs.select("run_id", "group", "N"), on="run_id", how="inner")
    if data.height == 0:
        raise NotDrawn("no curves of finished runs")
    groups = _groups(runs)
    sizes = sorted(set(data["N"].to_list()))
    cmap = plt.get_cmap("viridis")
    lo, hi = math.log(sizes[0]), math.log(sizes[-1])

    def size_colour(n: float) -> Any:
        return cmap(0.9 * ((math.log(n) - lo) / (hi - lo) if hi > lo else 0.5))

    fig, (ax,) = _fig(1, 6.4, 3.4)
    for (_rid,), part in data.group_by(["run_id"], maintain_order=True):
        g, n = part["group"][0], part["N"][0]
        ax.plot(part[x].to_numpy(), part[col].to_numpy(), color=size_colour(n),
                ls=LINESTYLES[groups.index(g) % len(LINESTYLES)] if g in groups else "-", lw=0.9, alpha=0.85)
    ax.set_xscale("log")
    ax.set_xlabel(_c_axis(flops) if x == "flops" else "training tokens D")
    ax.set_ylabel(f"{eval_set} loss (nats)")
    y = data[col].to_numpy()
    ax.set_ylim(np.nanmin(y) * 0.98, min(np.nanpercentile(y, 97) * 1.05, np.nanmax(y)))
    handles = [Line2D([], [], color=size_colour(n), lw=2, label=f"N={_fmt_si(n)}") for n in sizes[:8]]
    handles += [Line2D([], [], color="k", lw=1, ls=LINESTYLES[i % len(LINESTYLES)], label=g) for i, g in enumerate(groups)]
    ax.legend(handles=handles, fontsize=7, ncol=1, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.grid(alpha=0.3, which="both", lw=0.4)
    ax.set_title("loss curves (colour: model size, line: data)", fontsize=9)
    return _save(fig, path)


def isoflop_curves(runs: pl.DataFrame, fit_json: Mapping[str, Any] | None, path: Path | str,
                   flops: str = "FLOPs") -> Path:
    """Per group: final loss against N at each budget, the fitted parabola in log N, its minimum
    (the fit's isoflop minimum, with its interval, where present; else the re-fitted vertex)."""
    sweep = SweepFit(fit_json or {}).sweep_json()
    groups = [g for g in _groups(runs) if runs.filter(pl.col("group") == g).height]
    if not groups:
        raise NotDrawn("no runs to draw")
    shown = groups[:MAX_PANELS]
    fig, axes = _fig(len(shown), 3.3, 2.9, sharey=True)
    cmap = plt.get_cmap("plasma")
    for ax, g in zip(axes, shown):
        part = runs.filter(pl.col("group") == g).drop_nulls(["N", "C", "loss"])
        fitted = (sweep.get("groups") or {}).get(g, {}).get("isoflop") or {}
        fitted_budgets = (fitted.get("budgets") or []) if _ok(fitted) else []
        minima = parabola_minima(part)
        for i, m in enumerate(minima):
            colour = cmap(0.85 * i / max(1, len(minima) - 1))
            ax.scatter(m["N"], m["loss"], s=12, color=colour, zorder=3, label=f"C={m['budget']:.1e}")
            if m["coef"] is not None:
                xs = np.linspace(np.log(m["N"].min()) - 0.2, np.log(m["N"].max()) + 0.2, 60)
                ax.plot(np.exp(xs), np.polyval(m["coef"], xs), color=colour, lw=0.9)
            match = [b for b in fitted_budgets if b.get("budget") and abs(math.log(b["budget"] / m["budget"])) < 0.05]
            if match and match[0].get("n_opt") and match[0].get("loss_opt") is not None:
                b = match[0]
                xerr = None
                if b.get("n_opt_interval") and None not in b["n_opt_interval"]:
                    lo_, hi_ = b["n_opt_interval"]
                    xerr = [[max(b["n_opt"] - lo_, 0)], [max(hi_ - b["n_opt"], 0)]]
                ax.errorbar([b["n_opt"]], [b["loss_opt"]], xerr=xerr, fmt="*", ms=8, color=colour, mec="k",
                            mew=0.5, zorder=4, capsize=2, lw=0.8)
            elif m["n_opt"] is not None:
                ax.plot([m["n_opt"]], [m["loss_opt"]], "*", ms=8, color=colour, mec="k", mew=0.5, zorder=4)
        _style(ax)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("parameters N")
        title = g
        if fitted.get("error"):
            title += " (isoflop fit failed)"
        elif fitted.get("flagged"):
            title += f" ({len(fitted['flagged'])} flagged)"
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel("final loss")
    _legend(axes[0], fontsize=6, frameon=False)
    more = f"; first {len(shown)} of {len(groups)} groups" if len(groups) > len(shown) else ""
    fig.suptitle(f"IsoFLOP profiles, C in {flops} (stars: minima with 95% intervals{more})", fontsize=9)
    return _save(fig, path)


def allocation(fit_json: Mapping[str, Any] | None, runs: pl.DataFrame, path: Path | str,
               target_flops: float | None = None) -> Path:
    """N_opt(C) and D_opt(C) per fitted law, under the fit's compute convention: the law's
    allocation (`allocate`, lines) with its 95% band over the bootstrap samples, the fit's own
    allocations at 1x/10x/100x the largest run with their intervals (diamonds), the IsoFLOP
    minima with intervals (circles), the fitted runs (dots) and Chinchilla's 20 tokens per
    parameter under the same convention (dashed)."""
    sweep = SweepFit(fit_json or {}).sweep_json()
    views = [v for v in law_views(sweep) if v.fixed is not None]
    if not views:
        raise _no_law(sweep, "allocation to draw")
    label = flops_label(views[0].compute)
    c_lo, c_hi, c_top = _compute_span(views, runs, [target_flops])
    cs = np.geomspace(c_lo / 2, c_top * 2, 28)
    names = _groups(runs, sweep)
    fig, (ax_n, ax_d) = _fig(2, 3.8, 3.2)
    drawn = 0
    for v in views:
        colour = _colour(names, v.label)
        part = v.runs(runs)
        if part.height:
            ax_n.scatter(part["C"].to_numpy(), part["N"].to_numpy(), s=7, color=colour, alpha=0.35, lw=0)
            ax_d.scatter(part["C"].to_numpy(), part["D"].to_numpy(), s=7, color=colour, alpha=0.35, lw=0)
        curve = allocation_curve(v, cs)
        if curve is None:
            continue
        drawn += 1
        ax_n.plot(cs, curve["n"], color=colour, lw=1.2, label=f"{v.label} ({v.law.name})")
        ax_d.plot(cs, curve["d"], color=colour, lw=1.2)
        if "n_lo" in curve:
            ax_n.fill_between(cs, curve["n_lo"], curve["n_hi"], color=colour, alpha=0.18, lw=0)
            ax_d.fill_between(cs, curve["d_lo"], curve["d_hi"], color=colour, alpha=0.18, lw=0)
        if v.group is not None or len(views) == 1:
            for a in v.entry.get("allocations") or []:
                for ax, key in ((ax_n, "n_opt"), (ax_d, "d_opt")):
                    iv = a.get(f"{key}_interval")
                    err = ([[max(a[key] - iv[0], 0)], [max(iv[1] - a[key], 0)]]
                           if iv and None not in iv else None)
                    ax.errorbar([a["flops"]], [a[key]], yerr=err, fmt="D", ms=3.5, color=colour, mec="k",
                                mew=0.4, capsize=2, lw=0.8, zorder=4)
        iso = ((sweep.get("groups") or {}).get(v.label) or {}).get("isoflop")
        if _ok(iso):
            bs = [b for b in iso.get("budgets") or [] if b.get("n_opt") and b.get("status") == "ok"]
            for ax, key in ((ax_n, "n_opt"), (ax_d, "d_opt")):
                pts = [b for b in bs if b.get(key)]
                if not pts:
                    continue
                ivs = [b.get(f"{key}_interval") or [b[key], b[key]] for b in pts]
                err = [[max(b[key] - (iv[0] if iv[0] is not None else b[key]), 0) for b, iv in zip(pts, ivs)],
                       [max((iv[1] if iv[1] is not None else b[key]) - b[key], 0) for b, iv in zip(pts, ivs)]]
                ax.errorbar([b["budget"] for b in pts], [b[key] for b in pts], yerr=err, fmt="o", ms=3.5,
                            mfc="white", color=colour, capsize=2, lw=0.8, zorder=3)
    if not drawn:
        plt.close(fig)
        raise NotDrawn("the fitted laws have no allocation here")
    n20 = _twenty_tokens(views[0].compute, cs)
    ax_n.plot(cs, n20, "k--", lw=0.7, label="20 tokens/param")
    ax_d.plot(cs, 20 * n20, "k--", lw=0.7)
    for ax, lab in ((ax_n, "N_opt (parameters)"), (ax_d, "D_opt (tokens)")):
        _style(ax, logy=True)
        ax.set_xlabel(_c_axis(label), fontsize=8)
        ax.set_ylabel(lab)
        ax.axvspan(c_lo, c_hi, color="0.85", alpha=0.5, lw=0)
        if target_flops:
            ax.axvline(target_flops, color="r", lw=0.8, ls=":")
    _legend(ax_n, fontsize=6, frameon=False)
    fig.suptitle("compute-optimal allocation (bands: 95% bootstrap; grey: fitted range; "
                 "diamonds: the fit's allocations; circles: IsoFLOP minima)", fontsize=8)
    return _save(fig, path)


def isoloss(fit_json: Mapping[str, Any] | None, runs: pl.DataFrame, path: Path | str,
            target_flops: float | None = None, next_run: Mapping[str, Any] | None = None) -> Path:
    """Per fitted law (up to MAX_PANELS), iso-loss contours of L over (C, N) on log-log axes
    (D = the tokens C buys at N under the fit's convention), the efficient frontier N_opt(C)
    with its 95% band, the fitted runs, and the proposed next run (a star) when given."""
    sweep = SweepFit(fit_json or {}).sweep_json()
    views = [v for v in law_views(sweep) if v.fixed is not None]
    if not views:
        raise _no_law(sweep, "iso-loss contours")
    shown = views[:MAX_PANELS]
    label = flops_label(shown[0].compute)
    fig, axes = _fig(len(shown), 3.6, 3.3)
    for ax, v in zip(axes, shown):
        nxt = _next_point(next_run, v)
        part = v.runs(runs)
        c_lo, c_hi, c_top = _compute_span([v], part, [target_flops, nxt[2] if nxt else None])
        cs = np.geomspace(c_lo / 3, c_top * 3, 60)
        front = allocation_curve(v, cs)
        if front is None:
            ax.axis("off")
            continue
        n_all = [*part["N"].to_list(), *front["n"].tolist(), *([nxt[0]] if nxt else [])]
        ns = np.geomspace(max(min(n_all) / 4, 1.0), max(n_all) * 4, 60)
        cc, nn = np.meshgrid(cs, ns)
        dd = v.compute.tokens(nn, cc)
        fixed = v.fixed or {}
        cols = {"N": nn, "D": dd, **{k: np.full_like(nn, val) for k, val in fixed.items()}}
        loss = v.law.predict(v.theta, cols)
        loss = np.where((dd >= 1.0) & np.isfinite(loss), loss, np.nan)
        lo = float(np.nanmin(front["loss"]))
        hi = float(np.nanpercentile(loss, 80)) if np.isfinite(loss).any() else lo
        if hi > lo:
            levels = np.unique(np.round(np.geomspace(lo * 1.002, hi, 11), 4))
            cont = ax.contour(cc, nn, loss, levels=levels, cmap="viridis", linewidths=0.7)
            ax.clabel(cont, fontsize=5, fmt="%.3g", inline=True)
        ax.plot(cs, front["n"], color="C3", lw=1.3, label="N_opt(C)")
        if "n_lo" in front:
            ax.fill_between(cs, front["n_lo"], front["n_hi"], color="C3", alpha=0.18, lw=0)
        if part.height:
            ax.scatter(part["C"].to_numpy(), part["N"].to_numpy(), s=9, color="k", lw=0, zorder=3, label="runs")
        if nxt:
            ax.plot([nxt[2]], [nxt[0]], "*", ms=11, color="gold", mec="k", mew=0.6, zorder=5, label="next run")
        if target_flops:
            ax.axvline(target_flops, color="r", lw=0.8, ls=":")
        ax.axvspan(c_lo, c_hi, color="0.85", alpha=0.4, lw=0)
        _style(ax, logy=True)
        ax.set_xlim(cs[0], cs[-1])
        ax.set_ylim(ns[0], ns[-1])
        ax.set_xlabel(_c_axis(label), fontsize=8)
        ax.set_title(f"{v.label} ({v.law.name})", fontsize=9)
    axes[0].set_ylabel("parameters N")
    _legend(axes[0], fontsize=6, frameon=False, loc="upper left")
    more = f"; first {len(shown)} of {len(views)} laws" if len(views) > len(shown) else ""
    fig.suptitle(f"iso-loss contours of the fitted law and the efficient frontier (band: 95% bootstrap{more})",
                 fontsize=8)
    return _save(fig, path)


def predicted_vs_observed(fit_json: Mapping[str, Any] | None, runs: pl.DataFrame, path: Path | str) -> Path:
    """Every fitted run: the law's predicted loss with its 95% prediction interval against the
    observed loss, per group (left), and the relative error (pred - obs) / obs against compute
    with the interval (right); the backtest's held-out runs, predicted by a fit on the smaller
    runs, as crosses."""
    sweep = SweepFit(fit_json or {}).sweep_json()
    views = law_views(sweep)
    if not views:
        raise _no_law(sweep, "prediction to compare", in_n_and_d=False)
    if runs.height == 0:
        raise NotDrawn("no runs to compare with: the store has no finished run and the fit carries no data")
    label = flops_label(views[0].compute)
    names = _groups(runs, sweep)
    fig, (ax, ax_r) = _fig(2, 3.7, 3.2)
    drawn, lo, hi = 0, np.inf, -np.inf
    for v in views:
        pred = predict_runs(v, runs)
        if pred is None:
            continue
        drawn += 1
        for g in order(list(set(pred["group"].tolist()))):
            m = pred["group"] == g
            colour = _colour(names, g if v.group is None else v.label)
            obs, p, l_, h_ = pred["observed"][m], pred["predicted"][m], pred["lo"][m], pred["hi"][m]
            tag = g if v.group is None and len(views) == 1 else v.label
            ax.errorbar(obs, p, yerr=[np.maximum(p - l_, 0), np.maximum(h_ - p, 0)], fmt="o", ms=3, color=colour,
                        lw=0.6, capsize=0, label=tag, zorder=3)
            rel = (p - obs) / obs * 100
            rel_err = [np.maximum(p - l_, 0) / obs * 100, np.maximum(h_ - p, 0) / obs * 100]
            ax_r.errorbar(pred["C"][m], rel, yerr=rel_err, fmt="o", ms=3, color=colour, lw=0.6, capsize=0, zorder=3)
            lo, hi = min(lo, obs.min(), p.min()), max(hi, obs.max(), p.max())
        bt = ((sweep.get("groups") or {}).get(v.label) or {}).get("backtest")
        if _ok(bt) and bt.get("rows"):
            colour = _colour(names, v.label)
            rows = [r for r in bt["rows"] if r.get("observed") and r.get("predicted")]
            obs = np.array([r["observed"] for r in rows], dtype=float)
            pr = np.array([r["predicted"] for r in rows], dtype=float)
            fl = np.array([r.get("flops") or np.nan for r in rows], dtype=float)
            ax.scatter(obs, pr, s=30, marker="x", color=colour, lw=1.0, zorder=4)
            ax_r.scatter(fl, (pr - obs) / obs * 100, s=30, marker="x", color=colour, lw=1.0, zorder=4)
    if not drawn:
        plt.close(fig)
        raise NotDrawn("no fitted law that can be evaluated at the runs (a column it needs is missing)")
    pad = 0.02 * (hi - lo)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k-", lw=0.6)
    ax.set_xlabel("observed loss")
    ax.set_ylabel("predicted loss [95% interval]")
    _legend(ax, fontsize=6, frameon=False, title="x: backtest held out", title_fontsize=6)
    ax_r.axhline(0, color="k", lw=0.6)
    ax_r.xaxis.set_minor_formatter(NullFormatter())
    ax_r.set_xlabel(_c_axis(label), fontsize=8)
    ax_r.set_ylabel("(pred - obs) / obs, %")
    _style(ax, logx=False)
    _style(ax_r)
    fig.suptitle("fitted law against every fitted run (bars: 95% prediction intervals)", fontsize=9)
    return _save(fig, path)


def calibration(fit_json: Mapping[str, Any] | None, runs: pl.DataFrame, path: Path | str) -> Path:
    """Per fitted law (up to MAX_PANELS): relative errors (pred - obs) / obs against the
    reach beyond the fitted runs (`FittedRange.reach`, in fitted spans), with the error model's 95%
    envelope exp(+-half_width) - 1: the fitted runs (dots, reach 0 inside the range), the
    backtest's held-out runs (crosses), the pooled rolling-backtest residuals when the fit stores
    them (small dots), and each rolling cut's bias +- mean |error| at its largest distance (bars)."""
    sweep = SweepFit(fit_json or {}).sweep_json()
    all_views = law_views(sweep)
    if not all_views:
        raise _no_law(sweep, "error model to check", in_n_and_d=False)
    by_entry: dict[int, list[LawView]] = {}
    for v in all_views:
        if v.entry.get("error_model"):
            by_entry.setdefault(id(v.entry), []).append(v)
    panels = list(by_entry.values())
    if not panels:
        raise NotDrawn("no error model in the fit (it was fitted without backtests, or by an older version)")
    shown = panels[:MAX_PANELS]
    names = _groups(runs, sweep)
    fig, axes = _fig(len(shown), 3.4, 3.1)
    for ax, group in zip(axes, shown):
        v = group[0]
        check = interval_check(group, sweep, runs)
        model: ErrorModel | None = check["model"]
        colour = _colour(names, v.label) if len(group) == 1 else "C0"
        title = v.label if len(group) == 1 else "all runs"
        x_max = 1.0
        if "in_sample" in check:
            x, e = check["in_sample"]
            ax.scatter(x, 100 * e, s=7, color="0.45", lw=0, alpha=0.6, zorder=3, label="fitted runs")
            x_max = max(x_max, float(np.nanmax(x)))
        if "pooled" in check:
            x, e = check["pooled"]
            ax.scatter(x, 100 * e, s=6, color=colour, alpha=0.45, lw=0, zorder=3, label="rolling backtests")
            x_max = max(x_max, float(np.nanmax(x)) if len(x) else x_max)
        for cut in check["cuts"]:
            if cut.get("max_reach") is not None and cut.get("bias_pct") is not None:
                ax.errorbar([cut["max_reach"]], [cut["bias_pct"]], yerr=[[cut.get("mean_abs_error_pct") or 0]] * 2,
                            fmt="s" if cut.get("axis") == "size" else "o", ms=3.5, mfc="white", color=colour,
                            capsize=2, lw=0.8, zorder=4)
                x_max = max(x_max, float(cut["max_reach"]))
        if "heldout" in check:
            x, e = check["heldout"]
            ax.scatter(x, 100 * e, s=28, marker="x", color=colour, lw=1.0, zorder=5, label="backtest held out")
            x_max = max(x_max, float(np.nanmax(x)))
        if model is not None:
            xs = np.linspace(0.0, x_max * 1.2, 80)
            half = model.half_width(0.0, xs)
            up, down = 100 * np.expm1(half), 100 * np.expm1(-half)
            ax.fill_between(xs, down, up, color=colour, alpha=0.12, lw=0)
            ax.plot(xs, up, color=colour, lw=0.8, ls="--")
            ax.plot(xs, down, color=colour, lw=0.8, ls="--", label="95% envelope")
            cal = f"conformal x{model.multiplier:.2f}" + ("" if model.calibrated else ", uncalibrated")
            held = f"; {check['inside']}/{check['total']} held out inside" if check["total"] else ""
            ax.set_title(f"{title} ({v.law.name}): {cal}{held}", fontsize=7.5)
        else:
            ax.set_title(f"{title} ({v.law.name})", fontsize=8)
        ax.axhline(0, color="k", lw=0.5)
        _style(ax, logx=False)
        ax.set_yscale("symlog", linthresh=1.0, linscale=1.0)  # small errors linear, the envelope's growth in log
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
        ax.set_xlim(-0.03 * x_max, x_max * 1.2)
        ax.set_xlabel("reach beyond the fitted runs (fitted spans; 0 = inside)", fontsize=7.5)
    axes[0].set_ylabel("(pred - obs) / obs, % (symlog)")
    _legend(axes[0], fontsize=6, frameon=False, loc="best")
    more = f"; first {len(shown)} of {len(panels)} laws" if len(panels) > len(shown) else ""
    fig.suptitle(f"do the prediction intervals hold? (bars: rolling backtest cuts, bias +- mean |error|{more})",
                 fontsize=8)
    return _save(fig, path)


def frontier_and_kappa(runs: pl.DataFrame, fit_json: Mapping[str, Any] | None, path: Path | str,
                       flops: str = "FLOPs") -> Path:
    """Left: loss against compute per group with each group's frontier (best loss per budget).
    Right: the quality law's effective-data multipliers kappa_t with 95% intervals."""
    sweep = SweepFit(fit_json or {}).sweep_json()
    if runs.height == 0 and not _ok(sweep.get("quality")):
        raise NotDrawn("no runs and no quality fit")
    fig, (ax, ax_k) = _fig(2, 3.6, 3.0)
    groups = _groups(runs, sweep)
    for g in groups:
        part = runs.filter(pl.col("group") == g).drop_nulls(["C", "loss"])
        if part.height == 0:
            continue
        colour = _colour(groups, g)
        C, L = part["C"].to_numpy().astype(float), part["loss"].to_numpy().astype(float)
        ax.scatter(C, L, s=8, color=colour, alpha=0.35, lw=0)
        labels = group_budgets(C)
        fc = [float(np.exp(np.log(C[labels == b]).mean())) for b in np.unique(labels)]
        fl = [float(L[labels == b].min()) for b in np.unique(labels)]
        ax.plot(fc, fl, "o-", color=colour, ms=3, lw=1.1, label=g)
    ax.set_xscale("log")
    ax.set_xlabel(_c_axis(flops), fontsize=8)
    ax.set_ylabel("final loss")
    ax.set_title("loss frontier per group", fontsize=9)
    _legend(ax, fontsize=6, frameon=False)
    q = sweep.get("quality")
    kappas = []
    if _ok(q):
        derived, intervals = q.get("derived") or {}, q.get("intervals") or {}
        kappas = [(k.removeprefix("kappa_"), v, intervals.get(k)) for k, v in derived.items()
                  if k.startswith("kappa_") and v is not None]
    if kappas:
        for i, (t, v, iv) in enumerate(kappas):
            colour = _colour(groups, t)
            err = [[max(v - iv[0], 0)], [max(iv[1] - v, 0)]] if iv and None not in iv else None
            ax_k.errorbar([i], [v], yerr=err, fmt="o", color=colour, capsize=3, ms=5)
        ax_k.axhline(1.0, color="k", lw=0.6, ls="--")
        ax_k.set_xticks(range(len(kappas)), [k[0] for k in kappas], fontsize=7)
        ax_k.set_xlim(-0.6, len(kappas) - 0.4)
        ax_k.set_ylabel("kappa (effective data per token)")
        ax_k.set_title("quality multipliers, 95% intervals", fontsize=9)
    else:
        ax_k.axis("off")
        why = q.get("error") if isinstance(q, Mapping) and q.get("error") else "no quality fit (one tier only)"
        ax_k.text(0.5, 0.5, f"quality law not shown:\n{why}"[:200], ha="center", va="center", fontsize=7, wrap=True)
    for a in (ax, ax_k):
        a.grid(alpha=0.3, lw=0.4, which="both")
        a.tick_params(labelsize=7)
    return _save(fig, path)


def crossover(recommendation: Mapping[str, Any] | None, path: Path | str, largest_run_flops: float | None = None,
              flops: str = "FLOPs") -> Path:
    """Left: each option's predicted best loss against the budget (its cleaning charged), with the
    95% band over the bootstrap samples. Right: the share of samples in which cleaning wins. Both
    on the recommendation's crossover grid, with the largest fitted run, the budget asked for and
    the crossover (if any) marked."""
    x = (recommendation or {}).get("crossover") or {}
    curves = x.get("curves")
    if not curves:
        raise NotDrawn("no crossover was computed (one data option only, or no recommendation)")
    budgets = np.asarray(curves["budgets"], float)
    names = order(list(curves["best"]))
    fig, (ax, ax_p) = _fig(2, 3.8, 3.0)
    for name in names:
        colour = _colour(names, name)
        best = np.asarray(curves["best"][name], float)
        ax.plot(budgets, best, color=colour, lw=1.2, label=name)
        band = curves["best_interval"].get(name)
        if band:  # None (JSON's infinity: a budget too small to train) draws nothing
            ax.fill_between(budgets, np.asarray(band[0], float), np.asarray(band[1], float), color=colour,
                            alpha=0.15, lw=0)
    p_cleaning = curves.get("p_cleaning")
    if p_cleaning is not None:
        ax_p.plot(budgets, np.asarray(p_cleaning, float), color="k", lw=1.2)
        ax_p.axhline(0.5, color="0.5", lw=0.6, ls="--")
        ax_p.set_ylim(-0.02, 1.02)
    else:
        ax_p.text(0.5, 0.5, "no bootstrap samples", ha="center", va="center", fontsize=7, transform=ax_p.transAxes)
    for a in (ax, ax_p):
        if largest_run_flops:
            a.axvspan(budgets[0], largest_run_flops, color="0.85", alpha=0.5, lw=0)
        a.axvline(recommendation["budget_flops"], color="r", ls=":", lw=1)
        if x.get("flops") is not None:
            a.axvline(x["flops"], color="k", ls="-.", lw=0.8)
        _style(a)
        a.set_xlabel(_c_axis(flops), fontsize=8)
    ax.set_ylabel("predicted best loss")
    ax.set_title("best loss per option, 95% band", fontsize=9)
    ax_p.set_ylabel("share of samples: cleaning wins")
    ax_p.set_title("probability that cleaning pays", fontsize=9)
    _legend(ax, fontsize=6, frameon=False)
    return _save(fig, path)


def data_report(report: Mapping[str, Any] | None, path: Path | str) -> Path:
    """Data build: tier sizes (training tokens), byte yields, documents removed per step and reason."""
    if not report:
        raise NotDrawn("no data build report was given")
    tiers = report.get("tiers") or {}
    tok_tiers: dict[str, Any] = {}
    for tok in (report.get("tokenizers") or {}).values():
        tok_tiers = tok.get("tiers") or {}
        break
    names = list(tiers) or list(tok_tiers)
    fig, (ax_s, ax_y, ax_r) = _fig(3, 3.4, 3.0)
    sizes = [float((tok_tiers.get(t) or {}).get("tokens") or tiers.get(t, {}).get("bytes_train_tokens")
                   or tiers.get(t, {}).get("train_bytes") or 0) for t in names]
    ax_s.bar(range(len(names)), [s / 1e6 for s in sizes], color=[_colour(names, t) for t in names])
    ax_s.set_xticks(range(len(names)), names, fontsize=7, rotation=30)
    ax_s.set_ylabel("training tokens (M)")
    ax_s.set_title("tier sizes", fontsize=9)
    yields = [float(tiers.get(t, {}).get("yield_bytes") or 0) for t in names]
    ax_y.bar(range(len(names)), yields, color=[_colour(names, t) for t in names])
    ax_y.set_xticks(range(len(names)), names, fontsize=7, rotation=30)
    ax_y.set_ylim(0, 1.05)
    ax_y.set_ylabel("bytes kept / raw bytes")
    ax_y.set_title("yield", fontsize=9)
    steps = report.get("steps") or []
    reasons = sorted({r for s in steps for r in (s.get("removed") or {})})
    if steps and reasons:
        labels = [f"{s.get('tier', '?')}/{s.get('step', '?')}" for s in steps]
        left = np.zeros(len(steps))
        cmap = plt.get_cmap("tab20")
        for i, r in enumerate(reasons):
            vals = np.array([float(((s.get("removed") or {}).get(r) or {}).get("documents") or 0) for s in steps])
            ax_r.barh(range(len(steps)), vals, left=left, color=cmap(i % 20), label=r, height=0.7)
            left += vals
        ax_r.set_yticks(range(len(steps)), labels, fontsize=6)
        ax_r.invert_yaxis()
        ax_r.set_xlabel("documents removed (symlog)")
        ax_r.set_xscale("symlog", linthresh=10)
        ax_r.legend(fontsize=5, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    else:
        ax_r.text(0.5, 0.5, "no removals recorded", ha="center", va="center", fontsize=8)
    ax_r.set_title("removed per step", fontsize=9)
    for a in (ax_s, ax_y, ax_r):
        a.tick_params(labelsize=7)
        a.grid(alpha=0.3, lw=0.4, axis="y" if a is not ax_r else "x")
    return _save(fig, path)
