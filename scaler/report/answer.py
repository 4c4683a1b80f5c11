"""The report's opening: the answer of a recommendation and the predictions checked since.

`answer_blocks(rec)` renders a `scaler.decision.Recommendation.to_json()`: a headline (the
verdict with its probability, budget and extrapolation; the gap between the best cleaned tier and
raw with its interval, and the crossover or its absence with the share of samples that flip),
the options and the next experiments as tables, and the recommendation's notes.
`advance_blocks(steps)` renders the store's finished `scaler advance` steps: every prediction
made before its run trained, against the loss the run reached, and how the verdict moved.
`task_blocks(rec, task)` renders the same question asked of the code task (the loss of HumanEval's
solutions given their prompts) and says whether the two verdicts agree.
All return `scaler.report.text.Block`s; nothing here reads a fit or draws.
Details: docs/design.md §5.9 (the report) and §5.10 (the loop that checks itself).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from scaler.report.text import Block

__all__ = ["answer_blocks", "advance_blocks", "task_blocks", "verdicts_agree"]

SPEND_WORDS = {"size": "model size", "cleaning": "cleaning"}  # decision.SPEND (report may not import decision)


def _loss_iv(iv: Any) -> str:
    """A loss interval to 4 decimals, "[lo, hi]"; "" without one."""
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


def answer_blocks(rec: Mapping[str, Any]) -> list[Block]:
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


def advance_blocks(steps: Sequence[Mapping[str, Any]]) -> list[Block]:
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



def verdicts_agree(rec: Mapping[str, Any], task: Mapping[str, Any]) -> str:
    """How the code task's verdict compares with the held-out one: "agree" (same winner),
    "same kind" (the same kind of spend, another cleaned tier), or "disagree"."""
    if rec["winner"] == task["winner"]:
        return "agree"
    return "same kind" if rec["verdict"] == task["verdict"] else "disagree"


def task_blocks(rec: Mapping[str, Any], task: Mapping[str, Any]) -> list[Block]:
    """The code task's answer beside the held-out one: both verdicts, their probabilities and gaps,
    each option's predicted solution loss, and whether they agree (module docstring)."""
    agreement = verdicts_agree(rec, task)
    said = {"agree": "The two verdicts agree", "same kind": "The two verdicts pick the same kind of spend but "
            "different tiers", "disagree": "The two verdicts disagree"}[agreement]
    unsettled = [r["eval_set"] for r in (rec, task) if r.get("best_clean") and r["gap_interval"][0] < 0 < r["gap_interval"][1]]
    text = (f"{said}: on {rec.get('eval_set', 'heldout')} loss, {rec['verdict_text']} ({rec['probability']:.0%} of "
            f"samples); on the code task ({task['eval_set']}: the loss of HumanEval's canonical solutions given their "
            f"prompts, only the solutions' tokens counted), {task['verdict_text']} ({task['probability']:.0%}).")
    if unsettled:
        text += f" The gap's interval spans 0 on {' and '.join(unsettled)}: there the runs do not settle the verdict."
    rows = [[o["name"], f"{o['n_params']:.3g}", f"{o['tokens']:.3g}", f"{o['loss']:.4f} {_loss_iv(o['loss_interval'])}",
             f"{o['win_share']:.0%}"] if o["feasible"] else [o["name"], "–", "–", f"infeasible: {o['reason']}", "–"]
            for o in task["options"]]
    gap = ""
    if task.get("best_clean") is not None:
        lo, hi = task["gap_interval"]
        gap = (f" Gap {task['raw_option']} - {task['best_clean']}: {task['gap']:+.4f} nats per solution token "
               f"[{lo:+.4f}, {hi:+.4f}].")
    return [("p", text),
            ("table", ["option", "N (params)", "D (tokens)", "predicted solution loss [95%]", "best in (samples)"], rows),
            ("p", f"Law {task['law']}, {task['n_samples']} bootstrap samples, at the same budget "
                  f"({task['budget_flops']:.3g} FLOPs).{gap}")]
