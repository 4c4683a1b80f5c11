"""The report's "Fitted parameters" section: what each group's fit estimated, as tables.

`parameter_blocks(sweep, label)` gives, from a sweep fit (`SweepFit.sweep_json`): the parametric
estimates with their 95% bootstrap intervals beside published Chinchilla fits (`REFERENCES`),
the failed groups, the candidate laws of `--law auto` (`candidate_blocks`), the allocation
exponents of the parametric law against IsoFLOP approach 2, the parametric allocations at 1x,
10x and 100x the largest run, the backtests, and the quality law's effective-data multipliers.
Every FLOP column names the fit's convention (`label`, e.g. "FLOPs (flops_v1)"). The blocks are
`scaler.report.text.Block`s; nothing here draws.
Details: docs/design.md §5.9 (the report), §5.4 (allocation) and §5.6 (backtests).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from scaler.fitting.choose import CANDIDATE_COLUMNS, candidate_rows
from scaler.fitting.laws import allocation_exponents
from scaler.report.frames import fitted_entries, order, succeeded
from scaler.report.text import Block, error_text, num, with_interval

__all__ = ["REFERENCES", "parameter_blocks", "candidate_blocks"]

# Published Chinchilla-law fits (L = E + A / N^alpha + B / D^beta).
REFERENCES: dict[str, dict[str, float]] = {
    "Hoffmann et al. 2022": {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28},
    "Besiroglu et al. 2024": {"E": 1.82, "A": 482.0, "B": 2085.0, "alpha": 0.35, "beta": 0.37},
}
for _ref in REFERENCES.values():
    _ref["a_exponent"], _ref["b_exponent"] = allocation_exponents(_ref["alpha"], _ref["beta"])  # N_opt ∝ C^a, D_opt ∝ C^b


def parameter_blocks(sweep: Mapping[str, Any], label: str) -> list[Block]:
    """The whole section: the parameter table, failed groups, candidates, allocation exponents,
    allocations, backtests and the quality law, each where the fit has it."""
    groups = sweep.get("groups") or {}
    names = order(list(groups))
    blocks: list[Block] = [("h2", "Fitted parameters")]
    if not names:
        return blocks + [("p", "No fit was given: no parameters to show.")]
    ok = [g for g in names if succeeded(groups[g].get("parametric"))]
    if ok:
        blocks += _parameter_table(sweep, ok, label)
    for g in names:
        if g not in ok:
            blocks.append(("p", f"Group {g}: the parametric fit failed ({error_text(groups[g].get('parametric'))}); "
                                "nothing is reported for it."))
    blocks += candidate_blocks(sweep)
    blocks += _exponent_blocks(groups, names, label)
    blocks += _allocation_blocks(groups, names, label)
    blocks += _backtest_blocks(groups, names, label)
    return blocks + _quality_blocks(sweep)


def _parameter_table(sweep: Mapping[str, Any], ok: Sequence[str], label: str) -> list[Block]:
    """The groups `ok` (parametric fit succeeded): every derived parameter with its interval, beside
    the published fits, then convergence and the number of points."""
    groups = sweep["groups"]
    laws = sorted({groups[g]["parametric"].get("law", "?") for g in ok})
    objectives = sorted({str(groups[g]["parametric"].get("objective_text")) for g in ok
                         if groups[g]["parametric"].get("objective_text")})
    text = (f"{'One' if sweep.get('single_law') else 'Per-group'} parametric fit ({', '.join(laws)}"
            + (f"; objective: {'; '.join(objectives)}" if objectives else "")
            + "): the estimate with its 95% bootstrap interval in brackets, beside published fits "
            "of the Chinchilla form L = E + A/N^alpha + B/D^beta. a_exponent and b_exponent are "
            "the law's closed-form exponents (N_opt ∝ C^a, D_opt ∝ C^b for C ∝ N D); the "
            f"allocation under this fit's convention ({label}) is in the tables below. Published "
            "constants were fitted to other models, tokenizers and data; compare exponents, not "
            "E, A, B.")
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
            row.append(with_interval((p.get("derived") or {}).get(k), (p.get("intervals") or {}).get(k)))
        row += [num(REFERENCES[r].get(k), 3) if k in REFERENCES[r] else "–" for r in refs]
        rows.append(row)
    rows.append(["converged"] + [str(groups[g]["parametric"].get("converged")) + f" ({groups[g]['parametric'].get('stopped', '')})"
                                 for g in ok] + ["", ""])
    rows.append(["points"] + [num(groups[g]["parametric"].get("n_points")) for g in ok] + ["", ""])
    return [("p", text), ("table", ["parameter", *ok, *refs], rows)]


def candidate_blocks(sweep: Mapping[str, Any]) -> list[Block]:
    """With `--law auto`: every candidate law's held-out error, objective, parameters and
    convergence, the chosen one marked."""
    blocks: list[Block] = []
    for g, e in fitted_entries(sweep):
        cands = e.get("candidates")
        if not cands:
            continue
        where = "" if sweep.get("single_law") else f" ({g})"
        blocks.append(("h3", f"Law selection{where}"))
        blocks.append(("p", f"Candidate laws, fitted to the same runs and backtested at {e.get('horizon', 10):g}x the "
                            f"largest fitted compute; chosen: {e.get('chosen_by') or e.get('law')}."))
        blocks.append(("table", list(CANDIDATE_COLUMNS), candidate_rows(cands, str(e.get("law")))))
    return blocks


def _exponent_row(g: str, entry: Mapping[str, Any]) -> list[str]:
    """One group's allocation exponents: the parametric law's (local, between two budgets) and
    IsoFLOP approach 2's, with the budgets IsoFLOP flagged."""
    iso = entry.get("isoflop")
    par = entry.get("parametric")
    if succeeded(par):
        ex = par.get("allocation_exponents")
        if isinstance(ex, Mapping) and ex.get("a") is not None:
            between = ex.get("between_flops") or []
            span = f" ({num(between[0], 3)}–{num(between[1], 3)})" if len(between) == 2 else ""
            p_a = with_interval(ex.get("a"), ex.get("a_interval")) + span
            p_b = with_interval(ex.get("b"), ex.get("b_interval"))
        else:
            p_a, p_b = "no allocation (law not in N and D)", "–"
    else:
        p_a, p_b = f"failed: {error_text(par)}", ""
    if iso is None:
        i_a, i_b, flagged = "–", "–", "–"
    else:
        i_a = with_interval(iso.get("a"), iso.get("a_interval")) if succeeded(iso) else f"failed: {error_text(iso)}"
        i_b = with_interval(iso.get("b"), iso.get("b_interval")) if succeeded(iso) else ""
        flagged = ", ".join(num(f.get("budget") if isinstance(f, Mapping) else f)
                            for f in (iso.get("flagged") or [])) if succeeded(iso) else ""
    return [g, p_a, p_b, i_a, i_b, flagged or "none"]


def _exponent_blocks(groups: Mapping[str, Any], names: Sequence[str], label: str) -> list[Block]:
    """Allocation exponents: the fit's (under its convention) against IsoFLOP approach 2."""
    rows = [_exponent_row(g, groups[g]) for g in names]
    if not any(r[1] != "–" for r in rows):
        return []
    return [("h3", "Allocation exponents: parametric law against IsoFLOP approach 2"),
            ("p", f"The parametric exponents are local: d log N_opt / d log C between the budgets in "
                  f"brackets (C in {label}), from the fit's own allocation under that convention."),
            ("table", ["group", f"a (parametric, {label})", "b (parametric)", "a (isoflop)", "b (isoflop)",
                       "flagged budgets"], rows)]


def _allocation_blocks(groups: Mapping[str, Any], names: Sequence[str], label: str) -> list[Block]:
    """The parametric allocations (N_opt, D_opt with intervals) at the fit's budgets."""
    rows = []
    for g in names:
        par = groups[g].get("parametric")
        if not succeeded(par):
            continue
        iv = par.get("intervals") or {}
        for a in par.get("allocations") or []:
            c = a["flops"]
            n_iv = a.get("n_opt_interval") or next(
                (v for k, v in iv.items() if k.startswith("N_opt@") and _close(k, c)), None)  # older fit.json
            d_iv = a.get("d_opt_interval") or next(
                (v for k, v in iv.items() if k.startswith("D_opt@") and _close(k, c)), None)
            rows.append([g, num(c, 3), num(a.get("multiple"), 3) if a.get("multiple") else "–",
                         with_interval(a["n_opt"], n_iv), with_interval(a["d_opt"], d_iv),
                         num(a["d_opt"] / a["n_opt"], 3)])
    if not rows:
        return []
    return [("h3", "Parametric allocations"),
            ("table", ["group", f"C ({label})", "x largest run", "N_opt [95%]", "D_opt [95%]",
                       "tokens / parameter"], rows)]


def _close(key: str, c: float) -> bool:
    """Whether an "X@<flops>" key of an older fit.json names the budget `c` (within 1%)."""
    try:
        return abs(math.log(float(key.split("@", 1)[1]) / c)) < 0.01
    except (ValueError, ZeroDivisionError):
        return False


def _backtest_blocks(groups: Mapping[str, Any], names: Sequence[str], label: str) -> list[Block]:
    """Per group, the backtest: fit on the smaller runs, predict the largest."""
    rows = []
    for g in names:
        bt = groups[g].get("backtest")
        if bt is None:
            continue
        if succeeded(bt):
            rows.append([g, bt.get("split", ""), f"{bt.get('n_fit')} / {bt.get('n_heldout')}",
                         f"{100 * bt['mean_abs_rel_error']:.2f}%" if bt.get("mean_abs_rel_error") is not None else "–",
                         f"{100 * bt['max_abs_rel_error']:.2f}%" if bt.get("max_abs_rel_error") is not None else "–",
                         f"{100 * bt['bias']:+.2f}%" if bt.get("bias") is not None else "–", bt.get("verdict", "")])
        else:
            rows.append([g, "", "", "", "", "", f"backtest failed: {error_text(bt)}"])
    if not rows:
        return []
    return [("h3", "Backtest: fit on the smaller runs, predict the largest"),
            ("table", ["group", f"split (flops in {label})", "fit / held out", "mean |rel. err.|", "max",
                       "bias", "verdict"], rows)]


def _quality_blocks(sweep: Mapping[str, Any]) -> list[Block]:
    """The quality law over all tiers (effective-data multipliers kappa_t), or why it failed."""
    q = sweep.get("quality")
    if q is None or sweep.get("single_law"):
        return []
    blocks: list[Block] = [("h3", "Quality law (effective-data multipliers)")]
    if not succeeded(q):
        return blocks + [("p", f"The quality fit failed: {error_text(q)}.")]
    derived, iv = q.get("derived") or {}, q.get("intervals") or {}
    rows = [[k, with_interval(v, iv.get(k))] for k, v in derived.items() if "@" not in k and k != "log_G"]
    rows.append(["converged", f"{q.get('converged')} ({q.get('stopped', '')})"])
    reference = (q.get("spec") or {}).get("reference") or q.get("reference")
    named = f"the reference tier {reference} (kappa_{reference} = 1)" if reference else "the reference tier"
    return blocks + [("p", f"One {q.get('law')} fit over all tiers: a tier's token counts as kappa_t tokens of "
                           f"{named}."),
                     ("table", ["parameter", "value [95%]"], rows)] + _repetition_blocks(sweep.get("repetition"))


def _repetition_blocks(rep: Mapping[str, Any] | None) -> list[Block]:
    """Shared against per-tier R_D* (scaler/fitting/repetition.py): both fits' values and the test's verdict."""
    if not rep:
        return []
    rows = [["shared (every tier)", f"{rep['shared']['R_D_star']:.3g}"]]
    rows += [[f"{tier} alone", f"{r:.3g}"] for tier, r in (rep.get("per_tier") or {}).items()]
    return [("h3", "Repetition per tier (R_D*)"),
            ("p", f"R_D* fitted shared and per tier (least squares on log loss). {rep['note'][0].upper()}"
                  f"{rep['note'][1:]}; the quality law above uses "
                  f"{'one per tier' if rep['verdict'] == 'per_tier' else 'the shared value'}."),
            ("table", ["R_D*", "value"], rows)]
