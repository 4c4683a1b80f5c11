"""Report figures: small functions that each draw one compact PNG and return its path.

Every function takes what is already loaded (the runs frame of `scaler.report.frames`, the loss
curves of `scaler.store.load_curves`, a fit dict, a recommendation, a data-build report) and an
output path, and draws what `scaler.report.frames` computes from them: the fitted laws
(`law_views`), predictions with their 95% intervals, allocations under the fit's own convention,
the interval check, parabolas, surfaces and frontiers. Nothing here computes a law or an
interval. Matplotlib runs on the Agg backend; nothing imports JAX or the trainer.

A figure whose inputs are missing raises `NotDrawn` with a one-line reason; the report prints it
in place of the figure. Details: docs/design.md §5.9 (the report).
"""

from __future__ import annotations

import math
import textwrap
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

from scaler.fitting.predict import ErrorModel  # noqa: E402
from scaler.fitting.result import SweepFit  # noqa: E402
from scaler.report.frames import (  # noqa: E402
    LawView, allocation_curve, backtest_of, compute_span, curve_frame, envelope, error_model_panels,
    fitted_minimum, flops_label, group_names, heldout_losses, interval_check, isoflop_points, law_views,
    loss_frontier, loss_surface, next_point, no_law_reason, order, parabola_minima, predict_runs,
    quality_multipliers, removals, succeeded, tier_sizes, twenty_tokens,
)

__all__ = [
    "DPI", "NotDrawn", "loss_curves", "isoflop_curves", "allocation", "isoloss", "predicted_vs_observed",
    "calibration", "frontier_and_kappa", "crossover", "data_report",
]

DPI = 110
LINESTYLES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3))]
TIER_COLOURS = plt.get_cmap("tab10").colors
MAX_PANELS = 4


class NotDrawn(Exception):
    """A figure that does not apply to what was given (no curves, no fit, no data report): the
    message is the one-line note the report prints instead."""


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


def _c_axis(label: str) -> str:
    return f"training compute C, {label}"


def _error_bar(value: float, iv: Any) -> list[list[float]] | None:
    """Matplotlib's asymmetric error of `value` against its interval `iv`; None without one."""
    return [[max(value - iv[0], 0)], [max(iv[1] - value, 0)]] if iv and None not in iv else None


# --------------------------------------------------------------------------------------------
# figures


def loss_curves(curves: pl.DataFrame, runs: pl.DataFrame, path: Path | str, x: str = "tokens",
                eval_set: str = "heldout", flops: str = "FLOPs") -> Path:
    """Held-out loss of every run against tokens (or FLOPs), log x; colour = size, style = tier."""
    col = f"eval_{eval_set}_loss"
    if curves.height == 0 or col not in curves.columns or x not in curves.columns:
        raise NotDrawn(f"no {col} curves (they are read from a store's runs)")
    data = curve_frame(curves, runs, x, col)
    if data.height == 0:
        raise NotDrawn("no curves of finished runs")
    groups = group_names(runs)
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
    groups = [g for g in group_names(runs) if runs.filter(pl.col("group") == g).height]
    if not groups:
        raise NotDrawn("no runs to draw")
    shown = groups[:MAX_PANELS]
    fig, axes = _fig(len(shown), 3.3, 2.9, sharey=True)
    cmap = plt.get_cmap("plasma")
    for ax, g in zip(axes, shown):
        part = runs.filter(pl.col("group") == g).drop_nulls(["N", "C", "loss"])
        fitted = (sweep.get("groups") or {}).get(g, {}).get("isoflop") or {}
        fitted_budgets = (fitted.get("budgets") or []) if succeeded(fitted) else []
        minima = parabola_minima(part)
        for i, m in enumerate(minima):
            colour = cmap(0.85 * i / max(1, len(minima) - 1))
            ax.scatter(m["N"], m["loss"], s=12, color=colour, zorder=3, label=f"C={m['budget']:.1e}")
            if m["coef"] is not None:
                xs = np.linspace(np.log(m["N"].min()) - 0.2, np.log(m["N"].max()) + 0.2, 60)
                ax.plot(np.exp(xs), np.polyval(m["coef"], xs), color=colour, lw=0.9)
            b = fitted_minimum(fitted_budgets, m["budget"])
            if b is not None:
                xerr = _error_bar(b["n_opt"], b.get("n_opt_interval"))
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
        raise NotDrawn(no_law_reason(sweep, "allocation to draw"))
    label = flops_label(views[0].compute)
    c_lo, c_hi, c_top = compute_span(views, runs, [target_flops])
    cs = np.geomspace(c_lo / 2, c_top * 2, 28)
    names = group_names(runs, sweep)
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
                    err = _error_bar(a[key], a.get(f"{key}_interval"))
                    ax.errorbar([a["flops"]], [a[key]], yerr=err, fmt="D", ms=3.5, color=colour, mec="k",
                                mew=0.4, capsize=2, lw=0.8, zorder=4)
        for ax, key in ((ax_n, "n_opt"), (ax_d, "d_opt")):
            minima = isoflop_points(sweep, v.label, key)
            if minima is not None:
                budgets, values, err = minima
                ax.errorbar(budgets, values, yerr=err, fmt="o", ms=3.5, mfc="white", color=colour, capsize=2,
                            lw=0.8, zorder=3)
    if not drawn:
        plt.close(fig)
        raise NotDrawn("the fitted laws have no allocation here")
    n20 = twenty_tokens(views[0].compute, cs)
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
        raise NotDrawn(no_law_reason(sweep, "iso-loss contours"))
    shown = views[:MAX_PANELS]
    label = flops_label(shown[0].compute)
    fig, axes = _fig(len(shown), 3.6, 3.3)
    for ax, v in zip(axes, shown):
        nxt = next_point(next_run, v)
        part = v.runs(runs)
        c_lo, c_hi, c_top = compute_span([v], part, [target_flops, nxt[2] if nxt else None])
        cs = np.geomspace(c_lo / 3, c_top * 3, 60)
        front = allocation_curve(v, cs)
        if front is None:
            ax.axis("off")
            continue
        surface = loss_surface(v, front, part["N"].to_list(), nxt[0] if nxt else None)
        ns = surface["ns"]
        if surface["levels"] is not None:
            cont = ax.contour(surface["cc"], surface["nn"], surface["loss"], levels=surface["levels"], cmap="viridis",
                              linewidths=0.7)
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
        raise NotDrawn(no_law_reason(sweep, "prediction to compare", in_n_and_d=False))
    if runs.height == 0:
        raise NotDrawn("no runs to compare with: the store has no finished run and the fit carries no data")
    label = flops_label(views[0].compute)
    names = group_names(runs, sweep)
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
        bt = backtest_of(sweep, v.label)
        if bt is not None:
            colour = _colour(names, v.label)
            obs, pr, fl = heldout_losses(bt)
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


def _calibration_points(ax: Any, check: Mapping[str, Any], colour: Any) -> float:
    """One calibration panel's points (fitted runs, rolling-backtest residuals and cuts, held-out
    runs); returns the largest reach drawn (at least 1)."""
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
    return x_max


def _calibration_panel(ax: Any, views: Sequence[LawView], sweep: Mapping[str, Any], runs: pl.DataFrame,
                       names: Sequence[str]) -> None:
    """One law's calibration panel: its points and its error model's 95% envelope."""
    v = views[0]
    check = interval_check(views, sweep, runs)
    model: ErrorModel | None = check["model"]
    colour = _colour(names, v.label) if len(views) == 1 else "C0"
    title = v.label if len(views) == 1 else "all runs"
    x_max = _calibration_points(ax, check, colour)
    if model is not None:
        xs, down, up = envelope(model, x_max)
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


def calibration(fit_json: Mapping[str, Any] | None, runs: pl.DataFrame, path: Path | str) -> Path:
    """Per fitted law (up to MAX_PANELS): relative errors (pred - obs) / obs against the
    reach beyond the fitted runs (`FittedRange.reach`, in fitted spans), with the error model's 95%
    envelope exp(+-half_width) - 1: the fitted runs (dots, reach 0 inside the range), the
    backtest's held-out runs (crosses), the pooled rolling-backtest residuals when the fit stores
    them (small dots), and each rolling cut's bias +- mean |error| at its largest distance (bars)."""
    sweep = SweepFit(fit_json or {}).sweep_json()
    all_views = law_views(sweep)
    if not all_views:
        raise NotDrawn(no_law_reason(sweep, "error model to check", in_n_and_d=False))
    panels = error_model_panels(all_views)
    if not panels:
        raise NotDrawn("no error model in the fit (it was fitted without backtests, or by an older version)")
    shown = panels[:MAX_PANELS]
    names = group_names(runs, sweep)
    fig, axes = _fig(len(shown), 3.4, 3.1)
    for ax, views in zip(axes, shown):
        _calibration_panel(ax, views, sweep, runs, names)
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
    if runs.height == 0 and not succeeded(sweep.get("quality")):
        raise NotDrawn("no runs and no quality fit")
    fig, (ax, ax_k) = _fig(2, 3.6, 3.0)
    groups = group_names(runs, sweep)
    for g in groups:
        part = runs.filter(pl.col("group") == g).drop_nulls(["C", "loss"])
        if part.height == 0:
            continue
        colour = _colour(groups, g)
        C, L = part["C"].to_numpy().astype(float), part["loss"].to_numpy().astype(float)
        ax.scatter(C, L, s=8, color=colour, alpha=0.35, lw=0)
        fc, fl = loss_frontier(C, L)
        ax.plot(fc, fl, "o-", color=colour, ms=3, lw=1.1, label=g)
    ax.set_xscale("log")
    ax.set_xlabel(_c_axis(flops), fontsize=8)
    ax.set_ylabel("final loss")
    ax.set_title("loss frontier per group", fontsize=9)
    _legend(ax, fontsize=6, frameon=False)
    q = sweep.get("quality")
    kappas = quality_multipliers(sweep)
    if kappas:
        for i, (t, v, iv) in enumerate(kappas):
            colour = _colour(groups, t)
            ax_k.errorbar([i], [v], yerr=_error_bar(v, iv), fmt="o", color=colour, capsize=3, ms=5)
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
    names, sizes, yields = tier_sizes(report)
    fig, (ax_s, ax_y, ax_r) = _fig(3, 3.4, 3.0)
    ax_s.bar(range(len(names)), [s / 1e6 for s in sizes], color=[_colour(names, t) for t in names])
    ax_s.set_xticks(range(len(names)), names, fontsize=7, rotation=30)
    ax_s.set_ylabel("training tokens (M)")
    ax_s.set_title("tier sizes", fontsize=9)
    ax_y.bar(range(len(names)), yields, color=[_colour(names, t) for t in names])
    ax_y.set_xticks(range(len(names)), names, fontsize=7, rotation=30)
    ax_y.set_ylim(0, 1.05)
    ax_y.set_ylabel("bytes kept / raw bytes")
    ax_y.set_title("yield", fontsize=9)
    labels, counts = removals(report)
    if counts:
        left = np.zeros(len(labels))
        cmap = plt.get_cmap("tab20")
        for i, (r, vals) in enumerate(counts):
            ax_r.barh(range(len(labels)), vals, left=left, color=cmap(i % 20), label=r, height=0.7)
            left += vals
        ax_r.set_yticks(range(len(labels)), labels, fontsize=6)
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
