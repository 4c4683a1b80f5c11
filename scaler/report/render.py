"""The sweep report: every figure, a Markdown file and a self-contained HTML page.

`render_report(store, fit_json, data_report, out_dir, title, ...)` draws the figures of
`scaler.report.figures` (`FIGURES`: file, section and caption of each) and writes `report.md` and
`index.html` from one list of blocks (`scaler.report.text`), so both say the same thing. The runs
come from the store when one is given (`StoreRuns`, read by `scaler.session.store_runs`: nothing
here opens a store), else from the fit JSON's top-level "data": `build_report_from_fit(fit_json,
out_dir, title)` (what `scaler report --fit FIT.json` calls). The sections are built by
`scaler.report.answer`, `.sections` and `.parameters`; a figure that does not apply, or fails to
draw, is a one-line note instead. Details: docs/design.md §5.9 (the report).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from scaler.fitting.result import SweepFit
from scaler.report import figures as F
from scaler.report.answer import advance_blocks, answer_blocks, task_blocks
from scaler.report.frames import flops_label, runs_from_fit, runs_table
from scaler.report.parameters import parameter_blocks
from scaler.report.sections import caveats, data_blocks, error_model_blocks, runs_blocks, summary_text
from scaler.report.text import Block, to_html, to_markdown

__all__ = ["StoreRuns", "render_report", "build_report_from_fit", "FIGURES"]

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


@dataclass(frozen=True)
class StoreRuns:
    """A store's runs and loss curves as `scaler.store.load_runs` and `load_curves` give them
    (`scaler.session.store_runs` reads them); `error`: why the store could not be read."""

    root: str
    runs: pl.DataFrame
    curves: pl.DataFrame
    error: str | None = None


def _store_runs(store: StoreRuns, eval_set: str = "heldout", compute: Any = None,
                run_ids: Sequence[str] | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The store's runs and curves; only `run_ids` (the fit's own runs) when given, so runs of
    another data build or spec version sharing the store are not drawn."""
    if store.error is not None:
        return runs_table(pl.DataFrame()), pl.DataFrame()
    raw, curves = store.runs, store.curves
    if run_ids is not None and "run_id" in raw.columns:
        raw = raw.filter(pl.col("run_id").is_in(list(run_ids)))
        if "run_id" in curves.columns:
            curves = curves.filter(pl.col("run_id").is_in(list(run_ids)))
    return runs_table(raw, eval_set, compute), curves


def _report_runs(store: StoreRuns | None, sweep: Mapping[str, Any], eval_set: str, compute: Any
                 ) -> tuple[pl.DataFrame, pl.DataFrame, bool]:
    """(runs, curves, whether the runs are the store's): the store's finished runs of this fit,
    else the fit's own rows (no store, or a store without finished runs)."""
    curves = pl.DataFrame()
    runs = runs_from_fit(None)
    if store is not None:
        runs, curves = _store_runs(store, eval_set, compute, (sweep.get("data") or {}).get("run_id"))
    from_store = runs.height > 0
    if not from_store:
        runs = runs_from_fit(sweep)
    return runs, curves, from_store


Drawer = Callable[[Path], Path]


def _drawers(sweep: Mapping[str, Any], runs: pl.DataFrame, curves: pl.DataFrame, eval_set: str, label: str,
             recommendation: Mapping[str, Any] | None, data_report: dict | None, target_flops: float | None,
             next_run: Mapping[str, Any] | None) -> dict[str, Drawer]:
    """The figures of this report by `FIGURES` key, each a function of its PNG path (the crossover
    only with a recommendation: no section without one)."""
    drawers: dict[str, Drawer] = {
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
    if not recommendation:
        del drawers["crossover"]
    return drawers


def _draw(drawers: Mapping[str, Drawer], out_dir: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """Draw every figure under `out_dir`: ({key: png path} of those drawn, {key: one-line note} of
    the others). A figure that does not apply or fails is a note, never a crash, and leaves no
    stale PNG of an earlier report behind."""
    paths: dict[str, Path] = {}
    notes: dict[str, str] = {}
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
    return paths, notes


def _figure_blocks(drawers: Mapping[str, Drawer], paths: Mapping[str, Path], notes: Mapping[str, str],
                   sweep: Mapping[str, Any], runs: pl.DataFrame, label: str, data_report: dict | None) -> list[Block]:
    """One section per figure in `FIGURES` order (the image or its note), the parameter tables
    after the predictions, the error model after the calibration, the data tables after the data."""
    blocks: list[Block] = []
    for key, (_, section, caption) in FIGURES.items():
        if key not in drawers:
            continue
        blocks.append(("h2", section))
        if key in paths:
            blocks.append(("img", section, paths[key], caption.replace("{flops}", label)))
        else:
            blocks.append(("p", notes.get(key, "Not drawn.")))
        if key == "predicted":
            blocks += parameter_blocks(sweep, label)
        if key == "calibration":
            blocks += error_model_blocks(sweep, runs, label)
        if key == "data":
            blocks += data_blocks(data_report)[1:]
    return blocks


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
    task_recommendation: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Draw every figure and write report.md and index.html under `out_dir`.

    `store` is the sweep's store, read (`scaler.session.store_runs`: its runs and loss curves); None
    builds the report from the fit alone, its runs being the fit JSON's top-level "data" (a store
    without finished runs falls back to them too). `fit_json` is a sweep fit or one law's entry (None or {}: no fit).
    `target_flops` (optional) is the budget a recommendation is for: the caveats say how far it
    extrapolates; `next_run` ({"n", "d" and/or "flops", optional "group"}) marks the proposed next
    run on the iso-loss contours. `recommendation` (a `scaler.decision.Recommendation.to_json()`)
    opens the report: the answer in one paragraph, the options and the next experiments as tables.
    `advance_steps` (the store's `scaler advance` step files) follow it: every prediction made
    before its run trained, against the loss the run reached. `task_recommendation` (the same
    question fitted on the code task's loss, `humaneval_solution`) follows the answer, with whether
    the two verdicts agree.
    Returns {figure key: png path for every figure drawn,
    "markdown": report.md, "html": index.html}; a figure that does not apply or fails to draw is
    a one-line note in the report (never a crash)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sweep = SweepFit(fit_json or {}).sweep_json()
    compute = SweepFit(sweep).compute()
    eval_set = (sweep.get("key") or {}).get("eval_set", "heldout")  # the fit's eval set (fit.json key)
    runs, curves, from_store = _report_runs(store, sweep, eval_set, compute)
    convention = compute.convention if compute is not None else ("flops_v1" if from_store else None)
    label = flops_label(convention)
    drawers = _drawers(sweep, runs, curves, eval_set, label, recommendation, data_report, target_flops, next_run)
    paths, notes = _draw(drawers, out_dir)

    blocks: list[Block] = [("h1", title)]
    if recommendation:
        blocks += [("h2", "The answer"), *answer_blocks(recommendation)]
    if recommendation and task_recommendation:
        blocks += [("h2", "The code task"), *task_blocks(recommendation, task_recommendation)]
    blocks += advance_blocks(advance_steps)
    if recommendation:
        blocks.append(("h2", "The sweep and its fit"))
    root, error = (store.root, store.error) if store is not None else (None, None)
    blocks.append(("p", summary_text(sweep, runs, from_store, convention, root, error)))
    blocks += runs_blocks(sweep, runs, from_store)
    blocks += [("h2", "Caveats"), ("list", caveats(runs, sweep, target_flops, label), "caveats")]
    blocks += _figure_blocks(drawers, paths, notes, sweep, runs, label, data_report)
    if spec_text:
        blocks += [("h2", "Sweep spec"), ("pre", spec_text)]

    md_path, html_path = out_dir / "report.md", out_dir / "index.html"
    md_path.write_text(to_markdown(blocks, out_dir), encoding="utf-8")
    html_path.write_text(to_html(blocks, title), encoding="utf-8")
    return {**paths, "markdown": md_path, "html": html_path}


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
