"""Sweep commands: `plan`, `calibrate`, `run`, `status`, `advance`, `design` (scaler.workflow does
the work)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, TaskProgressColumn, TextColumn
from rich.table import Table

from scaler import workflow
from scaler.cli.common import TRACKER_HELP, _advance, _build_with_progress, _console, _note, _print_json, _progress, _read_fit_json, _say, _trackers, _train, _user_errors, _warn
from scaler.cli.main import app
from scaler.config import ConfigError
from scaler.store import check_writable_folder


def _seconds(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min" if value < 7200 else f"{value / 3600:.1f} h"


def _load_sweep(spec_file: Path):
    from scaler.sweep.spec import expand, load_sweep_spec

    spec = load_sweep_spec(spec_file)
    return spec, expand(spec)


def _stack_option(value: str | None):
    """--stack: None (the spec's), "auto" or a whole number >= 1."""
    if value is None or value == "auto":
        return value
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"--stack {value}: expected auto or a whole number of runs >= 1")
    return int(value)


STACK_HELP = "runs trained together by one vmapped step: 1, K or auto (default: the spec's `stack`)"


@app.command()
def plan(
    spec_file: Annotated[Path, typer.Argument(help="a sweep spec (TOML)")],
    json_out: Annotated[bool, typer.Option("--json", help="print the plan as JSON only")] = False,
    peak_flops: Annotated[float | None, typer.Option(help="FLOP/s of the target hardware (e.g. 989e12)")] = None,
    mfu: Annotated[float | None, typer.Option(help="model FLOPs utilisation expected there (default 0.4)")] = None,
    usd_per_hour: Annotated[float | None, typer.Option(help="price of one device hour")] = None,
    force: Annotated[bool, typer.Option(help="exit 0 even if the plan exceeds the spec's budgets")] = False,
    stack: Annotated[str | None, typer.Option(help=STACK_HELP)] = None,
    workers: Annotated[int, typer.Option(help="local processes the sweep will run with (shares memory for --stack auto)")] = 1,
) -> None:
    """One row per run (id, shape, parameters, tokens, FLOPs, epochs per tier, stack, estimated time), then totals."""
    from scaler.sweep.plan import make_plan, over_budget, sweep_stacks, unchecked_budgets

    with _user_errors():
        spec, runs = _load_sweep(spec_file)
        stacks = sweep_stacks(spec, runs, _stack_option(stack), workers=max(1, workers))
        result = make_plan(spec, runs, peak_flops, mfu, usd_per_hour, workflow.states(spec.store_root, runs), stacks)
    for warning in unchecked_budgets(spec, result):
        _warn(warning)
    problems = over_budget(spec, result)
    if json_out:
        _print_json({**result.to_json(), "over_budget": problems})
    else:
        _print_plan(spec, result)
    if problems and not force:
        for problem in problems:
            _say(("over budget: ", "red"), f"{problem} (--force to go ahead)", stderr=True)
        raise typer.Exit(3)


def _epochs(value: float | None) -> str:
    return "?" if value is None else f"{value:.3f}"


def _print_plan(spec, result) -> None:
    tiers = sorted({t for r in result.rows for t in r.epochs})
    stacked = any(r.stack_size > 1 for r in result.rows)
    table = Table("run id", "design", "mix", "seed", "shape", "params", "tokens", "FLOPs (flops_v1)",
                  *[f"epochs {t}" for t in tiers], *(["stack"] if stacked else []), "est.", "state",
                  title=f"sweep {spec.name}: {len(result.rows)} runs")
    for r in result.rows:
        table.add_row(r.run_id, r.point, r.mix, str(r.seed), f"{r.d_model}x{r.n_layers}", f"{r.n_params:,}",
                      f"{r.tokens:,}", f"{r.flops:.3g}", *[_epochs(r.epochs.get(t)) for t in tiers],
                      *([f"{r.stack} (of {r.stack_size})"] if stacked else []), _seconds(r.est_seconds), r.state)
    _console().print(table)
    sizes = {r.stack: r.stack_size for r in result.rows}  # task -> runs per vmapped step
    if spec.branches():
        families = sum(sizes.values())
        saved = 1 - result.trained_flops / result.total_flops if result.total_flops else 0.0
        _say(f"WSD branches: {len(result.rows)} runs in {families} families; {result.trained_flops:.3g} FLOPs trained "
             f"of the runs' {result.total_flops:.3g} ({saved:.0%} saved against independent runs: each branch "
             "forks from its family's longest run at its cooldown start)")
    if stacked:
        what = "families (trunks stacked, then branches)" if spec.branches() else "runs"
        low, high = min(sizes.values()), max(sizes.values())
        _say(f"stacks: {len(result.rows)} runs in {len(sizes)} tasks of {low if low == high else f'{low}-{high}'} "
             f"{what} (one vmapped step each; est. = each run's share of its stack's time)")
    usd = f", ${result.total_usd:,.2f}" if result.total_usd is not None else ""
    left = [r.est_seconds for r in result.rows if r.state not in ("done", "diverged")]
    hours = f" = {result.total_seconds / 3600:.2f} device-hours" if result.total_seconds is not None else ""
    _say(f"total {result.total_flops:.3g} FLOPs (flops_v1), {_seconds(result.total_seconds)}{hours}{usd}; "
         f"left to run: {len(left)} runs, {_seconds(None if None in left else sum(left))}; "
         f"estimate: {result.estimate}")
    if result.provisional_ids:
        _warn("run ids are provisional until `scaler data build` or `scaler run`", "data not built yet")


@app.command()
def calibrate(
    spec_file: Annotated[Path, typer.Argument(help="a sweep spec (TOML)")],
    stack: Annotated[str | None, typer.Option(help=STACK_HELP)] = None,
    workers: Annotated[int, typer.Option(help="local processes the sweep will run with")] = 1,
) -> None:
    """Measure training throughput of every shape (and stack size) in the spec on this machine (used by `scaler plan`)."""
    from scaler.sweep.plan import cache_path, calibrate as measure, stacked_together, sweep_stacks

    with _user_errors():
        spec, runs = _load_sweep(spec_file)
        stacks = stacked_together(spec, runs, sweep_stacks(spec, runs, _stack_option(stack), workers=max(1, workers)))
    with _progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn()) as bar:
        task = bar.add_task("calibrating shapes", total=None)
        measured = measure(runs, progress=lambda done, total: bar.update(task, completed=done, total=total),
                           stacks=stacks)
    table = Table("shape", "tokens/s", "GFLOP/s", title=f"throughput on this machine ({cache_path()})")
    for key, entry in sorted(measured.items()):
        table.add_row(key, f"{entry['tokens_per_s']:,.0f}", f"{entry['flops_per_s'] / 1e9:.1f}")
    _console().print(table)


def _prepare_data(spec, spec_file: Path) -> None:
    """Build the spec's data if it has a data.build table (skipped when up to date); refuse a
    data.dir that is not built otherwise."""
    if spec.data.dir is None:
        return
    if spec.data.build is not None:
        from scaler.data.build import parse_build_spec

        _build_with_progress(parse_build_spec(spec.data.build, "data.build"), Path(spec.data.dir),
                             rebuild_hint=f"`scaler data build {spec_file} --force` rebuilds it")
    elif not (Path(spec.data.dir) / "build.json").exists():
        raise ConfigError(f"data.dir: {spec.data.dir} is not built; add a data.build table to the spec "
                          "or run `scaler data build` first")


@app.command()
def run(
    spec_file: Annotated[Path, typer.Argument(help="a sweep spec (TOML)")],
    runner: Annotated[str, typer.Option(help="local | ray | slurm")] = "local",
    workers: Annotated[int, typer.Option(help="local: runs trained at once (processes)")] = 1,
    max_runs: Annotated[int | None, typer.Option(help="train at most this many runs now")] = None,
    address: Annotated[str | None, typer.Option(help="ray: HOST:PORT of the head (or RAY_ADDRESS)")] = None,
    slurm_cluster: Annotated[str | None, typer.Option(help="slurm: submitit cluster (None: auto, 'local', 'debug')")] = None,
    force: Annotated[bool, typer.Option(help="run even if the plan exceeds the spec's budgets")] = False,
    stack: Annotated[str | None, typer.Option(help=STACK_HELP)] = None,
    tracker: Annotated[list[str] | None, typer.Option(help=TRACKER_HELP)] = None,
) -> None:
    """Train the sweep's runs: skip done ones, resume interrupted ones, retry failures."""
    from scaler.sweep.plan import make_plan, over_budget, sweep_stacks, unchecked_budgets
    from scaler.sweep.engines import make_runner
    from scaler.sweep.spec import expand, load_sweep_spec

    with _user_errors():
        if max_runs is not None and max_runs < 1:
            raise ConfigError(f"--max-runs {max_runs}: expected 1 or more")
        spec = load_sweep_spec(spec_file)
        if tracker:  # adds to [train] trackers; the runs' ids stay the same
            trackers = _trackers(spec.train.get("trackers", []), tracker)
            spec = spec.model_copy(update={"train": {**spec.train, "trackers": trackers}})
        engine = make_runner(runner, workers=workers, address=address, slurm_cluster=slurm_cluster,
                             resources=spec.resources.model_dump())
        check_writable_folder(spec.store_root, "store")
        _prepare_data(spec, spec_file)
        runs = expand(spec)  # now with the data's build id
        states = workflow.states(spec.store_root, runs)
        stack_size = _stack_option(stack)
        sweep_plan = make_plan(spec, runs, states=states,
                               stacks=sweep_stacks(spec, runs, stack_size, runner, max(1, workers)))
        problems = over_budget(spec, sweep_plan)
        if problems and not force:
            raise ConfigError("; ".join(problems) + " (--force to go ahead)")
        for warning in unchecked_budgets(spec, sweep_plan):
            _warn(warning)
    _train(spec, runs, engine, runner, workers, stack_size, max_runs)


@app.command()
def status(
    spec_file: Annotated[Path, typer.Argument(help="a sweep spec (TOML)")],
    json_out: Annotated[bool, typer.Option("--json", help="print the status as JSON only")] = False,
) -> None:
    """Runs per state, the last error of failed runs, time spent, estimated time left, and the runs a
    changed data build left behind."""
    from scaler.sweep.status import STATES, sweep_status

    with _user_errors():
        spec, runs = _load_sweep(spec_file)
        result = sweep_status(spec, runs)
    if json_out:
        _print_json(result.to_json())
        return
    table = Table("state", "runs", title=f"sweep {spec.name} ({spec.store_root})")
    for state in STATES:
        table.add_row(state, str(result.counts.get(state, 0)))
    _console().print(table)
    for failed in result.failed:
        _say(("failed ", "red"), f"{failed['run_id']} after {failed['attempts']} attempts: {failed['error']}")
    for bad in result.corrupt:
        _say(("corrupt ", "red"), f"{bad['run_id']}: {bad['error']} (`scaler run` moves it aside and trains the run again)")
    _say(f"time spent: {_seconds(result.spent_s)}; estimated time left: {_seconds(result.left_s)} "
         f"({result.left_runs} runs)")
    if result.left_behind:
        changed = sorted({c for r in result.left_behind for c in r["changed"]})
        _say(("left behind ", "yellow"), f"{len(result.left_behind)} runs in the store trained on an earlier build of "
             f"{spec.data.dir} whose contents changed ({', '.join(changed)}): they no longer count for this sweep; "
             "`scaler run` trains their places on the current data")


@app.command()
def advance(
    spec_file: Annotated[Path, typer.Argument(help="a sweep spec whose runs are done")],
    budget_hours: Annotated[float | None, typer.Option(help="train at most about this many hours (estimated from the sweep's own runs)")] = None,
    reach: Annotated[str, typer.Option(help="where the next runs go: multiples of the largest fitted run's compute, comma-separated")] = "4,8",
    pairs: Annotated[int, typer.Option(help="pairs of runs (raw and the best cleaned tier) to train")] = 1,
    budget: Annotated[float | None, typer.Option(help="the target budget of the verdict, FLOPs (default: 100x the largest fitted run)")] = None,
    runner: Annotated[str, typer.Option(help="local | ray | slurm")] = "local",
    workers: Annotated[int, typer.Option(help="local: runs trained at once (processes)")] = 2,
    json_out: Annotated[bool, typer.Option("--json", help="print the step as JSON only")] = False,
) -> None:
    """One step of the loop that checks itself: predict the next experiments beyond the sweep, record
    the predictions, train the runs, refit, and score every prediction against its run."""
    from scaler.advance_step import table_lines
    from scaler.sweep.spec import load_sweep_spec

    with _user_errors(ValueError):
        spec = load_sweep_spec(spec_file)
        step = _advance(spec, budget_hours, _numbers(reach, "--reach"), pairs, budget, runner, workers)
    if json_out:
        _print_json(step)
        return
    for line in table_lines(step):
        _say(line)


@app.command()
def design(
    spec_files: Annotated[list[Path], typer.Argument(help="one or more sweep specs, compared side by side")],
    prior: Annotated[Path, typer.Option(help="a fit JSON with a quality law (a store's fit.json, or `scaler fit --out`)")],
    budget: Annotated[float | None, typer.Option(help="the verdict's budget, FLOPs (default: 100x the first design's largest run)")] = None,
    sims: Annotated[int, typer.Option(help="synthetic sweeps per design")] = 20,
    bootstrap: Annotated[int, typer.Option(help="bootstrap resamples per synthetic fit")] = 100,
    noise: Annotated[float | None, typer.Option(help="sd of one run's log loss (default: the prior's seed noise)")] = None,
    seed: Annotated[int, typer.Option(help="seed of the synthetic noise")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="print the results as JSON only")] = False,
) -> None:
    """Before any run: simulate each design on a prior law and its seed noise (synthetic results,
    fitted, repeated) and report the expected intervals of kappa and the allocation exponent and the
    verdict's expected probability."""
    from scaler.simulate import table_lines

    with _user_errors(ValueError):
        out = workflow.design(spec_files, _read_fit_json(prior), budget_flops=budget, n_sims=sims, n_bootstrap=bootstrap,
                              noise_sd=noise, seed=seed, prior_source=str(prior), progress=_note)
    if json_out:
        _print_json(out)
        return
    for line in table_lines(out["designs"], out["target_flops"]):
        _say(line)


def _numbers(text: str, option: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise ConfigError(f"{option} {text!r}: expected comma-separated numbers, e.g. 4,8") from None
