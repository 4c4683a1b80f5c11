"""The sweep report: every figure, a Markdown file and a self-contained HTML page.

`build_report(store_root, fit_json, data_report, out_dir, title, ...)` reads the store's runs and
curves, draws the figures of `scaler.report.figures`, and writes `report.md` (images referenced
by relative path) and `index.html` (the same content, images embedded as base64 data URIs, inline
CSS, no external reference of any kind). Missing pieces (no data report, a group whose fit
errored, no quality fit) are said in the report instead of raising.

Both documents are rendered from one list of blocks, so they always say the same thing.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from scaler.fit.laws import allocation_exponents
from scaler.report import figures as F

__all__ = ["build_report", "REFERENCES", "FIGURES"]

# Published Chinchilla-law fits (L = E + A / N^alpha + B / D^beta).
REFERENCES: dict[str, dict[str, float]] = {
    "Hoffmann et al. 2022": {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28},
    "Besiroglu et al. 2024": {"E": 1.82, "A": 482.0, "B": 2085.0, "alpha": 0.35, "beta": 0.37},
}
for _ref in REFERENCES.values():
    _ref["a_exponent"], _ref["b_exponent"] = allocation_exponents(_ref["alpha"], _ref["beta"])  # N_opt ∝ C^a, D_opt ∝ C^b

# key -> (file name, section title, caption)
FIGURES: dict[str, tuple[str, str, str]] = {
    "loss_curves": ("loss_curves.png", "Loss curves",
                    "Held-out loss of every run against training tokens (log scale); colour is the model "
                    "size, line style the data tier or mix."),
    "isoflop": ("isoflop.png", "IsoFLOP profiles",
                "Per tier, final loss against parameters at each compute budget, with the parabola in "
                "log N fitted to each budget and its minimum (stars, with the 95% bootstrap interval of "
                "IsoFLOP approach 2)."),
    "allocation": ("allocation.png", "Compute-optimal allocation",
                   "N_opt(C) and D_opt(C) per tier: IsoFLOP minima with intervals (points), the parametric "
                   "law's closed-form allocation (lines) with its 95% bootstrap band where it was computed, "
                   "and Chinchilla's 20 tokens per parameter (dashed). Grey: the compute range of the runs."),
    "predicted": ("predicted_vs_observed.png", "Predicted against observed loss",
                  "Each tier's parametric law against the runs it was fitted on (dots) and the backtest's "
                  "held-out largest runs as predicted by a fit on the smaller ones (crosses); right: "
                  "relative residuals against compute."),
    "frontier": ("frontier_kappa.png", "Loss frontier and quality multipliers",
                 "Left: every run's final loss against compute with each tier's frontier (the best loss at "
                 "each budget). Right: the quality law's effective-data multipliers kappa_t (kappa = 1 for "
                 "the reference tier) with 95% intervals."),
    "data": ("data_report.png", "Data build",
             "Tier sizes in training tokens, byte yield against the raw tier, and documents removed per "
             "build step and reason."),
}


# --------------------------------------------------------------------------------------------
# formatting


def _num(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if x.is_integer() and abs(x) < 1e15 and digits >= 4:
            return f"{int(x):,}"
        if isinstance(x, float) and not math.isfinite(x):
            return str(x)
        return f"{x:.{digits}g}"
    return str(x)


def _interval(iv: Any) -> str:
    if not iv or len(iv) != 2 or any(v is None for v in iv):
        return ""
    return f"[{_num(iv[0])}, {_num(iv[1])}]"


def _with_interval(value: Any, iv: Any) -> str:
    text = _num(value)
    ivs = _interval(iv)
    return f"{text} {ivs}" if ivs else text


def _ok(entry: Any) -> bool:
    return isinstance(entry, Mapping) and not entry.get("error")


def _err(entry: Any) -> str:
    if isinstance(entry, Mapping) and entry.get("error"):
        return str(entry["error"])
    return "missing"


# Blocks: ("h1"|"h2"|"h3"|"p", text), ("list", [items]), ("table", headers, rows),
# ("img", key, path, caption), ("pre", text)
Block = tuple


def _md(blocks: Sequence[Block], out_dir: Path) -> str:
    lines: list[str] = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + b[1], ""]
        elif kind == "p":
            lines += [b[1], ""]
        elif kind == "list":
            lines += [f"- {item}" for item in b[1]] + [""]
        elif kind == "table":
            headers, rows = b[1], b[2]
            esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
            lines.append("| " + " | ".join(esc(h) for h in headers) + " |")
            lines.append("|" + "|".join("---" for _ in headers) + "|")
            lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
            lines.append("")
        elif kind == "img":
            rel = Path(b[2]).relative_to(out_dir).as_posix()
            lines += [f"![{b[1]}]({rel})", "", f"*{b[3]}*", ""]
        elif kind == "pre":
            lines += ["```", b[1].rstrip("\n"), "```", ""]
    return "\n".join(lines)


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1000px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #444;padding-bottom:.2em}h2{border-bottom:1px solid #ccc;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.88em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f0f0f0}tr:nth-child(even) td{background:#fafafa}
figure{margin:1em 0}img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.88em;color:#555}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.85em}
li{margin:.2em 0}.caveats li{color:#6a3d00}
"""


def _html(blocks: Sequence[Block], title: str) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{e(title)}</title><style>{_CSS}</style></head><body>"]
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{e(b[1])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{e(b[1])}</p>")
        elif kind == "list":
            cls = ' class="caveats"' if len(b) > 2 and b[2] == "caveats" else ""
            out.append(f"<ul{cls}>" + "".join(f"<li>{e(str(i))}</li>" for i in b[1]) + "</ul>")
        elif kind == "table":
            out.append("<table><thead><tr>" + "".join(f"<th>{e(str(h))}</th>" for h in b[1]) + "</tr></thead><tbody>")
            out += ["<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in b[2]]
            out.append("</tbody></table>")
        elif kind == "img":
            data = base64.b64encode(Path(b[2]).read_bytes()).decode("ascii")
            out.append(f'<figure><img alt="{e(b[1])}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{e(b[3])}</figcaption></figure>")
        elif kind == "pre":
            out.append(f"<pre>{e(b[1])}</pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# sections


def _order(names: Sequence[str]) -> list[str]:
    return sorted(names, key=lambda t: (t != "raw", t))


def _parameter_blocks(fit_json: Mapping[str, Any]) -> list[Block]:
    groups = fit_json.get("groups") or {}
    names = _order(list(groups))
    blocks: list[Block] = [("h2", "Fitted parameters")]
    if not names:
        return blocks + [("p", "No fit was given: no parameters to show.")]
    ok = [g for g in names if _ok(groups[g].get("parametric"))]
    failed = [g for g in names if g not in ok]
    if ok:
        laws = sorted({groups[g]["parametric"].get("law", "?") for g in ok})
        blocks.append(("p", f"Per-tier parametric fit ({', '.join(laws)}): the estimate with its 95% bootstrap "
                            "interval in brackets, beside published fits of the same Chinchilla form "
                            "L = E + A/N^alpha + B/D^beta. a_exponent and b_exponent are the allocation "
                            "exponents (N_opt ∝ C^a, D_opt ∝ C^b). Published constants were fitted to "
                            "other models, tokenizers and data; compare exponents, not E, A, B."))
        keys: list[str] = []
        for g in ok:
            derived = groups[g]["parametric"].get("derived") or {}
            for k in derived:
                if "@" not in k and k != "log_G" and k not in keys:
                    keys.append(k)
        refs = list(REFERENCES)
        rows = []
        for k in keys:
            row = [k]
            for g in ok:
                p = groups[g]["parametric"]
                row.append(_with_interval((p.get("derived") or {}).get(k), (p.get("intervals") or {}).get(k)))
            row += [_num(REFERENCES[r].get(k), 3) if k in REFERENCES[r] else "–" for r in refs]
            rows.append(row)
        rows.append(["converged"] + [str(groups[g]["parametric"].get("converged")) + f" ({groups[g]['parametric'].get('stopped', '')})"
                                     for g in ok] + ["", ""])
        rows.append(["points"] + [_num(groups[g]["parametric"].get("n_points")) for g in ok] + ["", ""])
        blocks.append(("table", ["parameter", *ok, *refs], rows))
    for g in failed:
        blocks.append(("p", f"Tier {g}: the parametric fit failed ({_err(groups[g].get('parametric'))}); "
                            "nothing is reported for it."))
    # allocation exponents: parametric vs isoflop
    rows = []
    for g in names:
        iso = groups[g].get("isoflop")
        par = groups[g].get("parametric")
        p_a = _with_interval(par["derived"].get("a_exponent"), (par.get("intervals") or {}).get("a_exponent")) if _ok(par) else f"failed: {_err(par)}"
        i_a = _with_interval(iso.get("a"), iso.get("a_interval")) if _ok(iso) else f"failed: {_err(iso)}"
        i_b = _with_interval(iso.get("b"), iso.get("b_interval")) if _ok(iso) else ""
        flagged = ", ".join(_num(f.get("budget") if isinstance(f, Mapping) else f) for f in (iso.get("flagged") or [])) if _ok(iso) else ""
        rows.append([g, p_a, i_a, i_b, flagged or "none"])
    blocks += [("h3", "Allocation exponents: parametric law against IsoFLOP approach 2"),
               ("table", ["tier", "a (parametric)", "a (isoflop)", "b (isoflop)", "flagged budgets"], rows)]
    # allocations
    rows = []
    for g in names:
        par = groups[g].get("parametric")
        if not _ok(par):
            continue
        iv = par.get("intervals") or {}
        for a in par.get("allocations") or []:
            c = a["flops"]
            n_iv = next((v for k, v in iv.items() if k.startswith("N_opt@") and _close(k, c)), None)
            d_iv = next((v for k, v in iv.items() if k.startswith("D_opt@") and _close(k, c)), None)
            rows.append([g, _num(c, 3), _with_interval(a["n_opt"], n_iv), _with_interval(a["d_opt"], d_iv),
                         _num(a["d_opt"] / a["n_opt"], 3)])
    if rows:
        blocks += [("h3", "Parametric allocations"),
                   ("table", ["tier", "C (FLOPs)", "N_opt [95%]", "D_opt [95%]", "tokens / parameter"], rows)]
    # backtests
    rows = []
    for g in names:
        bt = groups[g].get("backtest")
        if _ok(bt):
            rows.append([g, bt.get("split", ""), f"{bt.get('n_fit')} / {bt.get('n_heldout')}",
                         f"{100 * bt['mean_abs_rel_error']:.2f}%" if bt.get("mean_abs_rel_error") is not None else "–",
                         f"{100 * bt['max_abs_rel_error']:.2f}%" if bt.get("max_abs_rel_error") is not None else "–",
                         f"{100 * bt['bias']:+.2f}%" if bt.get("bias") is not None else "–", bt.get("verdict", "")])
        else:
            rows.append([g, "", "", "", "", "", f"backtest failed: {_err(bt)}"])
    blocks += [("h3", "Backtest: fit on the smaller runs, predict the largest"),
               ("table", ["tier", "split", "fit / held out", "mean |rel. err.|", "max", "bias", "verdict"], rows)]
    # quality law
    q = fit_json.get("quality")
    if q is not None:
        blocks.append(("h3", "Quality law (effective-data multipliers)"))
        if _ok(q):
            derived, iv = q.get("derived") or {}, q.get("intervals") or {}
            rows = [[k, _with_interval(v, iv.get(k))] for k, v in derived.items() if "@" not in k and k != "log_G"]
            rows.append(["converged", f"{q.get('converged')} ({q.get('stopped', '')})"])
            reference = (q.get("spec") or {}).get("reference") or q.get("reference")
            named = f"the reference tier {reference} (kappa_{reference} = 1)" if reference else "the reference tier"
            blocks += [("p", f"One {q.get('law')} fit over all tiers: a tier's token counts as kappa_t tokens of "
                             f"{named}."),
                       ("table", ["parameter", "value [95%]"], rows)]
        else:
            blocks.append(("p", f"The quality fit failed: {_err(q)}."))
    return blocks


def _close(key: str, c: float) -> bool:
    try:
        return abs(math.log(float(key.split("@", 1)[1]) / c)) < 0.01
    except (ValueError, ZeroDivisionError):
        return False


def _data_blocks(report: Mapping[str, Any] | None) -> list[Block]:
    blocks: list[Block] = [("h2", "Data build")]
    if not report:
        return blocks + [("p", "No data build report was given: tier sizes, yields and removals are not shown.")]
    tiers = report.get("tiers") or {}
    tok = next(iter((report.get("tokenizers") or {}).values()), {}) or {}
    tok_tiers = tok.get("tiers") or {}
    rows = []
    for t, v in tiers.items():
        rows.append([t, v.get("base") or "–", " → ".join(v.get("steps") or []) or "–", _num(v.get("documents")),
                     _num(v.get("bytes")), _num((tok_tiers.get(t) or {}).get("tokens") or v.get("bytes_train_tokens")),
                     f"{100 * v['yield_bytes']:.1f}%" if v.get("yield_bytes") is not None else "–"])
    blocks += [("h3", "Tiers"), ("table", ["tier", "base", "steps", "documents", "bytes", "training tokens", "byte yield"], rows)]
    steps = report.get("steps") or []
    rows = [[s.get("tier", ""), s.get("step", ""), f"{_num(s.get('documents_in'))} → {_num(s.get('documents_out'))}",
             f"{_num(s.get('bytes_in'))} → {_num(s.get('bytes_out'))}", _num(s.get("seconds"), 3), _num(s.get("flops"), 3)]
            for s in steps]
    if rows:
        blocks += [("h3", "Build steps"), ("table", ["tier", "step", "documents", "bytes", "seconds", "FLOPs"], rows)]
    rows = [[s.get("tier", ""), s.get("step", ""), reason, _num(r.get("documents")), _num(r.get("bytes"))]
            for s in steps for reason, r in (s.get("removed") or {}).items()]
    if rows:
        blocks += [("h3", "Removal reasons"), ("table", ["tier", "step", "reason", "documents", "bytes"], rows)]
    return blocks


def _caveats(runs: pl.DataFrame, fit_json: Mapping[str, Any], target_flops: float | None) -> list[str]:
    out: list[str] = []
    groups = fit_json.get("groups") or {}
    c = runs["C"].drop_nulls().to_numpy() if runs.height else []
    if len(c):
        c_lo, c_hi = float(min(c)), float(max(c))
        out.append(f"The fits cover runs from {c_lo:.3g} to {c_hi:.3g} FLOPs (a factor of {c_hi / c_lo:.3g}); "
                   "everything outside that range is an extrapolation of the fitted law.")
        tops = [a["flops"] for e in groups.values() if _ok(e.get("parametric")) for a in e["parametric"].get("allocations") or []]
        if target_flops:
            out.append(f"The recommendation's budget, {target_flops:.3g} FLOPs, is {target_flops / c_hi:.3g}x the "
                       "largest run: its allocation is read off the fitted law that far beyond the data.")
        if tops:
            out.append(f"The allocation table reaches {max(tops):.3g} FLOPs, {max(tops) / c_hi:.3g}x the largest run; "
                       "the bootstrap bands widen with the extrapolation and do not include model error.")
    else:
        out.append("No finished run: the fitted compute range is unknown.")
    for g in _order(list(groups)):
        e = groups[g]
        bt = e.get("backtest")
        if _ok(bt) and bt.get("mean_abs_rel_error") is not None:
            out.append(f"{g}: the backtest (fit on {bt.get('split', '?')}) predicts the {bt.get('n_heldout')} "
                       f"held-out largest runs with mean |relative error| {100 * bt['mean_abs_rel_error']:.2f}% "
                       f"(max {100 * (bt.get('max_abs_rel_error') or 0):.2f}%)"
                       + ("" if bt.get("converged", True) else "; the backtest fit did not converge") + ".")
        for key in ("parametric", "isoflop", "backtest"):
            if not _ok(e.get(key)):
                out.append(f"{g}: the {key} fit failed ({_err(e.get(key))}).")
        par = e.get("parametric")
        if _ok(par) and not par.get("converged", True):
            out.append(f"{g}: the parametric fit did not converge (stopped: {par.get('stopped', '?')}); "
                       "its estimate and intervals are less trustworthy.")
        if _ok(par) and par.get("flat_directions"):
            out.append(f"{g}: the parametric fit has flat directions ({', '.join(map(str, par['flat_directions']))}): "
                       "those parameters are not identified by these runs.")
        iso = e.get("isoflop")
        if _ok(iso):
            bad = [b for b in iso.get("budgets") or [] if b.get("status") != "ok"]
            for b in bad:
                out.append(f"{g}: IsoFLOP budget {b.get('budget', 0):.3g} FLOPs is flagged '{b.get('status')}'"
                           + (f" ({b['note']})" if b.get("note") else "") + "; it is left out of the exponent fit.")
            if iso.get("flagged") and not bad:
                out.append(f"{g}: flagged IsoFLOP budgets: {iso['flagged']}.")
    q = fit_json.get("quality")
    if _ok(q) and not q.get("converged", True):
        out.append(f"The quality fit did not converge (stopped: {q.get('stopped', '?')}).")
    if runs.height:
        per_config = runs.group_by(["group", "N", "D"]).agg(pl.col("seed").n_unique().alias("k"))
        k_max = int(per_config["k"].max())
        if k_max <= 1:
            out.append("One seed per configuration: seed-to-seed noise is not measured, and the intervals "
                       "(bootstrap over runs) include it only through the scatter of the fitted points.")
        else:
            out.append(f"Up to {k_max} seeds per configuration; the scatter between seeds is part of the fitted noise.")
    return out


def _runs(store_root: str, eval_set: str = "heldout") -> tuple[pl.DataFrame, pl.DataFrame, str | None]:
    from scaler.store import load_curves, load_runs

    try:
        raw = load_runs(store_root)
        curves = load_curves(store_root)
    except Exception as err:  # noqa: BLE001 - a broken store should still give a report
        return F.runs_table(pl.DataFrame()), pl.DataFrame(), f"{type(err).__name__}: {err}"
    return F.runs_table(raw, eval_set), curves, None


def _unique(raw_root: str, runs: pl.DataFrame) -> dict[str, float]:
    """Per group, the unique-token pool (for the data-constrained law); empty when unknown."""
    try:
        from scaler.store import load_runs

        frame = load_runs(raw_root)
    except Exception:  # noqa: BLE001
        return {}
    if "unique_tokens" not in frame.columns:
        return {}
    pools = dict(zip(frame["run_id"].to_list(), frame["unique_tokens"].to_list()))
    out: dict[str, float] = {}
    for rid, g in zip(runs["run_id"].to_list(), runs["group"].to_list()):
        if pools.get(rid):
            out[g] = float(pools[rid])
    return out


# --------------------------------------------------------------------------------------------
# entry point


def build_report(
    store_root: str,
    fit_json: dict | None,
    data_report: dict | None,
    out_dir: Path,
    title: str,
    recommendation_lines: list[str] | None = None,
    spec_text: str | None = None,
    *,
    target_flops: float | None = None,
) -> dict[str, Path]:
    """Draw every figure and write report.md and index.html under `out_dir`.

    Returns {figure key: png path, ..., "markdown": report.md, "html": index.html}. `target_flops`
    (optional) is the budget a recommendation is for: the caveats say how far it extrapolates.
    A figure that fails to draw is replaced by a note in the report (never a crash)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fit_json = fit_json or {}
    eval_set = ((fit_json or {}).get("key") or {}).get("eval_set", "heldout")  # the fit's eval set (fit.json key)
    runs, curves, store_error = _runs(str(store_root), eval_set)
    drawers = {
        "loss_curves": lambda p: F.loss_curves(curves, runs, p, eval_set=eval_set),
        "isoflop": lambda p: F.isoflop_curves(runs, fit_json, p),
        "allocation": lambda p: F.allocation(fit_json, runs, p, target_flops=target_flops),
        "predicted": lambda p: F.predicted_vs_observed(fit_json, runs, p, unique=_unique(str(store_root), runs)),
        "frontier": lambda p: F.frontier_and_kappa(runs, fit_json, p),
        "data": lambda p: F.data_report(data_report, p),
    }
    paths: dict[str, Path] = {}
    failures: dict[str, str] = {}
    for key, draw in drawers.items():
        try:
            paths[key] = draw(out_dir / FIGURES[key][0])
        except Exception as err:  # noqa: BLE001 - one bad figure must not lose the report
            F.plt.close("all")
            failures[key] = f"{type(err).__name__}: {err}"

    groups = fit_json.get("groups") or {}
    blocks: list[Block] = [("h1", title)]
    summary = [f"Store: {store_root} ({runs.height} finished runs"
               + (f"; {len(set(runs['group'].to_list()))} data options" if runs.height else "") + ")."]
    if fit_json.get("source"):
        summary.append(f"Fit: {fit_json.get('source')}, {fit_json.get('n_points')} points, groups: "
                       f"{', '.join(_order(list(groups))) or 'none'}.")
    else:
        summary.append("No fit was given.")
    if store_error:
        summary.append(f"The store could not be read: {store_error}.")
    blocks.append(("p", " ".join(summary)))
    if recommendation_lines:
        blocks += [("h2", "Recommendation"), ("list", list(recommendation_lines))]
    blocks += [("h2", "Caveats"), ("list", _caveats(runs, fit_json, target_flops), "caveats")]
    for key, (_, section, caption) in FIGURES.items():
        blocks.append(("h2", section))
        if key in paths:
            blocks.append(("img", section, paths[key], caption))
        else:
            blocks.append(("p", f"Figure not drawn: {failures.get(key, 'unknown error')}."))
        if key == "predicted":
            blocks += _parameter_blocks(fit_json)
        if key == "data":
            blocks += _data_blocks(data_report)[1:]
    if spec_text:
        blocks += [("h2", "Sweep spec"), ("pre", spec_text)]

    md_path, html_path = out_dir / "report.md", out_dir / "index.html"
    md_path.write_text(_md(blocks, out_dir), encoding="utf-8")
    html_path.write_text(_html(blocks, title), encoding="utf-8")
    return {**paths, "markdown": md_path, "html": html_path}
