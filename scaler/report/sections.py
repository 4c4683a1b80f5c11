"""The report's sections on the sweep and its fit, as `scaler.report.text.Block`s.

`summary_text` says where the runs come from (a store, or the fit JSON's own rows) and what was
fitted; `runs_blocks` which runs the fit used and which it left out (excluded states, dropped
rows, failed groups) and the seed noise where measured; `error_model_blocks` the prediction
intervals' error model per law with its rolling backtest cuts; `data_blocks` the data build's
tiers, steps and removal reasons; `caveats` the fitted compute range and how far the budgets
extrapolate, backtest errors, failed or unconverged fits, flagged IsoFLOP budgets and seeds.
The fitted parameters are `scaler.report.parameters`, the answer `scaler.report.answer`.
Details: docs/design.md §5.9 (the report).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from scaler.fitting.predict import error_model_text
from scaler.report.frames import fitted_entries, interval_check, law_views, order, succeeded, tokenizer_tiers
from scaler.report.text import Block, error_text, num, pct, plural

__all__ = ["summary_text", "runs_blocks", "error_model_blocks", "data_blocks", "caveats"]

STATE_WORDS = {"diverged": ("diverged", "diverged"), "failed": ("failed", "failed"),  # (one run, several)
               "running": ("was still running", "were still running"),
               "pending": ("had not started", "had not started"),
               "outside the sweep": ("belongs to another data build or spec version",
                                     "belong to another data build or spec version")}
MAX_IDS = 20  # run ids listed per state before "... and k more"


def summary_text(sweep: Mapping[str, Any], runs: pl.DataFrame, from_store: bool, convention: str | None,
                 store_root: str | None = None, store_error: str | None = None) -> str:
    """The paragraph under "The sweep and its fit": where the runs come from (the store at
    `store_root`, or the fit's own rows when there is no store or it has no finished run), what
    was fitted under which compute convention, and why the store could not be read."""
    groups = sweep.get("groups") or {}
    if store_root is not None:
        summary = [f"Store: {store_root} ({plural(runs.height if from_store else 0, 'finished run')}"
                   + (f"; {plural(len(set(runs['group'].to_list())), 'data option')}" if from_store else "") + ")."]
        if not from_store and runs.height:
            summary.append(f"The store has no finished run: the {plural(runs.height, 'fitted run')} the fit carries "
                           "are shown instead.")
    else:
        summary = [f"Runs: the {plural(runs.height, 'fitted run')} the fit carries"
                   + (f" ({plural(len(set(runs['group'].to_list())), 'group')})" if runs.height else "")
                   + "; no store (no loss curves)."]
    if sweep.get("single_law"):
        entry = groups["all"]["parametric"]
        summary.append(f"Fit: one {entry.get('law')} law over {sweep.get('n_points')} points from "
                       f"{sweep.get('source') or 'a table'}; compute convention {convention}.")
    elif groups or sweep.get("source"):
        summary.append(f"Fit: {sweep.get('source')}, {sweep.get('n_points')} points, groups: "
                       f"{', '.join(order(list(groups))) or 'none'}"
                       + (f"; compute convention {convention}" if convention else "") + ".")
    else:
        summary.append("No fit was given.")
    if store_root is not None and store_error:
        summary.append(f"The store could not be read: {store_error}.")
    return " ".join(summary)


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
        out.append(f"{plural(k, 'run')} {verb} and {'is' if k == 1 else 'are'} not in the fit: {shown}.")
    return out


def _seed_noise_sentences(sweep: Mapping[str, Any]) -> list[str]:
    """Per fitted group whose runs repeat seeds: how much the seeds scatter the loss."""
    out = []
    for g, e in fitted_entries(sweep):
        sn = e.get("seed_noise")
        if isinstance(sn, Mapping) and sn.get("sd_log") is not None:
            where = "" if sweep.get("single_law") else f" ({g})"
            out.append(f"Seed noise{where}: the runs that differ only in seed scatter by {100 * sn['sd_log']:.2f}% "
                       f"in loss (sd of log loss; {num(sn.get('sd_nats'), 3)} nats), from "
                       f"{plural(int(sn.get('n_configs') or 0), 'configuration')} run with several seeds "
                       f"({plural(int(sn.get('n_runs') or 0), 'run')}).")
    return out


def runs_blocks(sweep: Mapping[str, Any], runs: pl.DataFrame, from_store: bool) -> list[Block]:
    """Which runs the fit used and which it left out (excluded states, dropped rows, failed groups),
    and the seed noise where measured."""
    items: list[str] = []
    if runs.height:
        counts = runs.group_by("group").len().sort("group")
        per = dict(zip(counts["group"].to_list(), counts["len"].to_list()))
        where = "finished runs in the store" if from_store else "fitted runs carried by the fit"
        split = ", ".join(f"{g} {per[g]}" for g in order([g for g in per if g is not None]))
        items.append(f"{runs.height} {where}" + (f" ({split})" if len(per) > 1 or "all" not in per else "") + ".")
    items += _excluded_sentences(sweep.get("excluded"))
    entries = fitted_entries(sweep)
    dropped = next((e.get("dropped") for _, e in entries if e.get("dropped")), None) or {}
    for reason, k in sorted(dropped.items()):
        if not k:
            continue
        if reason == "nan":
            items.append(f"{plural(int(k), 'row')} with NaN or infinite values {'was' if k == 1 else 'were'} dropped.")
        elif reason == "top_loss":
            items.append(f"The {plural(int(k), 'highest-loss row')} {'was' if k == 1 else 'were'} dropped "
                         "(--drop-top-loss).")
        else:
            items.append(f"{plural(int(k), 'row')} dropped ({reason}).")
    groups = sweep.get("groups") or {}
    failed = sorted(set(sweep.get("failed_groups") or []) | {g for g, e in groups.items()
                                                               if not succeeded(e.get("parametric"))})
    if failed:
        why = "; ".join(f"{g}: {error_text(groups.get(g, {}).get('parametric'))}" for g in failed)
        items.append(f"The fit failed for {plural(len(failed), 'group')} ({why}): "
                     f"{'it is' if len(failed) == 1 else 'they are'} not in the tables and figures below.")
    items += _seed_noise_sentences(sweep)
    if not items:
        return []
    return [("h2", "Runs in the fit"), ("list", items)]


def error_model_blocks(sweep: Mapping[str, Any], runs: pl.DataFrame, label: str) -> list[Block]:
    """One sentence per law on its prediction intervals' error model, and its rolling backtest cuts."""
    sentences: list[str] = []
    rows: list[list[str]] = []
    views = {v.label: v for v in law_views(sweep)}
    for g, e in fitted_entries(sweep):
        em = e.get("error_model")
        if not isinstance(em, Mapping) or em.get("sigma_run") is None:
            continue
        where = f"{e.get('law')}" if sweep.get("single_law") else f"{g} ({e.get('law')})"
        text = f"{where}: {error_model_text(em)}."
        view = views.get(g)
        if view is not None:
            check = interval_check(view, sweep, runs)
            if check["total"]:
                text += (f" {check['inside']} of {check['total']} held-out backtest runs fall inside the 95% "
                         "envelope (the multiplier is calibrated on the rolling backtests, so about 95% is "
                         "expected by construction; benchmarks/heldout_scale.py scores the intervals on runs "
                         "that no fit saw).")
        sentences.append(text)
        for b in em.get("backtests") or []:
            cut = (f"C <= {num(b.get('cut'), 3)}" if b.get("axis") == "compute" else
                   f"N <= {num(b.get('cut'), 3)}" if b.get("axis") == "size" else str(b.get("cut")))
            rows.append([g, cut, f"{b.get('n_fit')} / {b.get('n_heldout')}", pct(b.get("mean_abs_error_pct")),
                         "–" if b.get("bias_pct") is None else f"{b['bias_pct']:+.2f}%",
                         num(b.get("max_distance"), 3), num(b.get("max_reach"), 3), str(b.get("converged"))])
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


def data_blocks(report: Mapping[str, Any] | None) -> list[Block]:
    """The data build: its tiers (base, steps, documents, bytes, training tokens, yield), build
    steps and removal reasons; a note when no report was given."""
    blocks: list[Block] = [("h2", "Data build")]
    if not report:
        return blocks + [("p", "No data build report was given: tier sizes, yields and removals are not shown.")]
    tiers = report.get("tiers") or {}
    tok_tiers = tokenizer_tiers(report)
    rows = []
    for t, v in tiers.items():
        rows.append([t, v.get("base") or "–", " → ".join(v.get("steps") or []) or "–", num(v.get("documents")),
                     num(v.get("bytes")), num((tok_tiers.get(t) or {}).get("tokens") or v.get("bytes_train_tokens")),
                     f"{100 * v['yield_bytes']:.1f}%" if v.get("yield_bytes") is not None else "–"])
    blocks += [("h3", "Tiers"), ("table", ["tier", "base", "steps", "documents", "bytes", "training tokens", "byte yield"], rows)]
    steps = report.get("steps") or []
    rows = [[s.get("tier", ""), s.get("step", ""), f"{num(s.get('documents_in'))} → {num(s.get('documents_out'))}",
             f"{num(s.get('bytes_in'))} → {num(s.get('bytes_out'))}", num(s.get("seconds"), 3), num(s.get("flops"), 3)]
            for s in steps]
    if rows:
        blocks += [("h3", "Build steps"), ("table", ["tier", "step", "documents", "bytes", "seconds", "FLOPs"], rows)]
    rows = [[s.get("tier", ""), s.get("step", ""), reason, num(r.get("documents")), num(r.get("bytes"))]
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


def caveats(runs: pl.DataFrame, sweep: Mapping[str, Any], target_flops: float | None, label: str) -> list[str]:
    """Every caveat of the report: how far the fitted range reaches, then per group, the quality
    fit, and the seeds."""
    out = _range_caveats(runs, sweep, target_flops, label)
    groups = sweep.get("groups") or {}
    for g in order(list(groups)):
        out += _group_caveats(g, groups[g], label)
    q = sweep.get("quality")
    if succeeded(q) and not q.get("converged", True):
        out.append(f"The quality fit did not converge (stopped: {q.get('stopped', '?')}).")
    measured = any(isinstance(e.get("seed_noise"), Mapping) for _, e in fitted_entries(sweep))
    if runs.height:
        k_max = _repeats(runs)
        if measured or k_max > 1:
            out.append(f"Up to {k_max} seeds per configuration; the scatter between seeds is part of the fitted noise "
                       "(the run scatter of the error model).")
        else:
            out.append("One seed per configuration: seed-to-seed noise is not measured, and the intervals "
                       "include it only through the scatter of the fitted points.")
    return out


def _range_caveats(runs: pl.DataFrame, sweep: Mapping[str, Any], target_flops: float | None, label: str) -> list[str]:
    """The compute range of the runs, and how far beyond it the budget and the allocations reach."""
    groups = sweep.get("groups") or {}
    c = runs["C"].drop_nulls().to_numpy() if runs.height else []
    if not len(c):
        return ["No runs: the fitted compute range is unknown."]
    c_lo, c_hi = float(min(c)), float(max(c))
    out = [f"The fits cover runs from {c_lo:.3g} to {c_hi:.3g} {label} (a factor of {c_hi / c_lo:.3g}); "
           "everything outside that range is an extrapolation of the fitted law."]
    tops = [a["flops"] for e in groups.values() if succeeded(e.get("parametric"))
            for a in e["parametric"].get("allocations") or []]
    if target_flops:
        out.append(f"The recommendation's budget, {target_flops:.3g} {label}, is {target_flops / c_hi:.3g}x the "
                   "largest run: its allocation is read off the fitted law that far beyond the data.")
    if tops:
        out.append(f"The allocation table reaches {max(tops):.3g} {label}, {max(tops) / c_hi:.3g}x the largest "
                   "run; its bootstrap bands widen with the extrapolation but hold parameter uncertainty only "
                   "(the prediction intervals of losses add the extrapolation error).")
    return out


def _group_caveats(g: str, e: Mapping[str, Any], label: str) -> list[str]:
    """One group's caveats: its backtest error, failed or unconverged fits, flat directions, an
    uncalibrated error model, flagged IsoFLOP budgets."""
    out: list[str] = []
    bt = e.get("backtest")
    if succeeded(bt) and bt.get("mean_abs_rel_error") is not None:
        out.append(f"{g}: the backtest (fit on {bt.get('split', '?')}) predicts the {bt.get('n_heldout')} "
                   f"held-out largest runs with mean |relative error| {100 * bt['mean_abs_rel_error']:.2f}% "
                   f"(max {100 * (bt.get('max_abs_rel_error') or 0):.2f}%)"
                   + ("" if bt.get("converged", True) else "; the backtest fit did not converge") + ".")
    for key in ("parametric", "isoflop", "backtest"):
        if key in e and not succeeded(e.get(key)):
            out.append(f"{g}: the {key} fit failed ({error_text(e.get(key))}).")
    par = e.get("parametric")
    if succeeded(par) and not par.get("converged", True):
        out.append(f"{g}: the parametric fit did not converge (stopped: {par.get('stopped', '?')}); "
                   "its estimate and intervals are less trustworthy.")
    if succeeded(par) and par.get("flat_directions"):
        out.append(f"{g}: the parametric fit has flat directions ({', '.join(map(str, par['flat_directions']))}): "
                   "those parameters are not identified by these runs.")
    em = par.get("error_model") if succeeded(par) else None
    if isinstance(em, Mapping) and em.get("sigma_run") is not None and not em.get("calibrated"):
        out.append(f"{g}: the prediction intervals' multiplier is not calibrated: "
                   f"{em.get('reason') or 'too few backtest residuals'}.")
    iso = e.get("isoflop")
    if succeeded(iso):
        bad = [b for b in iso.get("budgets") or [] if b.get("status") != "ok"]
        for b in bad:
            out.append(f"{g}: IsoFLOP budget {b.get('budget', 0):.3g} {label} is flagged '{b.get('status')}'"
                       + (f" ({b['note']})" if b.get("note") else "") + "; it is left out of the exponent fit.")
        if iso.get("flagged") and not bad:
            out.append(f"{g}: flagged IsoFLOP budgets: {iso['flagged']}.")
    return out
