"""The sweep report: every figure, a Markdown file and a self-contained HTML page.

`render_report(store, fit_json, data_report, out_dir, title, ...)` draws the figures of
`scaler.report.figures` and writes `report.md` (images referenced by relative path) and
`index.html` (the same content, images embedded as base64 data URIs, inline CSS, no external
reference of any kind). The runs come from the store when one is given (`StoreRuns`, read by
`scaler.session.store_runs`: nothing here opens a store), else from
the fit JSON's top-level "data" (the fitted rows: N, D, C, loss, group, ...), so a report can be
built from a fit JSON alone: `build_report_from_fit(fit_json, out_dir, title)` (what
`scaler report --fit FIT.json` calls). The fit may be a sweep fit (`fit_sweep`, fit.json) or one
law's entry (`scaler fit --table ... --out F.json`).

Every FLOP axis and column names the fit's compute convention ("FLOPs (flops_v1)", "FLOPs (6ND)");
allocations are the fit's own (`allocate` under that convention), never a 6ND closed form.
Missing pieces (no store, no curves, no data report, a group whose fit errored, no quality fit)
are said in the report instead of raising: a figure that does not apply, or fails to draw, is
replaced by a one-line note.

Both documents are rendered from one list of blocks, so they always say the same thing.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from scaler.fit.choose import CANDIDATE_COLUMNS, candidate_rows
from scaler.fit.laws import allocation_exponents
from scaler.fit.predict import error_model_text
from scaler.fit.result import SweepFit
from scaler.report import figures as F

__all__ = ["StoreRuns", "render_report", "build_report_from_fit", "REFERENCES", "FIGURES"]

# Published Chinchilla-law fits (L = E + A / N^alpha + B / D^beta).
REFERENCES: dict[str, dict[str, float]] = {
    "Hoffmann et al. 2022": {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28},
    "Besiroglu et al. 2024": {"E": 1.82, "A": 482.0, "B": 2085.0, "alpha": 0.35, "beta": 0.37},
}
for _ref in REFERENCES.values():
    _ref["a_exponent"], _ref["b_exponent"] = allocation_exponents(_ref["alpha"], _ref["beta"])  # N_opt ∝ C^a, D_opt ∝ C^b

# key -> (file name, section title, caption); "{flops}" in a caption is the fit's FLOP unit,
# e.g. "FLOPs (flops_v1)"
FIGURES: dict[str, tuple[str, str, str]] = {
    "crossover": ("crossover.png", "Cleaning against model size, by budget",
                  "Left: each option's predicted best loss against the budget in {flops} (its cleaning "
                  "charged; each bootstrap sample re-optimises N), with the 95% band over the samples. "
                  "Right: the share of samples in which a cleaned tier beats raw. Grey: up to the largest "
                  "fitted run; red dotted: the recommendation's budget; black dash-dot: the crossover."),
    "loss_curves": ("loss_curves.png", "Loss curves",
                    "Held-out loss of every run against training tokens (log scale); colour is the model "
                    "size, line style the data tier or mix."),
    "isoflop": ("isoflop.png", "IsoFLOP profiles",
                "Per group, final loss against parameters at each compute budget (C in {flops}), with the "
                "parabola in log N fitted to each budget and its minimum (stars, with the 95% bootstrap "
                "interval of IsoFLOP approach 2)."),
    "allocation": ("allocation.png", "Compute-optimal allocation",
                   "N_opt(C) and D_opt(C) per fitted law, C in {flops}: the law's allocation under that "
                   "convention (lines) with its 95% bootstrap band, the fit's allocations at 1x, 10x and "
                   "100x the largest run with their intervals (diamonds), IsoFLOP minima (circles), the "
                   "fitted runs (dots) and 20 tokens per parameter under the same convention (dashed). "
                   "Grey: the compute range of the runs; red dotted: the recommendation's budget."),
    "isoloss": ("isoloss.png", "Iso-loss contours and the efficient frontier",
                "Contours of the fitted law's loss over compute C ({flops}) and parameters N (log-log; "
                "D is what C buys at N), the efficient frontier N_opt(C) with its 95% bootstrap band "
                "(red), the fitted runs (black) and the proposed next run (star) when there is one."),
    "predicted": ("predicted_vs_observed.png", "Predicted against observed loss",
                  "Every fitted run: the law's predicted loss with its 95% prediction interval (bootstrap, "
                  "run scatter and extrapolation error) against the observed loss (left), and the relative "
                  "error against compute in {flops} (right); crosses: the backtest's held-out largest runs "
                  "as predicted by a fit on the smaller ones."),
    "calibration": ("calibration.png", "Do the prediction intervals hold?",
                    "Relative error (pred - obs) / obs against the reach beyond the runs a fit saw "
                    "(max over N, D, C of log10(v / v_max) / log10(v_max / v_min): fitted spans), with the "
                    "error model's 95% envelope (dashed): fitted runs (grey, reach 0), the rolling "
                    "backtests' residuals (dots), the backtest's held-out runs (crosses) and each rolling "
                    "cut's bias +- mean |error| at its largest reach (bars; squares: cuts in model size). Points outside the envelope are "
                    "predictions the intervals did not cover."),
    "frontier": ("frontier_kappa.png", "Loss frontier and quality multipliers",
                 "Left: every run's final loss against compute ({flops}) with each group's frontier (the "
                 "best loss at each budget). Right: the quality law's effective-data multipliers kappa_t "
                 "(kappa = 1 for the reference tier) with 95% intervals."),
    "data": ("data_report.png", "Data build",
             "Tier sizes in training tokens, byte yield against the raw tier, and documents removed per "
             "build step and reason."),
}

STATE_WORDS = {"diverged": ("diverged", "diverged"), "failed": ("failed", "failed"),  # (one run, several)
               "running": ("was still running", "were still running"),
               "pending": ("had not started", "had not started"),
               "outside the sweep": ("belongs to another data build or spec version",
                                     "belong to another data build or spec version")}
MAX_IDS = 20  # run ids listed per state before "... and k more"


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


_ok = F._ok  # an entry that holds a result, not {"error": ...}


def _err(entry: Any) -> str:
    if isinstance(entry, Mapping) and entry.get("error"):
        return str(entry["error"])
    return "missing"


# Blocks: ("h1"|"h2"|"h3"|"p", text), ("headline", bold text, text), ("list", [items]), ("table", headers, rows),
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
        elif kind == "headline":
            lines += [f"> **{b[1]}** {b[2]}", ""]
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
.headline{font-size:1.15em;background:#eef4fb;border-left:4px solid #2a6cb0;padding:.7em 1em;margin:1em 0}
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
        elif kind == "headline":
            out.append(f'<p class="headline"><strong>{e(b[1])}</strong> {e(b[2])}</p>')
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


_order = F.order


def _pct(x: Any, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}%"


def _entries(sweep: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(group label, parametric entry) of every group whose parametric fit succeeded."""
    groups = sweep.get("groups") or {}
    return [(g, groups[g]["parametric"]) for g in _order(list(groups)) if _ok(groups[g].get("parametric"))]


def _plural(k: int, one: str, many: str | None = None) -> str:
    return f"{k} {one if k == 1 else (many or one + 's')}"


def _excluded_sentences(excluded: Mapping[str, Any] | None) -> list[str]:
    """"2 runs diverged and are not in the fit: id1, id2", one sentence per state."""
    out = []
    for state, ids in sorted((excluded or {}).items()):
        ids = [str(i) for i in (ids or [])]
        if not ids:
            continue
        k = len(ids)
        verb = STATE_WORDS.get(state, (f"was in state '{state}'", f"were in state '{state}'"))[k != 1]
        shown = ", ".join(ids[:MAX_IDS]) + (f" and {k - MAX_IDS} more" if k > MAX_IDS else "")
        out.append(f"{_plural(k, 'run')} {verb} and {'is' if k == 1 else 'are'} not in the fit: {shown}.")
    return out


def _seed_noise_sentences(sweep: Mapping[str, Any]) -> list[str]:
    out = []
    for g, e in _entries(sweep):
        sn = e.get("seed_noise")
        if isinstance(sn, Mapping) and sn.get("sd_log") is not None:
            where = "" if sweep.get("single_law") else f" ({g})"
            out.append(f"Seed noise{where}: the runs that differ only in seed scatter by {100 * sn['sd_log']:.2f}% "
                       f"in loss (sd of log loss; {_num(sn.get('sd_nats'), 3)} nats), from "
                       f"{_plural(int(sn.get('n_configs') or 0), 'configuration')} run with several seeds "
                       f"({_plural(int(sn.get('n_runs') or 0), 'run')}).")
    return out


SPEND_WORDS = {"size": "model size", "cleaning": "cleaning"}  # recommend.SPEND (report may not import recommend)


def _loss_iv(iv: Any) -> str:
    return f"[{iv[0]:.4f}, {iv[1]:.4f}]" if iv and None not in iv else ""


def _headline(rec: Mapping[str, Any]) -> tuple[str, str]:
    """The answer: (the verdict with its probability, budget and extrapolation; the gap and the
    crossover)."""
    reach = rec.get("extrapolation")
    reach_text = f", {reach:.3g}x the largest fitted run" if reach else ""
    verdict = (f"{rec['verdict_text'][0].upper()}{rec['verdict_text'][1:]} at {rec['budget_flops']:.3g} FLOPs "
               f"({rec['flops_convention']}){reach_text}: {rec['winner']} is the best option in "
               f"{rec['probability']:.0%} of bootstrap samples.")
    text = f"{rec['probability_kind']:.0%} pick the same kind of spend."
    if rec.get("best_clean") is not None:
        lo, hi = rec["gap_interval"]
        text += (f" Best cleaned tier {rec['best_clean']} against {rec['raw_option']}: gap {rec['gap']:+.4f} nats "
                 f"[{lo:+.4f}, {hi:+.4f}] (positive favours cleaning)")
        text += ("; the interval spans 0, so these runs do not settle the verdict." if lo < 0 < hi else ".")
    x = rec.get("crossover")
    if x:
        before, after = (SPEND_WORDS[w] for w in x["direction"].split("->")) if x.get("direction") else ("", "")
        if x.get("flops") is not None:
            text += f" Crossover: from {before} to {after} at about {x['flops']:.3g} FLOPs"
        else:
            text += f" No crossover between {x['range'][0]:.3g} and {x['range'][1]:.3g} FLOPs"
        if x.get("direction") and x.get("share_crossing", 0) > 0:
            text += (f" ({x['share_crossing']:.0%} of samples turn from {before} to {after} in that range, "
                     f"95% of them between {x['interval'][0]:.3g} and {x['interval'][1]:.3g} FLOPs).")
        else:
            text += " (no bootstrap sample's verdict turns in that range)."
    return verdict, text


def _answer_blocks(rec: Mapping[str, Any]) -> list[Block]:
    """The report's opening: the headline, the options and the next experiments as tables, the
    recommendation's notes."""
    budget = rec["budget_flops"]
    options = []
    for o in rec["options"]:
        cost = f"{o['cleaning_flops']:.3g} ({o['cleaning_flops'] / budget:.1%})"
        if not o["feasible"]:
            options.append([o["name"], f"{o['kappa']:.3g}", f"infeasible: {o['reason']}", "–", "–", "–", "–", "–", cost])
            continue
        run_iv = _loss_iv(o.get("loss_prediction_interval")) or "–"
        options.append([o["name"], f"{o['kappa']:.3g}", f"{o['n_params']:.3g}", f"{o['tokens']:.3g}",
                        f"{o['epochs']:.2f} of {o['pool_tokens']:.3g}", f"{o['loss']:.4f} {_loss_iv(o['loss_interval'])}",
                        run_iv, f"{o['win_share']:.0%}", cost])
    blocks: list[Block] = [
        ("headline", *_headline(rec)),
        *([("p", rec["settle"][0].upper() + rec["settle"][1:])] if rec.get("settle") else []),
        ("table", ["option", "kappa", "N (params)", "D (tokens)", "epochs of the pool", "predicted loss [95%]",
                   "95% prediction interval of the run", "best in (samples)",
                   "cleaning cost, FLOPs (share of budget)"], options),
    ]
    experiments = rec.get("experiments") or []
    if experiments:
        informed = experiments[0].get("information_per_flop") is not None
        rows = [[f"#{e['rank']}", e["tier"], f"{e['n_params']:.3g}", f"{e['tokens']:.3g}", f"{e['flops']:.3g}",
                 f"{e['epochs']:.2f}", f"{e['predicted_loss']:.4f} {_loss_iv(e['loss_interval'])}",
                 f"{e['gap_sd']:.4f} -> {e['gap_sd_after']:.4f}" if informed else f"{e['gap_spread']:.4f}"]
                for e in experiments]
        why = ("Ranked by expected information per FLOP: how much of the variance of the verdict's gap at the "
               "target a pair of runs (raw and the best cleaned tier) would remove, to first order, for what it "
               "costs." if informed else
               "Ranked by the bootstrap spread of the predicted gap between raw and cleaned data at their compute: "
               "where a run would narrow the verdict's interval most.")
        blocks += [("h3", "Next experiments"), ("p", why),
                   ("table", ["rank", "tier", "N (params)", "D (tokens)", f"FLOPs ({rec['flops_convention']})",
                              "epochs", "predicted loss [95%]",
                              "gap sd now -> after (nats)" if informed else "gap spread (nats)"], rows)]
    blocks.append(("p", f"Law {rec['law']}, {rec['n_samples']} bootstrap samples; raw pool {rec['raw_tokens']:.3g} "
                        f"tokens; repetition R_D* = {rec['r_star']:.3g}, {rec['r_star_source']}."))
    if rec.get("notes"):
        blocks.append(("list", list(rec["notes"])))
    return blocks


def _runs_blocks(sweep: Mapping[str, Any], runs: pl.DataFrame, from_store: bool) -> list[Block]:
    """Which runs the fit used and which it left out (excluded states, dropped rows, failed groups),
    and the seed noise where measured."""
    items: list[str] = []
    if runs.height:
        counts = runs.group_by("group").len().sort("group")
        per = dict(zip(counts["group"].to_list(), counts["len"].to_list()))
        where = "finished runs in the store" if from_store else "fitted runs carried by the fit"
        split = ", ".join(f"{g} {per[g]}" for g in _order([g for g in per if g is not None]))
        items.append(f"{runs.height} {where}" + (f" ({split})" if len(per) > 1 or "all" not in per else "") + ".")
    items += _excluded_sentences(sweep.get("excluded"))
    entries = _entries(sweep)
    dropped = next((e.get("dropped") for _, e in entries if e.get("dropped")), None) or {}
    for reason, k in sorted(dropped.items()):
        if not k:
            continue
        if reason == "nan":
            items.append(f"{_plural(int(k), 'row')} with NaN or infinite values {'was' if k == 1 else 'were'} dropped.")
        elif reason == "top_loss":
            items.append(f"The {_plural(int(k), 'highest-loss row')} {'was' if k == 1 else 'were'} dropped "
                         "(--drop-top-loss).")
        else:
            items.append(f"{_plural(int(k), 'row')} dropped ({reason}).")
    groups = sweep.get("groups") or {}
    failed = sorted(set(sweep.get("failed_groups") or []) | {g for g, e in groups.items()
                                                               if not _ok(e.get("parametric"))})
    if failed:
        why = "; ".join(f"{g}: {_err(groups.get(g, {}).get('parametric'))}" for g in failed)
        items.append(f"The fit failed for {_plural(len(failed), 'group')} ({why}): "
                     f"{'it is' if len(failed) == 1 else 'they are'} not in the tables and figures below.")
    items += _seed_noise_sentences(sweep)
    if not items:
        return []
    return [("h2", "Runs in the fit"), ("list", items)]


def _candidate_blocks(sweep: Mapping[str, Any]) -> list[Block]:
    """With `--law auto`: every candidate law's held-out error, objective, parameters and
    convergence, the chosen one marked."""
    blocks: list[Block] = []
    for g, e in _entries(sweep):
        cands = e.get("candidates")
        if not cands:
            continue
        where = "" if sweep.get("single_law") else f" ({g})"
        blocks.append(("h3", f"Law selection{where}"))
        blocks.append(("p", f"Candidate laws, fitted to the same runs and backtested at {e.get('horizon', 10):g}x the "
                            f"largest fitted compute; chosen: {e.get('chosen_by') or e.get('law')}."))
        blocks.append(("table", list(CANDIDATE_COLUMNS), candidate_rows(cands, str(e.get("law")))))
    return blocks


def _parameter_blocks(sweep: Mapping[str, Any], label: str) -> list[Block]:
    groups = sweep.get("groups") or {}
    names = _order(list(groups))
    blocks: list[Block] = [("h2", "Fitted parameters")]
    if not names:
        return blocks + [("p", "No fit was given: no parameters to show.")]
    ok = [g for g in names if _ok(groups[g].get("parametric"))]
    failed = [g for g in names if g not in ok]
    if ok:
        laws = sorted({groups[g]["parametric"].get("law", "?") for g in ok})
        objectives = sorted({str(groups[g]["parametric"].get("objective_text")) for g in ok
                             if groups[g]["parametric"].get("objective_text")})
        blocks.append(("p", f"{'One' if sweep.get('single_law') else 'Per-group'} parametric fit ({', '.join(laws)}"
                            + (f"; objective: {'; '.join(objectives)}" if objectives else "")
                            + "): the estimate with its 95% bootstrap interval in brackets, beside published fits "
                            "of the Chinchilla form L = E + A/N^alpha + B/D^beta. a_exponent and b_exponent are "
                            "the law's closed-form exponents (N_opt ∝ C^a, D_opt ∝ C^b for C ∝ N D); the "
                            f"allocation under this fit's convention ({label}) is in the tables below. Published "
                            "constants were fitted to other models, tokenizers and data; compare exponents, not "
                            "E, A, B."))
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
        blocks.append(("p", f"Group {g}: the parametric fit failed ({_err(groups[g].get('parametric'))}); "
                            "nothing is reported for it."))
    blocks += _candidate_blocks(sweep)
    # allocation exponents: the fit's (under its convention) against IsoFLOP approach 2
    rows = []
    for g in names:
        iso = groups[g].get("isoflop")
        par = groups[g].get("parametric")
        if _ok(par):
            ex = par.get("allocation_exponents")
            if isinstance(ex, Mapping) and ex.get("a") is not None:
                between = ex.get("between_flops") or []
                span = f" ({_num(between[0], 3)}–{_num(between[1], 3)})" if len(between) == 2 else ""
                p_a = _with_interval(ex.get("a"), ex.get("a_interval")) + span
                p_b = _with_interval(ex.get("b"), ex.get("b_interval"))
            else:
                p_a, p_b = "no allocation (law not in N and D)", "–"
        else:
            p_a, p_b = f"failed: {_err(par)}", ""
        if iso is None:
            i_a, i_b, flagged = "–", "–", "–"
        else:
            i_a = _with_interval(iso.get("a"), iso.get("a_interval")) if _ok(iso) else f"failed: {_err(iso)}"
            i_b = _with_interval(iso.get("b"), iso.get("b_interval")) if _ok(iso) else ""
            flagged = ", ".join(_num(f.get("budget") if isinstance(f, Mapping) else f)
                                for f in (iso.get("flagged") or [])) if _ok(iso) else ""
        rows.append([g, p_a, p_b, i_a, i_b, flagged or "none"])
    if any(r[1] != "–" for r in rows):
        blocks += [("h3", "Allocation exponents: parametric law against IsoFLOP approach 2"),
                   ("p", f"The parametric exponents are local: d log N_opt / d log C between the budgets in "
                         f"brackets (C in {label}), from the fit's own allocation under that convention."),
                   ("table", ["group", f"a (parametric, {label})", "b (parametric)", "a (isoflop)", "b (isoflop)",
                              "flagged budgets"], rows)]
    # allocations
    rows = []
    for g in names:
        par = groups[g].get("parametric")
        if not _ok(par):
            continue
        iv = par.get("intervals") or {}
        for a in par.get("allocations") or []:
            c = a["flops"]
            n_iv = a.get("n_opt_interval") or next(
                (v for k, v in iv.items() if k.startswith("N_opt@") and _close(k, c)), None)  # older fit.json
            d_iv = a.get("d_opt_interval") or next(
                (v for k, v in iv.items() if k.startswith("D_opt@") and _close(k, c)), None)
            rows.append([g, _num(c, 3), _num(a.get("multiple"), 3) if a.get("multiple") else "–",
                         _with_interval(a["n_opt"], n_iv), _with_interval(a["d_opt"], d_iv),
                         _num(a["d_opt"] / a["n_opt"], 3)])
    if rows:
        blocks += [("h3", "Parametric allocations"),
                   ("table", ["group", f"C ({label})", "x largest run", "N_opt [95%]", "D_opt [95%]",
                              "tokens / parameter"], rows)]
    # backtests
    rows = []
    for g in names:
        bt = groups[g].get("backtest")
        if bt is None:
            continue
        if _ok(bt):
            rows.append([g, bt.get("split", ""), f"{bt.get('n_fit')} / {bt.get('n_heldout')}",
                         f"{100 * bt['mean_abs_rel_error']:.2f}%" if bt.get("mean_abs_rel_error") is not None else "–",
                         f"{100 * bt['max_abs_rel_error']:.2f}%" if bt.get("max_abs_rel_error") is not None else "–",
                         f"{100 * bt['bias']:+.2f}%" if bt.get("bias") is not None else "–", bt.get("verdict", "")])
        else:
            rows.append([g, "", "", "", "", "", f"backtest failed: {_err(bt)}"])
    if rows:
        blocks += [("h3", "Backtest: fit on the smaller runs, predict the largest"),
                   ("table", ["group", f"split (flops in {label})", "fit / held out", "mean |rel. err.|", "max",
                              "bias", "verdict"], rows)]
    # quality law
    q = sweep.get("quality")
    if q is not None and not sweep.get("single_law"):
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


def _error_model_blocks(sweep: Mapping[str, Any], runs: pl.DataFrame, label: str) -> list[Block]:
    """One sentence per law on its prediction intervals' error model, and its rolling backtest cuts."""
    sentences: list[str] = []
    rows: list[list[str]] = []
    views = {v.label: v for v in F.law_views(sweep)}
    for g, e in _entries(sweep):
        em = e.get("error_model")
        if not isinstance(em, Mapping) or em.get("sigma_run") is None:
            continue
        where = f"{e.get('law')}" if sweep.get("single_law") else f"{g} ({e.get('law')})"
        text = f"{where}: {error_model_text(em)}."
        view = views.get(g)
        if view is not None:
            check = F.interval_check(view, sweep, runs)
            if check["total"]:
                text += (f" {check['inside']} of {check['total']} held-out backtest runs fall inside the 95% "
                         "envelope (the multiplier is calibrated on the rolling backtests, so about 95% is "
                         "expected by construction; benchmarks/heldout_scale.py scores the intervals on runs "
                         "that no fit saw).")
        sentences.append(text)
        for b in em.get("backtests") or []:
            cut = (f"C <= {_num(b.get('cut'), 3)}" if b.get("axis") == "compute" else
                   f"N <= {_num(b.get('cut'), 3)}" if b.get("axis") == "size" else str(b.get("cut")))
            rows.append([g, cut, f"{b.get('n_fit')} / {b.get('n_heldout')}", _pct(b.get("mean_abs_error_pct")),
                         "–" if b.get("bias_pct") is None else f"{b['bias_pct']:+.2f}%",
                         _num(b.get("max_distance"), 3), _num(b.get("max_reach"), 3), str(b.get("converged"))])
    if not sentences:
        return [("p", "No error model in the fit: the prediction intervals are the bootstrap's alone.")]
    blocks: list[Block] = [
        ("p", "The 95% prediction interval of a loss comes from the errors of rolling backtests (refits below "
              "compute and size cuts, scored on the runs above) at a comparable reach beyond their fitted runs: "
              "a split-conformal quantile of their residuals scaled by the run scatter and a misspecification "
              "term that grows with the reach, never narrower than the bootstrap's own interval, and widened "
              "by the candidate laws' disagreement under --law auto (docs/design.md §5.7):"),
        ("list", sentences)]
    if rows:
        blocks += [("h3", "Rolling backtests"),
                   ("table", ["group", f"cut (C in {label})", "fit / held out", "mean |error|", "bias",
                              "max distance", "max reach (spans)", "converged"], rows)]
    return blocks


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


def _repeats(runs: pl.DataFrame) -> int:
    """The most runs of one configuration (differing only in seed)."""
    if runs.height == 0:
        return 0
    if runs["cluster"].null_count() < runs.height:
        return int(runs.drop_nulls("cluster").group_by("cluster").len()["len"].max())
    return int(runs.group_by(["group", "N", "D"]).agg(pl.col("seed").n_unique().alias("k"))["k"].max())


def _caveats(runs: pl.DataFrame, sweep: Mapping[str, Any], target_flops: float | None, label: str) -> list[str]:
    out: list[str] = []
    groups = sweep.get("groups") or {}
    c = runs["C"].drop_nulls().to_numpy() if runs.height else []
    if len(c):
        c_lo, c_hi = float(min(c)), float(max(c))
        out.append(f"The fits cover runs from {c_lo:.3g} to {c_hi:.3g} {label} (a factor of {c_hi / c_lo:.3g}); "
                   "everything outside that range is an extrapolation of the fitted law.")
        tops = [a["flops"] for e in groups.values() if _ok(e.get("parametric")) for a in e["parametric"].get("allocations") or []]
        if target_flops:
            out.append(f"The recommendation's budget, {target_flops:.3g} {label}, is {target_flops / c_hi:.3g}x the "
                       "largest run: its allocation is read off the fitted law that far beyond the data.")
        if tops:
            out.append(f"The allocation table reaches {max(tops):.3g} {label}, {max(tops) / c_hi:.3g}x the largest "
                       "run; its bootstrap bands widen with the extrapolation but hold parameter uncertainty only "
                       "(the prediction intervals of losses add the extrapolation error).")
    else:
        out.append("No runs: the fitted compute range is unknown.")
    for g in _order(list(groups)):
        e = groups[g]
        bt = e.get("backtest")
        if _ok(bt) and bt.get("mean_abs_rel_error") is not None:
            out.append(f"{g}: the backtest (fit on {bt.get('split', '?')}) predicts the {bt.get('n_heldout')} "
                       f"held-out largest runs with mean |relative error| {100 * bt['mean_abs_rel_error']:.2f}% "
                       f"(max {100 * (bt.get('max_abs_rel_error') or 0):.2f}%)"
                       + ("" if bt.get("converged", True) else "; the backtest fit did not converge") + ".")
        for key in ("parametric", "isoflop", "backtest"):
            if key in e and not _ok(e.get(key)):
                out.append(f"{g}: the {key} fit failed ({_err(e.get(key))}).")
        par = e.get("parametric")
        if _ok(par) and not par.get("converged", True):
            out.append(f"{g}: the parametric fit did not converge (stopped: {par.get('stopped', '?')}); "
                       "its estimate and intervals are less trustworthy.")
        if _ok(par) and par.get("flat_directions"):
            out.append(f"{g}: the parametric fit has flat directions ({', '.join(map(str, par['flat_directions']))}): "
                       "those parameters are not identified by these runs.")
        em = par.get("error_model") if _ok(par) else None
        if isinstance(em, Mapping) and em.get("sigma_run") is not None and not em.get("calibrated"):
            out.append(f"{g}: the prediction intervals' multiplier is not calibrated: {em.get('reason') or 'too few backtest residuals'}.")
        iso = e.get("isoflop")
        if _ok(iso):
            bad = [b for b in iso.get("budgets") or [] if b.get("status") != "ok"]
            for b in bad:
                out.append(f"{g}: IsoFLOP budget {b.get('budget', 0):.3g} {label} is flagged '{b.get('status')}'"
                           + (f" ({b['note']})" if b.get("note") else "") + "; it is left out of the exponent fit.")
            if iso.get("flagged") and not bad:
                out.append(f"{g}: flagged IsoFLOP budgets: {iso['flagged']}.")
    q = sweep.get("quality")
    if _ok(q) and not q.get("converged", True):
        out.append(f"The quality fit did not converge (stopped: {q.get('stopped', '?')}).")
    measured = any(isinstance(e.get("seed_noise"), Mapping) for _, e in _entries(sweep))
    if runs.height:
        k_max = _repeats(runs)
        if measured or k_max > 1:
            out.append(f"Up to {k_max} seeds per configuration; the scatter between seeds is part of the fitted noise "
                       "(the run scatter of the error model).")
        else:
            out.append("One seed per configuration: seed-to-seed noise is not measured, and the intervals "
                       "include it only through the scatter of the fitted points.")
    return out


@dataclass(frozen=True)
class StoreRuns:
    """A store's runs and loss curves as `scaler.store.load_runs` and `load_curves` give them
    (`scaler.session.store_runs` reads them); `error`: why the store could not be read."""

    root: str
    runs: pl.DataFrame
    curves: pl.DataFrame
    error: str | None = None


def _runs(store: StoreRuns, eval_set: str = "heldout", compute: Any = None, run_ids: Sequence[str] | None = None
          ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The store's runs and curves; only `run_ids` (the fit's own runs) when given, so runs of
    another data build or spec version sharing the store are not drawn."""
    if store.error is not None:
        return F.runs_table(pl.DataFrame()), pl.DataFrame()
    raw, curves = store.runs, store.curves
    if run_ids is not None and "run_id" in raw.columns:
        raw = raw.filter(pl.col("run_id").is_in(list(run_ids)))
        if "run_id" in curves.columns:
            curves = curves.filter(pl.col("run_id").is_in(list(run_ids)))
    return F.runs_table(raw, eval_set, compute), curves


# --------------------------------------------------------------------------------------------
# entry points


def render_report(
    store: StoreRuns | None,
    fit_json: dict | None,
    data_report: dict | None,
    out_dir: Path,
    title: str,
    recommendation: Mapping[str, Any] | None = None,
    spec_text: str | None = None,
    *,
    target_flops: float | None = None,
    next_run: Mapping[str, Any] | None = None,
    advance_steps: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Path]:
    """Draw every figure and write report.md and index.html under `out_dir`.

    `store` is the sweep's store, read (`scaler.session.store_runs`: its runs and loss curves); None
    builds the report from the fit alone, its runs being the fit JSON's top-level "data" (a store
    without finished runs falls back to them too). `fit_json` is a sweep fit or one law's entry (None or {}: no fit).
    `target_flops` (optional) is the budget a recommendation is for: the caveats say how far it
    extrapolates; `next_run` ({"n", "d" and/or "flops", optional "group"}) marks the proposed next
    run on the iso-loss contours. `recommendation` (a `scaler.recommend.Recommendation.to_json()`)
    opens the report: the answer in one paragraph, the options and the next experiments as tables.
    `advance_steps` (the store's `scaler advance` step files) follow it: every prediction made
    before its run trained, against the loss the run reached.
    Returns {figure key: png path for every figure drawn,
    "markdown": report.md, "html": index.html}; a figure that does not apply or fails to draw is
    a one-line note in the report (never a crash)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sweep = SweepFit(fit_json or {}).sweep_json()
    compute = SweepFit(sweep).compute()
    eval_set = (sweep.get("key") or {}).get("eval_set", "heldout")  # the fit's eval set (fit.json key)
    curves = pl.DataFrame()
    runs = F.runs_from_fit(None)
    if store is not None:
        runs, curves = _runs(store, eval_set, compute, (sweep.get("data") or {}).get("run_id"))
    from_store = runs.height > 0
    if not from_store:
        runs = F.runs_from_fit(sweep)
    convention = compute.convention if compute is not None else ("flops_v1" if from_store else None)
    label = F.flops_label(convention)
    drawers = {
        "loss_curves": lambda p: F.loss_curves(curves, runs, p, eval_set=eval_set, flops=label),
        "isoflop": lambda p: F.isoflop_curves(runs, sweep, p, flops=label),
        "allocation": lambda p: F.allocation(sweep, runs, p, target_flops=target_flops),
        "isoloss": lambda p: F.isoloss(sweep, runs, p, target_flops=target_flops, next_run=next_run),
        "predicted": lambda p: F.predicted_vs_observed(sweep, runs, p),
        "calibration": lambda p: F.calibration(sweep, runs, p),
        "frontier": lambda p: F.frontier_and_kappa(runs, sweep, p, flops=label),
        "crossover": lambda p: F.crossover(recommendation, p, sweep.get("largest_run_flops"), flops=label),
        "data": lambda p: F.data_report(data_report, p),
    }
    paths: dict[str, Path] = {}
    notes: dict[str, str] = {}
    if not recommendation:
        del drawers["crossover"]  # a figure of the recommendation: no section without one
    for key, draw in drawers.items():
        target = out_dir / FIGURES[key][0]
        try:
            paths[key] = draw(target)
        except F.NotDrawn as why:
            F.plt.close("all")
            notes[key] = f"Not drawn: {why}."
        except Exception as err:  # noqa: BLE001 - one bad figure must not lose the report
            F.plt.close("all")
            notes[key] = f"Figure not drawn: {type(err).__name__}: {err}."
        if key not in paths and target.exists():
            target.unlink()  # a stale figure of an earlier report must not be taken for this one's

    groups = sweep.get("groups") or {}
    blocks: list[Block] = [("h1", title)]
    if recommendation:
        blocks += [("h2", "The answer"), *_answer_blocks(recommendation)]
    blocks += _advance_blocks(advance_steps)
    if store is not None:
        summary = [f"Store: {store.root} ({_plural(runs.height if from_store else 0, 'finished run')}"
                   + (f"; {_plural(len(set(runs['group'].to_list())), 'data option')}" if from_store else "") + ")."]
        if not from_store and runs.height:
            summary.append(f"The store has no finished run: the {_plural(runs.height, 'fitted run')} the fit carries "
                           "are shown instead.")
    else:
        summary = [f"Runs: the {_plural(runs.height, 'fitted run')} the fit carries"
                   + (f" ({_plural(len(set(runs['group'].to_list())), 'group')})" if runs.height else "")
                   + "; no store (no loss curves)."]
    if sweep.get("single_law"):
        entry = groups["all"]["parametric"]
        summary.append(f"Fit: one {entry.get('law')} law over {sweep.get('n_points')} points from "
                       f"{sweep.get('source') or 'a table'}; compute convention {convention}.")
    elif groups or sweep.get("source"):
        summary.append(f"Fit: {sweep.get('source')}, {sweep.get('n_points')} points, groups: "
                       f"{', '.join(_order(list(groups))) or 'none'}"
                       + (f"; compute convention {convention}" if convention else "") + ".")
    else:
        summary.append("No fit was given.")
    if store is not None and store.error:
        summary.append(f"The store could not be read: {store.error}.")
    if recommendation:
        blocks.append(("h2", "The sweep and its fit"))
    blocks.append(("p", " ".join(summary)))
    blocks += _runs_blocks(sweep, runs, from_store)
    blocks += [("h2", "Caveats"), ("list", _caveats(runs, sweep, target_flops, label), "caveats")]
    for key, (_, section, caption) in FIGURES.items():
        if key not in drawers:
            continue
        blocks.append(("h2", section))
        if key in paths:
            blocks.append(("img", section, paths[key], caption.replace("{flops}", label)))
        else:
            blocks.append(("p", notes.get(key, "Not drawn.")))
        if key == "predicted":
            blocks += _parameter_blocks(sweep, label)
        if key == "calibration":
            blocks += _error_model_blocks(sweep, runs, label)
        if key == "data":
            blocks += _data_blocks(data_report)[1:]
    if spec_text:
        blocks += [("h2", "Sweep spec"), ("pre", spec_text)]

    md_path, html_path = out_dir / "report.md", out_dir / "index.html"
    md_path.write_text(_md(blocks, out_dir), encoding="utf-8")
    html_path.write_text(_html(blocks, title), encoding="utf-8")
    return {**paths, "markdown": md_path, "html": html_path}


def _advance_blocks(steps: Sequence[Mapping[str, Any]]) -> list[Block]:
    """Each finished advance step: its predictions (made before the runs trained) against the runs."""
    blocks: list[Block] = []
    for step in steps:
        if step.get("scores") is None:
            continue
        scores = {s["run_id"]: s for s in step["scores"]}
        rows = []
        for p in step["runs"]:
            s = scores.get(p["run_id"], {})
            observed = s.get("observed_loss")
            rows.append([p["tier"], f"{p['n_params']:,.0f}", f"{p['tokens']:.3g}", f"{p['extrapolation']:.3g}x",
                         f"{p['predicted_loss']:.4f} [{p['interval'][0]:.4f}, {p['interval'][1]:.4f}]",
                         "-" if observed is None else f"{observed:.4f}",
                         "-" if s.get("error_pct") is None else f"{s['error_pct']:+.2f}%",
                         {True: "yes", False: "no", None: "-"}[s.get("inside")]])
        before, after = step["before"], step["after"]
        inside = [s["inside"] for s in step["scores"] if s.get("inside") is not None]
        text = (f"Step {step['step']}: {len(step['runs'])} runs beyond the {len(step['fitted_run_ids'])} fitted, "
                f"predicted by the fit before they trained; {sum(inside)} of {len(inside)} landed inside their 95% "
                f"prediction intervals. The verdict at {step['target_flops']:.3g} FLOPs moved from "
                f"{before['verdict_text']} ({before['probability']:.0%} of bootstrap samples; gap "
                f"{before['gap']:+.4f} nats) to {after['verdict_text']} ({after['probability']:.0%}; gap "
                f"{after['gap']:+.4f} nats) once they were fitted too.")
        blocks += [("h3", f"Predictions checked: advance step {step['step']}"), ("p", text),
                   ("table", ["tier", "N (params)", "D (tokens)", "compute / largest fitted", "predicted [95%]",
                              "observed", "error", "inside"], rows)]
    return [("h2", "Predictions checked on larger runs"), *blocks] if blocks else []


def build_report_from_fit(
    fit_json: dict,
    out_dir: Path,
    title: str,
    recommendation: Mapping[str, Any] | None = None,
    *,
    target_flops: float | None = None,
    next_run: Mapping[str, Any] | None = None,
    data_report: dict | None = None,
    spec_text: str | None = None,
) -> dict[str, Path]:
    """The report of a fit JSON alone (`scaler report --fit FIT.json`): `render_report` without a
    store, the runs being the fit's top-level "data". Same return value."""
    return render_report(None, fit_json, data_report, out_dir, title, recommendation, spec_text,
                        target_flops=target_flops, next_run=next_run)
