"""Report figures: small functions that each write one compact PNG and return its path.

Every function takes frames/dicts that are already loaded (the runs frame from
`runs_table`, the curves of `scaler.store.load_curves`, a fit.json dict, a data-build
report dict) and an output path. Matplotlib runs on the Agg backend; nothing here imports
JAX or the trainer, so a report can be drawn on any machine that can read the store.

Fitted laws are evaluated by the law objects of `scaler.fit.laws` in NumPy (`predict_loss`,
the allocation lines), rebuilt from the fit.json entry's law spec and theta; a law whose inputs
a panel does not have (a quality or mixing law needs mix weights) is left out of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from scaler.config import mix_label  # noqa: E402

from scaler.fit import laws  # noqa: E402
from scaler.fit.isoflop import group_budgets  # noqa: E402

__all__ = [
    "DPI", "runs_table", "group_budgets", "fitted_law", "predict_loss", "allocation_line", "parabola_minima",
    "loss_curves", "isoflop_curves", "allocation", "predicted_vs_observed",
    "frontier_and_kappa", "data_report",
]

DPI = 110
LINESTYLES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3))]
TIER_COLOURS = plt.get_cmap("tab10").colors


# --------------------------------------------------------------------------------------------
# helpers


def runs_table(runs: pl.DataFrame, eval_set: str = "heldout") -> pl.DataFrame:
    """Finished runs as run_id, group, N, D, C, loss, seed (the labelling of scaler.fit.data).

    `group` is the data option the fit is grouped by: "<tier>" for a pure mix, else
    "tier:weight+..." (the same strings as fit.json's group labels)."""
    if runs.is_empty() or "state" not in runs.columns:
        return pl.DataFrame(schema={"run_id": pl.String, "group": pl.String, "N": pl.Float64, "D": pl.Float64,
                                    "C": pl.Float64, "loss": pl.Float64, "seed": pl.Int64})
    runs = runs.filter(pl.col("state") == "done")
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
        c = 6 * n * d
    seed = runs["train_seed"].cast(pl.Int64) if "train_seed" in runs.columns else pl.Series([0] * runs.height)
    return pl.DataFrame({
        "run_id": runs["run_id"], "group": labels, "N": n, "D": d, "C": c, "loss": col(loss_col), "seed": seed,
    })


def fitted_law(entry: Mapping[str, Any]) -> tuple[laws.Law, np.ndarray] | None:
    """(law, theta) of a fit.json fit entry: the law rebuilt from its "spec" (older files without
    one: from its "law" name, which rebuilds chinchilla and data_constrained) and its theta.
    None when the entry cannot be rebuilt or its theta is incomplete."""
    spec = entry.get("spec") or {"family": entry.get("law")}
    try:
        law = laws.law_from_spec(spec)
    except ValueError:
        return None
    theta = entry.get("theta")
    if theta is None or len(theta) != law.n_params or any(v is None for v in theta):
        return None
    return law, np.asarray(theta, dtype=np.float64)


def predict_loss(parametric: Mapping[str, Any], N: np.ndarray, D: np.ndarray, U: np.ndarray | None = None) -> np.ndarray | None:
    """Loss predicted by a fitted law (a fit.json "parametric" entry), evaluated by the law in
    NumPy; None when the law cannot be rebuilt or needs columns other than N, D (and U)."""
    fitted = fitted_law(parametric)
    if fitted is None:
        return None
    law, theta = fitted
    columns = {"N": N, "D": D} if U is None else {"N": N, "D": D, "U": U}
    if any(c not in columns for c in law.columns):
        return None
    return law.predict(theta, columns)


def allocation_line(parametric: Mapping[str, Any], flops: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(N_opt, D_opt) of a fitted law at each compute in `flops`, by the law's own allocation;
    None when the law has none (mixing) or cannot be rebuilt."""
    fitted = fitted_law(parametric)
    if fitted is None:
        return None
    law, theta = fitted
    points = [law.allocation(theta, float(c)) for c in flops]
    if any(p is None for p in points):
        return None
    return np.array([p[0] for p in points]), np.array([p[1] for p in points])


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


def _fig(n_panels: int, width: float = 3.4, height: float = 2.9, sharey: bool = False):
    n_panels = max(1, n_panels)
    fig, axes = plt.subplots(1, n_panels, figsize=(min(width * n_panels, 11.0), height), sharey=sharey, squeeze=False)
    return fig, list(axes[0])


def _save(fig: Any, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, format="png")
    plt.close(fig)
    return path


def _legend(ax: Any, **kw: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def _empty(path: Path | str, message: str) -> Path:
    fig, (ax,) = _fig(1, 4.0, 1.4)
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=9, wrap=True)
    return _save(fig, path)


def _groups(runs: pl.DataFrame, fit_json: Mapping[str, Any] | None = None) -> list[str]:
    names = set(runs["group"].unique().to_list()) if runs.height else set()
    if fit_json:
        names |= set((fit_json.get("groups") or {}).keys())
    return sorted(names, key=lambda t: (t != "raw", t))


def _colour(groups: Sequence[str], g: str) -> Any:
    return TIER_COLOURS[list(groups).index(g) % len(TIER_COLOURS)] if g in groups else "grey"


def _fmt_si(x: float) -> str:
    for unit, s in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= unit:
            return f"{x / unit:.3g}{s}"
    return f"{x:.3g}"


def _ok(entry: Any) -> bool:
    return isinstance(entry, Mapping) and not entry.get("error")


# --------------------------------------------------------------------------------------------
# figures


def loss_curves(curves: pl.DataFrame, runs: pl.DataFrame, path: Path | str, x: str = "tokens",
                eval_set: str = "heldout") -> Path:
    """Held-out loss of every run against tokens (or FLOPs), log x; colour = size, style = tier."""
    col = f"eval_{eval_set}_loss"
    if curves.height == 0 or col not in curves.columns or x not in curves.columns:
        return _empty(path, f"no {col} curves in the store")
    data = curves.select("run_id", x, col).drop_nulls().filter(pl.col(x) > 0)
    data = data.join(runs.select("run_id", "group", "N"), on="run_id", how="inner")
    if data.height == 0:
        return _empty(path, "no curves of finished runs")
    groups = _groups(runs)
    sizes = sorted(set(data["N"].to_list()))
    cmap = plt.get_cmap("viridis")
    lo, hi = math.log(sizes[0]), math.log(sizes[-1])

    def size_colour(n: float) -> Any:
        return cmap(0.9 * ((math.log(n) - lo) / (hi - lo) if hi > lo else 0.5))

    fig, (ax,) = _fig(1, 6.4, 3.4)
    for (rid,), part in data.group_by(["run_id"], maintain_order=True):
        g, n = part["group"][0], part["N"][0]
        ax.plot(part[x].to_numpy(), part[col].to_numpy(), color=size_colour(n),
                ls=LINESTYLES[groups.index(g) % len(LINESTYLES)] if g in groups else "-", lw=0.9, alpha=0.85)
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs" if x == "flops" else "training tokens")
    ax.set_ylabel(f"{eval_set} loss (nats)")
    y = data[col].to_numpy()
    ax.set_ylim(np.nanmin(y) * 0.98, min(np.nanpercentile(y, 97) * 1.05, np.nanmax(y)))
    handles = [Line2D([], [], color=size_colour(n), lw=2, label=f"N={_fmt_si(n)}") for n in sizes[:8]]
    handles += [Line2D([], [], color="k", lw=1, ls=LINESTYLES[i % len(LINESTYLES)], label=g) for i, g in enumerate(groups)]
    ax.legend(handles=handles, fontsize=7, ncol=1, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.grid(alpha=0.3, which="both", lw=0.4)
    ax.set_title("loss curves (colour: model size, line: data)", fontsize=9)
    return _save(fig, path)


def isoflop_curves(runs: pl.DataFrame, fit_json: Mapping[str, Any] | None, path: Path | str) -> Path:
    """Per tier: final loss against N at each budget, the fitted parabola in log N, its minimum
    (the fit.json isoflop minimum, with its interval, where present; else the re-fitted vertex)."""
    groups = [g for g in _groups(runs) if runs.filter(pl.col("group") == g).height]
    if not groups:
        return _empty(path, "no finished runs")
    fig, axes = _fig(len(groups), 3.3, 2.9, sharey=True)
    cmap = plt.get_cmap("plasma")
    for ax, g in zip(axes, groups):
        part = runs.filter(pl.col("group") == g).drop_nulls(["N", "C", "loss"])
        fitted = ((fit_json or {}).get("groups") or {}).get(g, {}).get("isoflop") or {}
        fitted_budgets = fitted.get("budgets") or [] if _ok(fitted) else []
        minima = parabola_minima(part)
        for i, m in enumerate(minima):
            colour = cmap(0.85 * i / max(1, len(minima) - 1))
            ax.scatter(m["N"], m["loss"], s=12, color=colour, zorder=3, label=f"C={m['budget']:.1e}")
            if m["coef"] is not None:
                xs = np.linspace(np.log(m["N"].min()) - 0.2, np.log(m["N"].max()) + 0.2, 60)
                ax.plot(np.exp(xs), np.polyval(m["coef"], xs), color=colour, lw=0.9)
            match = [b for b in fitted_budgets if abs(math.log(b["budget"] / m["budget"])) < 0.05]
            if match and match[0].get("n_opt") and match[0].get("loss_opt") is not None:
                b = match[0]
                xerr = None
                if b.get("n_opt_interval"):
                    lo_, hi_ = b["n_opt_interval"]
                    xerr = [[max(b["n_opt"] - lo_, 0)], [max(hi_ - b["n_opt"], 0)]]
                ax.errorbar([b["n_opt"]], [b["loss_opt"]], xerr=xerr, fmt="*", ms=8, color=colour, mec="k",
                            mew=0.5, zorder=4, capsize=2, lw=0.8)
            elif m["n_opt"] is not None:
                ax.plot([m["n_opt"]], [m["loss_opt"]], "*", ms=8, color=colour, mec="k", mew=0.5, zorder=4)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("parameters N")
        title = g
        if fitted.get("error"):
            title += " (isoflop fit failed)"
        elif fitted.get("flagged"):
            title += f" ({len(fitted['flagged'])} flagged)"
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, which="both", lw=0.4)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("final loss")
    _legend(axes[0], fontsize=6, frameon=False)
    fig.suptitle("IsoFLOP profiles (stars: minima with 95% intervals)", fontsize=9)
    return _save(fig, path)


def _interp_band(cs: np.ndarray, pts: list[tuple[float, float, float]]) -> tuple[np.ndarray, np.ndarray] | None:
    """Log-log interpolation (and linear extrapolation in log-log) of interval endpoints."""
    if len(pts) < 2:
        return None
    pts = sorted(pts)
    lc = np.log([p[0] for p in pts])
    lo = np.polyfit(lc, np.log([p[1] for p in pts]), 1 if len(pts) < 3 else 2)
    hi = np.polyfit(lc, np.log([p[2] for p in pts]), 1 if len(pts) < 3 else 2)
    return np.exp(np.polyval(lo, np.log(cs))), np.exp(np.polyval(hi, np.log(cs)))


def allocation(fit_json: Mapping[str, Any] | None, runs: pl.DataFrame, path: Path | str,
               target_flops: float | None = None) -> Path:
    """N_opt(C) and D_opt(C) per tier: isoflop minima with intervals, the parametric law's
    closed-form allocation with its bootstrap band (from the N_opt@C / D_opt@C intervals), and
    Chinchilla's 20 tokens per parameter (D = 20 N, N = sqrt(C / 120))."""
    groups = (fit_json or {}).get("groups") or {}
    if not groups:
        return _empty(path, "no fit: allocation not drawn")
    c_all = runs["C"].drop_nulls().to_numpy() if runs.height else np.array([])
    c_lo = float(c_all.min()) if c_all.size else 1e15
    c_hi = float(c_all.max()) if c_all.size else 1e17
    tops = [a["flops"] for e in groups.values() if _ok(e.get("parametric")) for a in e["parametric"].get("allocations", [])]
    c_max = max([c_hi, *tops, *([target_flops] if target_flops else [])])
    cs = np.geomspace(c_lo / 1.5, c_max * 1.5, 80)
    names = sorted(groups, key=lambda t: (t != "raw", t))
    fig, (ax_n, ax_d) = _fig(2, 3.8, 3.1)
    for g in names:
        e, colour = groups[g], _colour(names, g)
        iso = e.get("isoflop")
        if _ok(iso):
            bs = [b for b in iso.get("budgets", []) if b.get("n_opt") and b.get("status") == "ok"]
            for ax, key in ((ax_n, "n_opt"), (ax_d, "d_opt")):
                xs = [b["budget"] for b in bs if b.get(key)]
                ys = [b[key] for b in bs if b.get(key)]
                err = [[max(b[key] - b[f"{key}_interval"][0], 0) if b.get(f"{key}_interval") else 0 for b in bs if b.get(key)],
                       [max(b[f"{key}_interval"][1] - b[key], 0) if b.get(f"{key}_interval") else 0 for b in bs if b.get(key)]]
                if xs:
                    ax.errorbar(xs, ys, yerr=err, fmt="o", ms=4, color=colour, capsize=2, lw=0.8)
        par = e.get("parametric")
        if _ok(par):
            intervals = par.get("intervals", {}) or {}
            line = allocation_line(par, cs)
            if line is not None:
                ax_n.plot(cs, line[0], color=colour, lw=1.2, label=f"{g} ({par.get('law')})")
                ax_d.plot(cs, line[1], color=colour, lw=1.2, label=g)
            for ax, key in ((ax_n, "N_opt"), (ax_d, "D_opt")):
                pts = []
                for name, iv in intervals.items():
                    if name.startswith(f"{key}@") and iv and all(v is not None and v > 0 for v in iv):
                        pts.append((float(name.split("@", 1)[1]), float(iv[0]), float(iv[1])))
                if pts:
                    pts.sort()
                    band_c = np.geomspace(pts[0][0], pts[-1][0], 30) if len(pts) > 1 else None
                    band = _interp_band(band_c, pts) if band_c is not None else None
                    if band is not None:
                        ax.fill_between(band_c, band[0], band[1], color=colour, alpha=0.18, lw=0)
                    else:
                        ax.errorbar([pts[0][0]], [math.sqrt(pts[0][1] * pts[0][2])],
                                    yerr=[[0], [0]], color=colour)
    n20 = np.sqrt(cs / 120)
    ax_n.plot(cs, n20, "k--", lw=0.8, label="20 tokens/param")
    ax_d.plot(cs, 20 * n20, "k--", lw=0.8, label="20 tokens/param")
    for ax, lab in ((ax_n, "N_opt (parameters)"), (ax_d, "D_opt (tokens)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("compute C (FLOPs)")
        ax.set_ylabel(lab)
        ax.axvspan(c_lo, c_hi, color="0.85", alpha=0.5, lw=0)
        if target_flops:
            ax.axvline(target_flops, color="r", lw=0.8, ls=":")
        ax.grid(alpha=0.3, which="both", lw=0.4)
        ax.tick_params(labelsize=7)
    _legend(ax_n, fontsize=6, frameon=False)
    fig.suptitle("compute-optimal allocation (grey: fitted range; bands: 95% bootstrap)", fontsize=9)
    return _save(fig, path)


def predicted_vs_observed(fit_json: Mapping[str, Any] | None, runs: pl.DataFrame, path: Path | str,
                          unique: Mapping[str, float] | None = None) -> Path:
    """Per-tier parametric law: predicted against observed loss, and relative residuals against
    compute; the backtest's held-out points (predicted by the fit on smaller runs) as crosses."""
    groups = (fit_json or {}).get("groups") or {}
    fig, (ax, ax_r) = _fig(2, 3.6, 3.1)
    names = sorted(groups, key=lambda t: (t != "raw", t))
    drawn, lo, hi = 0, np.inf, -np.inf
    for g in names:
        par, colour = groups[g].get("parametric"), _colour(names, g)
        part = runs.filter(pl.col("group") == g).drop_nulls(["N", "D", "loss"])
        if not _ok(par) or part.height == 0:
            continue
        N, D, L, C = (part[k].to_numpy().astype(float) for k in ("N", "D", "loss", "C"))
        U = np.full_like(D, unique[g]) if unique and g in unique else None
        pred = predict_loss(par, N, D, U)
        if pred is None:
            continue
        drawn += 1
        ax.scatter(L, pred, s=12, color=colour, label=g, zorder=3)
        ax_r.scatter(C, (pred - L) / L * 100, s=12, color=colour, zorder=3)
        lo, hi = min(lo, L.min(), pred.min()), max(hi, L.max(), pred.max())
        bt = groups[g].get("backtest")
        if _ok(bt) and bt.get("rows"):
            obs = np.array([r["observed"] for r in bt["rows"]], dtype=float)
            pr = np.array([r["predicted"] for r in bt["rows"]], dtype=float)
            fl = np.array([r.get("flops") or np.nan for r in bt["rows"]], dtype=float)
            ax.scatter(obs, pr, s=36, marker="x", color=colour, lw=1.0, zorder=4)
            ax_r.scatter(fl, (pr - obs) / obs * 100, s=36, marker="x", color=colour, lw=1.0, zorder=4)
    if not drawn:
        plt.close(fig)
        return _empty(path, "no parametric fit that can be evaluated here")
    pad = 0.02 * (hi - lo)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k-", lw=0.6)
    ax.set_xlabel("observed loss")
    ax.set_ylabel("predicted loss")
    _legend(ax, fontsize=6, frameon=False, title="x: backtest held out", title_fontsize=6)
    ax_r.axhline(0, color="k", lw=0.6)
    ax_r.set_xscale("log")
    ax_r.xaxis.set_minor_formatter(NullFormatter())
    ax_r.set_xlabel("compute C (FLOPs)")
    ax_r.set_ylabel("residual (pred - obs) / obs, %")
    for a in (ax, ax_r):
        a.grid(alpha=0.3, lw=0.4)
        a.tick_params(labelsize=7)
    fig.suptitle("parametric law: predicted vs observed", fontsize=9)
    return _save(fig, path)


def frontier_and_kappa(runs: pl.DataFrame, fit_json: Mapping[str, Any] | None, path: Path | str) -> Path:
    """Left: loss against compute per tier with each tier's frontier (best loss per budget).
    Right: the quality law's effective-data multipliers kappa_t with 95% intervals."""
    fig, (ax, ax_k) = _fig(2, 3.6, 3.0)
    groups = _groups(runs)
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
    ax.set_xlabel("compute C (FLOPs)")
    ax.set_ylabel("final loss")
    ax.set_title("loss frontier per tier", fontsize=9)
    _legend(ax, fontsize=6, frameon=False)
    q = (fit_json or {}).get("quality")
    kappas = []
    if _ok(q):
        derived, intervals = q.get("derived", {}), q.get("intervals", {}) or {}
        kappas = [(k.removeprefix("kappa_"), v, intervals.get(k)) for k, v in derived.items() if k.startswith("kappa_")]
    if kappas:
        for i, (t, v, iv) in enumerate(kappas):
            colour = _colour(groups, t)
            err = [[max(v - iv[0], 0)], [max(iv[1] - v, 0)]] if iv else None
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


def data_report(report: Mapping[str, Any] | None, path: Path | str) -> Path:
    """Data build: tier sizes (training tokens), byte yields, documents removed per step and reason."""
    if not report:
        return _empty(path, "no data build report")
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
