"""Which law `--law auto` keeps (docs/design.md §5.1): forward-chained backtests scored at the
extrapolation that is asked for, a one-standard-error rule, and laws the runs do not identify refused.

Every candidate's rolling backtests (fitting/predict.py: refits below compute and size cuts, scored on
the runs above) give each held-out run's |log residual| and its distance from its cut's fit side.
A candidate's score is their mean, weighted towards the distance asked for (`horizon`, compute over
the largest fitted run's) and towards mature cuts, as the intervals weigh them. Candidates are
compared in pairs on the same held-out runs of the same cuts; the standard error of a paired
difference treats each cut as one cluster (its runs share one refit). The rule (Breiman et al.'s
one standard error, on paired differences): the simplest candidate whose score is within one
standard error of the best candidate's is chosen, so a law with more parameters wins only by
beating the simpler one by more than the backtests' own noise. Before scoring, a candidate whose
fit the runs cannot identify is refused with its reason: a Hessian with a flat direction, a break
point outside the fitted sizes, an exponent at the edge of EXPONENT_RANGE. Chinchilla's law is
never refused (it is the fallback); its problems are listed as warnings. The laws within a factor
ENSEMBLE_WINDOW of the best score form an ensemble whose disagreement widens the intervals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from scaler.fitting.inputs import FitData
from scaler.fitting.predict import Backtests, FittedRange, locality

__all__ = ["AUTO_CANDIDATES", "DEFAULT_HORIZON", "EXPONENT_RANGE", "candidate_laws", "identification_problem",
           "backtests_of", "horizon_reach", "horizon_score", "paired_gap", "choose", "ensemble", "candidate_rows", "CANDIDATE_COLUMNS"]

AUTO_CANDIDATES = ("chinchilla", "kaplan", "overtrain", "broken")  # and data_constrained with U, per-group E with groups
DEFAULT_HORIZON = 10.0  # the extrapolation (compute / the largest fitted run's) a choice is scored at
EXPONENT_RANGE = (0.01, 3.0)  # an exponent outside it sits at the edge of what a fit can identify
EXPONENTS = {"chinchilla": ("alpha", "beta"), "broken": ("alpha", "beta", "alpha_large_N"),
             "kaplan": ("alpha_N", "alpha_D"), "overtrain": ("c",), "data_constrained": ("alpha", "beta")}
FALLBACK = "chinchilla"
ENSEMBLE_WINDOW = 2.0  # Occam's window: laws whose backtest score is within this factor of the best's


def candidate_laws(data: FitData, n_groups: int) -> list[str]:
    """The forms `auto` compares on `data`: AUTO_CANDIDATES, the data-constrained law when the runs
    record unique tokens, Chinchilla with a per-group E when they span groups."""
    names = list(AUTO_CANDIDATES)
    if "U" in data.columns:
        names.append("data_constrained")
    if n_groups >= 2:
        names.append("chinchilla_group_e")
    return names


def identification_problem(entry: Mapping[str, Any], data: FitData) -> str | None:
    """Why the runs do not identify this fit, or None."""
    law = entry["law"]
    derived = entry.get("derived") or {}
    if entry.get("flat_directions"):
        return f"flat direction the runs cannot pin ({'; '.join(entry['flat_directions'])})"
    if law == "broken":
        n = data.columns["N"]
        n_b = derived.get("N_b", math.nan)
        if not (np.min(n) <= n_b <= np.max(n)):
            return f"its break N_b = {n_b:.3g} lies outside the fitted sizes ({np.min(n):.3g} to {np.max(n):.3g})"
    low, high = EXPONENT_RANGE
    for name in EXPONENTS.get(law, ()):
        value = abs(float(derived.get(name, math.nan)))
        if not (low < value < high):
            return f"exponent {name} = {value:.3g} at the edge of ({low:g}, {high:g})"
    return None


def backtests_of(entry: Mapping[str, Any]) -> Backtests | None:
    model = entry.get("error_model")
    if not isinstance(model, Mapping) or not model.get("residuals", {}).get("residual"):
        return None
    return Backtests.from_json(model.get("backtests", []), model["residuals"])


def horizon_reach(data: FitData, horizon: float) -> float:
    """`horizon` (compute over the largest fitted run's) as a reach in fitted spans of compute."""
    flops = data.columns["C"]
    return float(FittedRange.of(data).reach(0.0, 0.0, horizon * float(np.max(flops))))


def _keyed(bt: Backtests) -> dict[tuple[str, float, int], tuple[float, float, int, float]]:
    """(axis, cut, row) -> (|residual|, weight before locality, cut index, reach) per held-out run."""
    out = {}
    for r, w, c, row, x in zip(bt.residual, bt.weight, bt.cut, bt.row, bt.reach, strict=True):
        summary = bt.summaries[int(c)]
        out[(summary["axis"], float(summary["cut"]), int(row))] = (abs(float(r)), float(w), int(c), float(x))
    return out


def _clustered_mean(values: np.ndarray, weights: np.ndarray, clusters: np.ndarray) -> tuple[float, float]:
    """The weighted mean and its cluster-robust standard error (each cluster one unit)."""
    mean = float(np.sum(weights * values) / np.sum(weights))
    labels = np.unique(clusters)
    if len(labels) < 2:
        return mean, math.inf
    totals = np.array([np.sum(weights[clusters == k] * (values[clusters == k] - mean)) for k in labels])
    k = len(labels)
    se = math.sqrt(k / (k - 1) * float(np.sum(totals**2))) / float(np.sum(weights))
    return mean, se


def horizon_score(bt: Backtests, target: float) -> tuple[float, float]:
    """Mean |log residual| (%) of the backtests weighted at reach `target`, and its standard error."""
    weights = bt.weight * locality(bt.reach, target)
    mean, se = _clustered_mean(np.abs(bt.residual), weights, bt.cut)
    return 100 * mean, 100 * se


def paired_gap(simple: Backtests, best: Backtests, target: float) -> tuple[float, float, int]:
    """How much worse `simple` scores than `best` on the held-out runs both scored (percentage
    points of mean |log residual| weighted at reach `target`), its standard error, and the runs
    compared."""
    a, b = _keyed(simple), _keyed(best)
    keys = [k for k in a if k in b]
    if not keys:
        return math.nan, math.inf, 0
    diff = np.array([a[k][0] - b[k][0] for k in keys])
    weights = np.array([a[k][1] for k in keys]) * locality(np.array([a[k][3] for k in keys]), target)
    clusters = np.array([a[k][2] for k in keys])
    mean, se = _clustered_mean(diff, weights, clusters)
    return 100 * mean, 100 * se, len(keys)


def choose(entries: Mapping[str, Mapping[str, Any]], data: FitData, horizon: float = DEFAULT_HORIZON
           ) -> tuple[str, list[dict[str, Any]], str]:
    """The chosen law's name, one row per candidate (score, standard error, gap to the best,
    refusal), and the reason in words. `entries` maps each fitted candidate to its fit (with its
    error model's backtests), in the order of simplicity ties."""
    target = horizon_reach(data, horizon)
    rows: list[dict[str, Any]] = []
    usable: dict[str, Backtests] = {}
    for name, entry in entries.items():
        row: dict[str, Any] = {"law": name, "n_params": len(entry["params"]), "params": entry["params"],
                               "converged": entry["converged"], "stopped": entry["stopped"],
                               "objective": entry["objective"]}
        bt = backtests_of(entry)
        if bt is not None:
            row["score_pct"], row["score_se_pct"] = horizon_score(bt, target)
        problem = identification_problem(entry, data)
        if problem and name != FALLBACK:
            row["refused"] = problem
        elif problem:
            row["warning"] = problem
        elif bt is None:
            row["refused"] = "no backtest could be run (too few runs below every cut)"
        if bt is not None and "refused" not in row:
            usable[name] = bt
        rows.append(row)
    if not usable:
        raise ValueError("no candidate law could be fitted and backtested: "
                         + "; ".join(f"{r['law']}: {r.get('refused', r.get('error'))}" for r in rows))
    by_row = {r["law"]: r for r in rows}
    best = min(usable, key=lambda k: by_row[k]["score_pct"])
    simplest_first = sorted(usable, key=lambda k: (by_row[k]["n_params"], list(entries).index(k)))
    chosen = best
    for name in simplest_first:
        gap, se, _ = paired_gap(usable[name], usable[best], target) if name != best else (0.0, 0.0, 0)
        by_row[name]["gap_to_best_pct"], by_row[name]["gap_se_pct"] = gap, se
        if name == best or (math.isfinite(gap) and gap <= se):
            chosen = name
            break
    for name in simplest_first:  # the gaps of the rest, for the table
        if "gap_to_best_pct" not in by_row[name]:
            by_row[name]["gap_to_best_pct"], by_row[name]["gap_se_pct"], _ = paired_gap(usable[name], usable[best], target)
    return chosen, rows, _reason(chosen, best, by_row, horizon)


def _reason(chosen: str, best: str, rows: Mapping[str, Mapping[str, Any]], horizon: float) -> str:
    at = f"backtests weighted at {horizon:g}x the largest fitted compute"
    c = rows[chosen]
    if chosen == best:
        simpler = [r for r in rows.values() if r["n_params"] < c["n_params"] and "gap_to_best_pct" in r
                   and "refused" not in r]
        beaten = "; ".join(f"{r['law']} {r['gap_to_best_pct']:+.2f} +- {r['gap_se_pct']:.2f} points" for r in simpler)
        return (f"{chosen}: the lowest error ({c['score_pct']:.2f}%, {at})"
                + (f", and every simpler law is worse by more than one standard error ({beaten})" if beaten else ""))
    b = rows[best]
    return (f"{chosen}: the simplest law within one standard error of the best ({best} {b['score_pct']:.2f}%, "
            f"{chosen} {c['score_pct']:.2f}%: {c['gap_to_best_pct']:+.2f} +- {c['gap_se_pct']:.2f} points; {at})")


def ensemble(rows: list[Mapping[str, Any]], fits: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The laws whose disagreement widens the intervals: every candidate not refused whose backtest
    score is within ENSEMBLE_WINDOW of the best (Occam's window, Madigan and Raftery 1994), weighted
    by 1 / score^2 (its inverse mean-square error, roughly)."""
    scored = [r for r in rows if "refused" not in r and r.get("score_pct") is not None]
    best = min(r["score_pct"] for r in scored)
    return [{"law": r["law"], "spec": fits[r["law"]]["spec"], "theta": fits[r["law"]]["theta"],
             "weight": 1.0 / max(r["score_pct"], 1e-6) ** 2} for r in scored
            if r["score_pct"] <= ENSEMBLE_WINDOW * best]


CANDIDATE_COLUMNS = ("law", "backtest error at the horizon", "gap to the best", "parameters", "converged", "status")


def candidate_rows(candidates: list[Mapping[str, Any]], chosen: str) -> list[list[str]]:
    """One row per candidate law, for the CLI and the report (CANDIDATE_COLUMNS)."""
    rows = []
    for c in candidates:
        name = str(c.get("law")) + (" (chosen)" if c.get("law") == chosen else "")
        if c.get("error"):
            rows.append([name, "-", "-", "-", "-", f"failed: {c['error']}"])
            continue
        score = "-" if c.get("score_pct") is None else f"{c['score_pct']:.2f}% +- {c['score_se_pct']:.2f}"
        gap = "-" if c.get("gap_to_best_pct") is None else f"{c['gap_to_best_pct']:+.2f} +- {c['gap_se_pct']:.2f}"
        status = f"refused: {c['refused']}" if c.get("refused") else (f"warning: {c['warning']}" if c.get("warning") else "ok")
        rows.append([name, score, gap, str(c.get("n_params")), str(c.get("converged")), status])
    return rows
