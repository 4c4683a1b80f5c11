"""`scaler advance`: the loop that checks itself (docs/design.md §5, "Advance").

A recommendation extrapolates; a lab should see its predictions fail or hold before it spends. One
step of the loop:

1. fit the sweep's runs and those of every earlier step (the spec's [fit] settings) and recommend
   at the target budget (the caller's; the demo's is 100x the largest fitted run);
2. choose the step's runs: the recommendation's next experiments at `reach` multiples of the
   largest fitted run's compute (default 4x and 8x: far enough that the law has to extrapolate,
   near enough to train here), ranked by the bootstrap spread of the predicted gap between raw
   and the best cleaned tier (`scaler.recommend`); the top `pairs` pairs (raw and the best cleaned
   tier, each at its own predicted optimal size), snapped to runs the sweep can train
   (`scaler.sweep.spec.extra_run`: the family's nearest shape, whole steps, the sweep's schedule
   and pools); with `budget_hours`, a pair whose estimated time does not fit what is left is
   skipped (estimated from the sweep's own runs' measured throughput);
3. predict each run's final loss with the law behind the verdict (the quality law; a single
   tier's own law without one) and its 95% prediction interval (bootstrap, run scatter and
   misspecification at that extrapolation distance: `scaler.fitting.predict`), and write them to
   `<store>/advance-<k>.json` before anything trains;
4. train them (the caller's engine);
5. refit with them and recommend again at the same target; score every prediction (observed
   loss, error in nats and percent, inside its interval or not, z on the log scale) and say how
   the verdict and its probability moved; write the step again, complete.

A step file without scores is an unfinished step: the next `advance` trains and scores its runs
with the predictions it already holds. It never predicts again: a prediction made after its run
trained would prove nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scaler.config import ConfigError
from scaler.errors import ParameterError
from scaler.fitting.inputs import json_safe
from scaler.fitting.predict import Z95
from scaler.store import Store

STEP_FILE = "advance-{k}.json"
DEFAULT_REACH = (4.0, 8.0)

Fit = Callable[[set[str]], dict[str, Any]]  # run ids -> the sweep fit of those runs (fit.json's form)
Recommend = Callable[[dict[str, Any], float, Sequence[float] | None], Any]  # (fit, budget, experiment FLOPs) -> Recommendation
Train = Callable[[list[Any]], None]  # SweepRuns -> trained into the store (or failed)


def read_steps(store: Store) -> list[dict[str, Any]]:
    """Every step file of the store, in order (advance-1.json, advance-2.json, ...)."""
    steps, k = [], 1
    while (step := store.read_sweep_json(STEP_FILE.format(k=k))) is not None:
        steps.append(step)
        k += 1
    return steps


def advanced_run_ids(store: Store) -> set[str]:
    """The runs of every finished step: they join the sweep's own runs in its fit."""
    return {r["run_id"] for s in read_steps(store) if s.get("scores") is not None for r in s["runs"]}


def verdict_summary(rec: Any) -> dict[str, Any]:
    """What a step compares before and after: the verdict, its probabilities, the gap and the budget."""
    lo, hi = rec.gap_interval
    return json_safe({"verdict": rec.verdict, "verdict_text": rec.verdict_text, "winner": rec.winner,
                      "best_clean": rec.best_clean, "probability": rec.probability,
                      "probability_kind": rec.probability_kind, "gap": rec.gap, "gap_interval": [lo, hi],
                      "gap_sd": (hi - lo) / (2 * Z95) if math.isfinite(hi - lo) else None,
                      "budget_flops": rec.budget_flops, "extrapolation": rec.extrapolation,
                      "crossover_flops": (rec.crossover or {}).get("flops")})


@dataclass(frozen=True)
class Candidate:
    """One run a step may train: a next experiment snapped to a real run, with its estimated time."""

    run: Any  # SweepRun
    tier: str
    rank: int
    seconds: float | None


def choose(candidates: Sequence[Candidate], pairs: int, budget_hours: float | None, workers: int = 1
           ) -> list[Candidate]:
    """The top `pairs` ranks whose runs fit, in order, within `budget_hours` (runs of one rank train
    side by side on `workers`); a rank that does not fit is skipped, the next is tried."""
    chosen: list[Candidate] = []
    left = math.inf if budget_hours is None else budget_hours * 3600.0
    for rank in sorted({c.rank for c in candidates}):
        group = [c for c in candidates if c.rank == rank]
        if budget_hours is not None and any(c.seconds is None for c in group):
            raise ParameterError("{budget_hours}: no time estimate for the next experiments (the sweep has no finished "
                                 "run to measure its throughput on)", "budget_hours")
        need = sum(c.seconds or 0.0 for c in group) / max(1, min(workers, len(group)))
        if need > left:
            continue
        chosen += group
        left -= need
        if len({c.rank for c in chosen}) == pairs:
            break
    return chosen


def predictions(fit_json: Mapping[str, Any], runs: Sequence[Any], pools: Mapping[str, float]) -> list[dict[str, Any]]:
    """Each run's predicted final loss and 95% prediction interval from the law behind the verdict."""
    from scaler.fitting.result import predict

    quality = fit_json.get("quality")
    entry = quality if isinstance(quality, Mapping) and "error" not in quality else fit_json  # else a tier's own law
    tiers = [next(iter(r.config.data.mix)) for r in runs]
    n = [float(_n_params(r)) for r in runs]
    d = [float(r.config.train.tokens) for r in runs]
    constants = {f"U_{t}": float(u) for t, u in pools.items()}
    points = predict(entry, n, d, groups=tiers, constants=constants)["points"]
    out = []
    for r, tier, p in zip(runs, tiers, points, strict=True):
        out.append({"run_id": r.run_id, "name": r.config.name, "tier": tier, "n_params": p["n"], "tokens": p["d"],
                    "flops": p["flops"], "extrapolation": p["extrapolation"], "epochs": p["d"] / pools[tier],
                    "law": p["law"], "predicted_loss": p["loss"], "interval": p["interval"],
                    "config": r.config.model_dump(mode="json")})
    return out


def _n_params(run: Any) -> int:
    from scaler.model.family import count_params

    return count_params(run.config.model)


def score(predicted: Sequence[Mapping[str, Any]], observed: Mapping[str, float | None]) -> list[dict[str, Any]]:
    """Each prediction against its run's observed final loss: error (nats, %), inside the 95%
    interval, and z = log(observed / predicted) / sd, the sd read off the interval's half width."""
    out = []
    for p in predicted:
        loss = observed.get(p["run_id"])
        row: dict[str, Any] = {"run_id": p["run_id"], "tier": p["tier"], "predicted_loss": p["predicted_loss"],
                               "interval": p["interval"], "observed_loss": loss}
        if loss is None or not math.isfinite(loss):
            out.append({**row, "error_nats": None, "error_pct": None, "inside": None, "z": None})
            continue
        lo, hi = p["interval"]
        sd = (math.log(hi) - math.log(lo)) / (2 * Z95) if hi > lo > 0 else None
        out.append({**row, "error_nats": loss - p["predicted_loss"], "error_pct": 100 * (loss / p["predicted_loss"] - 1),
                    "inside": bool(lo <= loss <= hi),
                    "z": math.log(loss / p["predicted_loss"]) / sd if sd else None})
    return out


def advance_step(store: Store, sweep_ids: set[str], *, fit: Fit, recommend: Recommend, train: Train,
                 make_run: Callable[[float, float, str], Any], pools: Mapping[str, float], target_flops: float | None,
                 eval_set: str = "heldout", reach: Sequence[float] = DEFAULT_REACH, pairs: int = 1, budget_hours: float | None = None,
                 workers: int = 1, seconds_of: Callable[[Any], float | None] = lambda run: None,
                 progress: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """One step of the loop (module docstring), or the unfinished one completed. `sweep_ids`: the
    sweep's own runs; `make_run(target_params, budget_flops, tier)` a SweepRun; `pools`: every
    tier's pool (tokens); `target_flops` None: 100x the largest fitted run."""
    steps = read_steps(store)
    if steps and steps[-1].get("scores") is None:
        step = steps[-1]
        progress(f"step {step['step']} is unfinished: training its {len(step['runs'])} runs, predicted "
                 f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(step['created']))}")
    else:
        step = _plan_step(store, len(steps) + 1, sweep_ids, fit=fit, recommend=recommend, make_run=make_run,
                          pools=pools, target_flops=target_flops, eval_set=eval_set, reach=reach, pairs=pairs,
                          budget_hours=budget_hours, workers=workers, seconds_of=seconds_of)
        store.write_sweep_json(STEP_FILE.format(k=step["step"]), step)  # the predictions, before any run trains
        progress(f"step {step['step']}: {len(step['runs'])} runs predicted and recorded in "
                 f"{STEP_FILE.format(k=step['step'])} before training")
    from scaler.config import RunConfig
    from scaler.sweep.spec import SweepRun

    runs = [SweepRun(p["run_id"], RunConfig.model_validate(p["config"]), None, {p["tier"]: 1.0}, 1.0)
            for p in step["runs"]]
    train(runs)
    observed = _final_losses(store, [r.run_id for r in runs], step["eval_set"])
    fitted_ids = set(step["fitted_run_ids"]) | {r.run_id for r in runs if observed.get(r.run_id) is not None}
    after_fit = fit(fitted_ids)
    after = recommend(after_fit, step["target_flops"], None)
    step = {**step, "scores": score(step["runs"], observed), "after": verdict_summary(after),
            "after_largest_run_flops": after_fit["largest_run_flops"], "finished": time.time()}
    store.write_sweep_json(STEP_FILE.format(k=step["step"]), step)
    return step


def check_options(reach: Sequence[float], pairs: int, budget_hours: float | None) -> None:
    """The step's options, checked before anything is fitted or trained."""
    if pairs < 1:
        raise ParameterError(f"{{pairs}} {pairs}: expected 1 or more", "pairs")
    if not reach or any(not (math.isfinite(m) and m > 1) for m in reach):
        raise ParameterError(f"{{reach}} {','.join(f'{m:g}' for m in reach)}: expected multiples of the largest fitted run "
                             "above 1, e.g. 4,8", "reach")
    if budget_hours is not None and not (math.isfinite(budget_hours) and budget_hours > 0):
        raise ParameterError(f"{{budget_hours}} {budget_hours:g}: expected a positive number of hours", "budget_hours")


def _plan_step(store: Store, k: int, sweep_ids: set[str], *, fit: Fit, recommend: Recommend,
               make_run: Callable[[float, float, str], Any], pools: Mapping[str, float], target_flops: float | None,
               eval_set: str, reach: Sequence[float], pairs: int, budget_hours: float | None, workers: int,
               seconds_of: Callable[[Any], float | None]) -> dict[str, Any]:
    check_options(reach, pairs, budget_hours)
    fitted_ids = sweep_ids | advanced_run_ids(store)
    fit_json = fit(fitted_ids)
    largest = float(fit_json["largest_run_flops"])
    target = float(target_flops) if target_flops else 100.0 * largest
    before = recommend(fit_json, target, [m * largest for m in reach])
    if not before.experiments:
        raise ConfigError("the fit gives no next experiments: advance needs runs on raw and a cleaned tier")
    candidates = []
    for e in before.experiments:
        run = make_run(e.n_params, e.flops, e.tier)
        candidates.append(Candidate(run, e.tier, e.rank, seconds_of(run)))
    chosen = choose(candidates, pairs, budget_hours, workers)
    if not chosen:
        need = min(sum(c.seconds or 0.0 for c in candidates if c.rank == r) for r in {c.rank for c in candidates})
        raise ParameterError(f"{{budget_hours}} {budget_hours:g}: the cheapest pair of next experiments needs about "
                             f"{need / 3600:.2g} h (estimated from the sweep's runs)", "budget_hours")
    runs = [c.run for c in chosen]
    expected = [e for e in before.experiments if e.rank in {c.rank for c in chosen}]
    return json_safe({
        "step": k, "created": time.time(), "target_flops": target, "reach": list(reach), "pairs": pairs,
        "budget_hours": budget_hours, "eval_set": eval_set,
        "fitted_run_ids": sorted(fitted_ids), "largest_run_flops": largest, "before": verdict_summary(before),
        "ranks": sorted({c.rank for c in chosen}), "estimated_seconds": [c.seconds for c in chosen],
        "expected_gap_sd_after": min((e.gap_sd_after for e in expected if e.gap_sd_after is not None), default=None),
        "runs": predictions(fit_json, runs, pools), "scores": None, "after": None, "finished": None,
    })


def _final_losses(store: Store, run_ids: Sequence[str], eval_set: str) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for run_id in run_ids:
        status = store.read_status(run_id) or {}
        value = (status.get("final") or {}).get(f"eval_{eval_set}_loss") if status.get("state") == "done" else None
        out[run_id] = float(value) if value is not None and np.isfinite(value) else None
    return out


def table_lines(step: Mapping[str, Any]) -> list[str]:
    """The step as text: one line per run (predicted [95%] against observed), then the verdict's move."""
    reach = [p["extrapolation"] for p in step["runs"]]
    lines = [f"advance step {step['step']}: {len(step['runs'])} runs at {min(reach):.3g}-{max(reach):.3g}x the largest "
             "fitted run's compute, predicted before they trained"]
    lines.append(f"  {'tier':<8} {'N':>9} {'D':>10} {'predicted [95%]':>26} {'observed':>9} {'error':>8}  inside")
    scores = {s["run_id"]: s for s in (step.get("scores") or [])}
    for p in step["runs"]:
        s = scores.get(p["run_id"], {})
        lo, hi = p["interval"]
        observed = f"{s['observed_loss']:.4f}" if s.get("observed_loss") is not None else "-"
        error = f"{s['error_pct']:+.2f}%" if s.get("error_pct") is not None else "-"
        inside = {True: "yes", False: "NO", None: "-"}[s.get("inside")]
        lines.append(f"  {p['tier']:<8} {p['n_params']:>9,.0f} {p['tokens']:>10.3g} "
                     f"{p['predicted_loss']:>8.4f} [{lo:.4f}, {hi:.4f}] {observed:>9} {error:>8}  {inside}")
    inside = [s["inside"] for s in scores.values() if s.get("inside") is not None]
    if inside:
        lines.append(f"  {sum(inside)} of {len(inside)} observed losses inside their 95% prediction intervals")
    before, after = step.get("before") or {}, step.get("after")
    if after:
        lines.append(f"  verdict at {step['target_flops']:.3g} FLOPs: {before['verdict_text']} "
                     f"({before['probability']:.0%}) -> {after['verdict_text']} ({after['probability']:.0%}); "
                     f"gap raw - best cleaned {before['gap']:+.4f} -> {after['gap']:+.4f} nats")
        if before.get("gap_sd") and after.get("gap_sd"):
            expected = step.get("expected_gap_sd_after")
            lines.append(f"  the gap's bootstrap sd went from {before['gap_sd']:.4f} to {after['gap_sd']:.4f} nats"
                         + (f" (the runs were expected to bring it to {expected:.4f})" if expected else ""))
    return lines
