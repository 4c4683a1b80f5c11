"""`scaler demo`: the whole loop on this machine's Python sources (README, docs/demo.md)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from scaler import workflow
from scaler.cli.common import _advance, _heading, _note, _print_sweep_fit, _say, _sweep_fit, _user_errors
from scaler.cli.main import app
from scaler.cli.sweeps import run
from scaler.report.answer import verdicts_agree
from scaler.store import check_writable_folder


DEMO_BUDGET_MULTIPLE = 100.0  # the demo's question: a budget 100x its sweep's largest


DEMO_REACH = 4.0  # its advance step's runs: 4x the sweep's largest run


def demo_spec_path() -> Path:
    """The demo sweep spec, shipped inside the package (also at sweeps/demo.toml in a clone)."""
    from importlib.resources import files

    return Path(str(files("scaler") / "sweeps" / "demo.toml"))


@app.command()
def demo(
    workers: Annotated[int, typer.Option(help="runs trained at once")] = 2,
    out: Annotated[Path, typer.Option(help="where the report goes")] = Path("reports/demo"),
) -> None:
    """The whole loop on this machine: build the data, run the demo sweep, check its predictions on
    larger runs (one advance step), fit, report, recommend."""
    from scaler.advance_step import read_steps, table_lines
    from scaler.store import Store
    from scaler.sweep.spec import load_sweep_spec

    t0 = time.perf_counter()
    spec_file = demo_spec_path()
    with _user_errors():
        check_writable_folder(str(out), "--out")
    with _user_errors(ValueError):
        spec = load_sweep_spec(spec_file)
    design = spec.design.isoflop
    target = DEMO_BUDGET_MULTIPLE * max(design.budgets)
    _heading(f"1. data and sweep: the standard library and a few packages in tiers, a raw pool of "
             f"{spec.data.raw_pool_tokens:,} tokens; {len(design.budgets)} budgets x {len(design.sizes)} sizes x "
             f"{len(spec.design.mixes)} tiers x {len(spec.design.seeds)} seeds, as WSD branches")
    run(spec_file, runner="local", workers=workers, max_runs=None, address=None, slurm_cluster=None, force=False)
    _heading(f"2. advance: predict two runs at {DEMO_REACH:g}x the largest run before they train, train them, score")
    with _user_errors(ValueError):
        steps = read_steps(Store(spec.store_root))
        step = steps[-1] if steps and steps[-1]["scores"] is not None else _advance(
            spec, None, [DEMO_REACH], 1, target, workers=workers)
    for line in table_lines(step):
        _say(line)
    _heading("3. fit of every run (the sweep's and the advance step's)")
    with _user_errors(ValueError):
        fit_json = _sweep_fit(spec)
    _print_sweep_fit(fit_json)
    _heading("4. report")
    with _user_errors(ValueError):
        result, task = workflow.report_recommendations(spec, fit_json, target)
        paths = workflow.sweep_report(spec_file, spec, out, target / fit_json["largest_run_flops"], fit_json,
                                      recommendations=(result, task))
    for name, path in paths.items():
        _say(f"{name}: {path}")
    _heading(f"5. recommendation for {target:.3g} FLOPs ({DEMO_BUDGET_MULTIPLE:g}x the sweep's largest budget)")
    for line in result.lines():
        _say(line)
    _heading("6. the code task: the same question on the loss of HumanEval's solutions given their prompts")
    if task is not None:
        for line in task.lines():
            _say(line)
        _say(f"held-out and code-task verdicts: {verdicts_agree(result.to_json(), task.to_json())}")
    _note(f"demo done in {time.perf_counter() - t0:.0f} s; report: {out / 'index.html'}")
