"""The `scaler` command: it only wires. Each command parses its options, calls the layer that does
the work (data, sweep, fit, recommend, report) and prints the result.

Output rules: results go to stdout, progress, warnings and errors to stderr; `--json` prints JSON
only; output that is not a terminal is never wrapped; user text (paths, names, TOML keys) is
printed as written, never read as rich markup. Bad input is one line `error: ...` and exit 2.
JAX is imported inside the commands that train, so `--help` stays fast, and process set-up (XLA
host devices, the compilation cache) happens when a command runs, not when this module is imported.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from scaler.config import ConfigError, RunConfig, load_run_config
from scaler.fit.predict import EXTRAPOLATION_REFUSE, EXTRAPOLATION_WARN
from scaler import workflow
from scaler.store import StoreError, check_writable_folder

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Scaling-law and data-mix experiment planner.")
data_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Build and inspect cleaned, tokenized data tiers.")
app.add_typer(data_app, name="data")

UNWRAPPED_WIDTH = 10_000  # a pipe or a CI log gets each line whole


@app.callback()
def _process_setup() -> None:
    """Before any command: one XLA CPU device per core, and the persistent compilation cache
    (scaler/runtime.py). Done here, when a command runs, never at import."""
    from scaler.runtime import configure_compilation_cache, configure_cpu

    configure_cpu()
    configure_compilation_cache()


# --- output -------------------------------------------------------------------------------------


def _console(stderr: bool = False) -> Console:
    """stdout (results) or stderr (progress, warnings, errors); markup is never parsed, and a
    stream that is not a terminal is not wrapped."""
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    return Console(stderr=stderr, markup=False, highlight=False, width=None if tty else UNWRAPPED_WIDTH,
                   soft_wrap=not tty)


def _say(*parts: Any, stderr: bool = False) -> None:
    """One line of text or (text, style) parts."""
    _console(stderr).print(Text.assemble(*parts))


def _note(message: str) -> None:
    """Progress for people: stderr."""
    _say(message, stderr=True)


def _warn(message: str, label: str = "warning") -> None:
    _say((f"{label}: ", "yellow"), message, stderr=True)


def _heading(title: str) -> None:
    console = _console()
    if console.is_terminal:
        console.rule(Text(title, style="bold"))
    else:
        console.print(f"== {title} ==")


def _json_text(obj: Any) -> str:
    """The one JSON style of every `--json` and `--out`: indented, NaN as null."""
    from scaler.fit.data import json_safe

    return json.dumps(json_safe(obj), indent=1)


def _print_json(obj: Any) -> None:
    """`--json`: the JSON and nothing else on stdout."""
    print(_json_text(obj))


def _progress(*columns: Any) -> Progress:
    """Progress bars on stderr; on a stream that is not a terminal they leave nothing behind (an
    error is then the only line a failed command prints)."""
    console = _console(stderr=True)
    return Progress(*columns, console=console, transient=not console.is_terminal)


@contextlib.contextmanager
def _user_errors(*kinds: type[Exception]) -> Iterator[None]:
    """Bad input (ConfigError, StoreError, or the other kinds named) becomes one line `error: ...`
    on stderr and exit code 2."""
    from scaler.fit.data import FitDataError

    try:
        yield
    except (ConfigError, StoreError, FitDataError, *kinds) as err:
        _say(("error: ", "red"), " ".join(str(err).split()), stderr=True)  # one line, whatever a library wrote
        raise typer.Exit(2) from None


def _seconds(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min" if value < 7200 else f"{value / 3600:.1f} h"


def _mb(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:,.1f}"


# --- train ----------------------------------------------------------------------------------------


def _train_with_progress(config: RunConfig, store_root: str):
    from scaler.store import Store, run_id_of
    from scaler.sweep.runners import held_claim
    from scaler.train.defaults import resolve
    from scaler.train.loop import run_info, train_run

    resolved = resolve(config)
    info = run_info(resolved)
    store = Store(store_root)
    with held_claim(store, run_id_of(resolved.identity())) as keeper:  # the claim sweep workers take
        _note(f"{config.name or 'run'}: {info['n_params']:,} parameters, {resolved.train.tokens:,} tokens, "
              f"{info['steps']:,} steps, {info['flops']:.3g} FLOPs ({resolved.flops_convention})")
        columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                   TextColumn("loss {task.fields[loss]}  {task.fields[tok_s]} tok/s"), TimeRemainingColumn())
        with _progress(*columns) as bar:
            task = bar.add_task("training", total=info["steps"], loss="-", tok_s="-")

            def on_row(row: dict[str, Any]) -> None:
                keeper.check(row)  # ClaimLost: another worker took the run over
                eval_loss = row.get("eval_heldout_loss")
                loss = f"{row['train_loss']:.3f}" + (f" (heldout {eval_loss:.3f})" if eval_loss else "")
                bar.update(task, completed=row["step"], loss=loss, tok_s=f"{row['tokens_per_s']:,.0f}")

            t0 = time.perf_counter()
            result = train_run(config, store, progress=on_row)
    _say(f"run {result.run_id} {result.state} in {time.perf_counter() - t0:.1f} s")
    if result.final:
        table = Table("metric", "value", box=None)
        for key, value in result.final.items():
            table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
        _console().print(table)
    _say(f"results: {result.run_dir}")
    return result


@app.command()
def train(
    run_file: Annotated[Path, typer.Argument(help="a run config (TOML)")],
    store: Annotated[str, typer.Option(help="results store root: a folder or an fsspec URL")] = "store/adhoc",
) -> None:
    """Train one run into the store, resuming from its checkpoint if it was interrupted; a run
    that another command is training (its claim is live) is refused."""
    from scaler.sweep.runners import RunClaimed

    with _user_errors():
        config = load_run_config(run_file)
        check_writable_folder(store, "--store")
        try:
            _train_with_progress(config, store)
        except RunClaimed as err:  # not bad input: busy; exit 1
            _say(("error: ", "red"), str(err), stderr=True)
            raise typer.Exit(1) from None


# --- data -----------------------------------------------------------------------------------------


class _Bars:
    """One rich progress bar per named long step."""

    def __init__(self, progress: Progress):
        self.progress, self.tasks = progress, {}

    def __call__(self, what: str, done: int, total: int) -> None:
        if what not in self.tasks:
            self.tasks[what] = self.progress.add_task(what, total=total)
        self.progress.update(self.tasks[what], completed=done, total=total)


def _build_with_progress(build_spec, out_dir: Path, force: bool = False, rebuild_hint: str = "--force rebuilds it",
                         heldout_fraction: float | None = None) -> dict[str, Any]:
    from scaler.sweep.data import build_data

    columns = (TextColumn("{task.description:<24}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn())
    with _progress(*columns) as bar:
        report = build_data(build_spec, out_dir, force=force, progress=_Bars(bar), heldout_fraction=heldout_fraction)
    if report.get("skipped"):
        _note(f"{out_dir}: build {report['build_id']} is up to date ({rebuild_hint})")
    else:
        _note(f"built {report['build_id']} into {out_dir}: {_mb(report['bytes_read'])} MB in "
              f"{report['seconds']:.1f} s ({report['mb_per_s']:.2f} MB/s)")
    for note in report.get("notes", []):
        _warn(note, "note")
    return report


@data_app.command("build")
def data_build(
    spec: Annotated[Path | None, typer.Argument(help="a TOML file with a [data.build] table (a sweep spec)")] = None,
    source: Annotated[list[str] | None, typer.Option(help="stdlib, site-packages, dir:PATH, jsonl:PATH, parquet:PATH")] = None,
    tiers: Annotated[str | None, typer.Option(help="comma-separated tiers to build (and those they build on)")] = None,
    tokenizer: Annotated[list[str] | None, typer.Option(help="bytes or bpe-N (repeatable)")] = None,
    heldout_fraction: Annotated[float | None, typer.Option(help="share of the bytes held out for evaluation (default 0.05)")] = None,
    out: Annotated[Path | None, typer.Option(help="output folder (default: the spec's data.dir)")] = None,
    force: Annotated[bool, typer.Option(help="rebuild even if an identical build is there")] = False,
) -> None:
    """Read sources, clean them into tiers, tokenize, and write shards, eval sets and a report."""
    from scaler.data.build import BuildSpec, load_build_spec, parse_build_spec

    with _user_errors(FileNotFoundError):
        build_spec, spec_dir = load_build_spec(spec) if spec else (BuildSpec(), None)
        overrides = {"sources": source, "tokenizers": tokenizer}
        raw = {**build_spec.model_dump(), **{k: v for k, v in overrides.items() if v}}
        build_spec = parse_build_spec(raw, "command line")
        if tiers:
            build_spec = build_spec.select([t.strip() for t in tiers.split(",") if t.strip()])
        out_dir = out or (Path(spec_dir) if spec_dir else None)
        if out_dir is None:
            raise ConfigError("--out: name the output folder (or set data.dir in the spec)")
        report = _build_with_progress(build_spec, out_dir, force, heldout_fraction=heldout_fraction)
    _print_tiers(report)


def _print_tiers(report: dict[str, Any]) -> None:
    tokenizers = list(report["tokenizers"])
    table = Table("tier", "built from", "docs", "MB", "yield", *[f"{t} tokens" for t in tokenizers],
                  title="tiers (training split; yield = share of raw tokens)")
    for name, tier in report["tiers"].items():
        own = tier["steps"][len(report["tiers"][tier["base"]]["steps"]):] if tier["base"] else tier["steps"]
        built_from = " + ".join(([tier["base"]] if tier["base"] else []) + own) or "sources"
        label = Text.assemble(name, (" (synthetic)", "yellow")) if tier["synthetic"] else name
        tokens = [f"{tier[f'{t}_train_tokens']:,}" for t in tokenizers]
        yield_ = tier[f"{tokenizers[0]}_yield"] if tokenizers else tier["yield_bytes"]
        table.add_row(label, built_from, f"{tier['train_documents']:,}", _mb(tier["train_bytes"]), f"{yield_:.1%}",
                      *tokens)
    _console().print(table)


@data_app.command("inspect")
def data_inspect(
    data_dir: Annotated[Path, typer.Argument(help="a folder written by `scaler data build`")],
    examples: Annotated[int, typer.Option(help="removed examples shown per reason")] = 2,
) -> None:
    """Print a build's report: sources, steps with removal reasons and costs, tiers, examples."""
    from scaler.data.folder import read_report

    with _user_errors():
        report = read_report(data_dir).model_dump(mode="json")
    console = _console()
    sources = Table("source", "status", "files", "MB", title=f"build {report['build_id']}: sources")
    for name, statuses in report["sources"].items():
        for status, entry in statuses.items():
            sources.add_row(name, status, f"{entry['files']:,}", _mb(entry["bytes"]))
    console.print(sources)
    steps = Table("tier", "step", "docs in → out", "MB removed", "seconds", "FLOPs", title="cleaning steps")
    reasons = Table("step", "reason", "docs", "MB", title="removal reasons")
    for step in report["steps"]:
        steps.add_row(step["tier"], step["step"], f"{step['documents_in']:,} → {step['documents_out']:,}",
                      _mb(step["bytes_in"] - step["bytes_out"]), f"{step['seconds']:.1f}",
                      f"{step['flops']:.3g}" if step["flops"] else "-")
        for reason, entry in step["removed"].items():
            reasons.add_row(step["step"], reason, f"{entry['documents']:,}", _mb(entry["bytes"]))
    console.print(steps)
    console.print(reasons)
    _print_tiers(report)
    for step in report["steps"]:
        for reason, cases in step["examples"].items():
            for case in cases[:examples]:
                console.print(Text.assemble((step["step"], "bold"), f" {reason}: {case['path']} ({case['detail']})"))
                snippet = case["snippet"].replace("\n", " | ")[:160]
                console.print(f"    {snippet}", soft_wrap=False, overflow="ellipsis")


# --- sweeps ---------------------------------------------------------------------------------------


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
) -> None:
    """Train the sweep's runs: skip done ones, resume interrupted ones, retry failures."""
    from scaler.sweep.plan import make_plan, over_budget, sweep_stacks, unchecked_budgets
    from scaler.sweep.engines import make_runner
    from scaler.sweep.spec import expand, load_sweep_spec

    with _user_errors():
        if max_runs is not None and max_runs < 1:
            raise ConfigError(f"--max-runs {max_runs}: expected 1 or more")
        spec = load_sweep_spec(spec_file)
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


def _train(spec, runs, engine, runner: str, workers: int, stack_size, max_runs: int | None) -> None:
    """`workflow.to_train` and `train_sweep` with progress bars; exits 1 when a run failed, 2 when
    the store cannot be written, 130 on Ctrl-C (the current run is back to pending)."""
    todo, n_done = workflow.to_train(spec, runs, max_runs, warn=lambda m: _warn(m, "corrupt"))
    _note(f"sweep {spec.name}: {len(runs)} runs, {n_done} done, {len(todo)} to run now ({runner}); "
          f"store {spec.store_root}")
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[info]}"), TimeRemainingColumn())
    names = {r.run_id: r.config.name for r in todo}
    result = workflow.SweepOutcome()
    try:
        if todo:
            with _user_errors(ValueError, ConnectionError), _progress(*columns) as bar:
                sweep_task = bar.add_task("runs", total=len(todo), info="")
                run_task = bar.add_task("current run", total=None, info="")

                def on_step(row: dict[str, Any]) -> None:
                    bar.update(run_task, description=names.get(row["run_id"], row["run_id"])[-48:],
                               completed=row["step"], total=row["steps"],
                               info=f"loss {row['train_loss']:.3f}  {row['tokens_per_s']:,.0f} tok/s")

                def on_outcome(outcome: dict[str, Any]) -> None:
                    bar.advance(sweep_task)
                    bar.update(sweep_task, info=f"last: {outcome['run_id']} {outcome['state']}")

                result = workflow.train_sweep(spec, todo, engine, runner, workers, stack_size, note=_note,
                                              on_step=on_step, on_outcome=on_outcome)
    except KeyboardInterrupt:
        _warn("the current run is back to pending; run the same command to resume", "interrupted")
        raise typer.Exit(130) from None
    counts = result.counts()
    _say("outcomes: " + (", ".join(f"{state} {n}" for state, n in sorted(counts.items())) or "nothing to run"))
    for outcome in result.failed():
        _say(("failed ", "red"), f"{outcome['run_id']}: {outcome['error']}")
    if result.store_errors():  # the store cannot be written (full disk, read-only): the runs were not the problem
        _say(("error: ", "red"), f"the store cannot be written: {result.store_errors()[0]}", stderr=True)
        raise typer.Exit(2)
    if counts.get("failed"):
        raise typer.Exit(1)


@app.command()
def status(
    spec_file: Annotated[Path, typer.Argument(help="a sweep spec (TOML)")],
    json_out: Annotated[bool, typer.Option("--json", help="print the status as JSON only")] = False,
) -> None:
    """Runs per state, the last error of failed runs, time spent and estimated time left."""
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


# --- fitting --------------------------------------------------------------------------------------


def _interval_text(lo_hi: Any, fmt: str = ".4g") -> str:
    if not lo_hi or None in lo_hi:
        return ""
    return f" [{lo_hi[0]:{fmt}}, {lo_hi[1]:{fmt}}]"


def _print_excluded(excluded: dict[str, list[str]] | None) -> None:
    """Runs that are not in the fit, by state and id: never dropped without a word."""
    for state, ids in (excluded or {}).items():
        if ids:
            shown = ", ".join(ids[:8]) + (f" and {len(ids) - 8} more" if len(ids) > 8 else "")
            runs = f"{len(ids)} run{'s' if len(ids) != 1 else ''}"
            what = (f"{runs} of the store outside the sweep (another data build or spec version)"
                    if state == "outside the sweep" else f"{len(ids)} {state} run{'s' if len(ids) != 1 else ''}")
            _warn(f"{what} not in the fit: {shown}", "left out")


def _print_fit(out: dict[str, Any]) -> None:
    from scaler.fit.choose import CANDIDATE_COLUMNS, candidate_rows
    from scaler.fit.predict import error_model_text

    console = _console()
    table = Table("parameter", "value", "95% interval",
                  title=f"{out['law']} fit of {out['source']} ({out['n_points']} points)")
    intervals = out.get("intervals", {})
    for name, value in {**out.get("params", {}), **out.get("derived", {})}.items():
        lo_hi = intervals.get(name)
        shown = "-" if value is None else f"{value:.5g}"
        table.add_row(name, shown, f"[{lo_hi[0]:.5g}, {lo_hi[1]:.5g}]" if lo_hi and None not in lo_hi else "-")
    console.print(table)
    if out.get("spec", {}).get("reference"):
        console.print(f"reference tier (kappa = 1): {out['spec']['reference']}")
    console.print(f"objective {out['objective']:.6g} ({out.get('objective_text', 'sum of Huber on log losses')}); "
                  f"converged: {out['converged']} ({out.get('stopped', '')}, gradient norm "
                  f"{out.get('grad_norm') if out.get('grad_norm') is not None else float('nan'):.2g})")
    if out.get("flat_directions"):
        _say(("not identified: ", "yellow"), "; ".join(out["flat_directions"]))
    for row in out.get("allocations", []):
        console.print(f"at C = {row['flops']:.3g} FLOPs ({row.get('convention', '6ND')}, {row.get('multiple', 1):g}x the "
                      f"largest run): N_opt = {row['n_opt']:.4g}{_interval_text(row.get('n_opt_interval'))}, "
                      f"D_opt = {row['d_opt']:.4g}{_interval_text(row.get('d_opt_interval'))}")
    model = out.get("error_model")
    if model:
        intervals = error_model_text(model)  # a result line (stdout), like the fit above it
        console.print(f"prediction intervals: {intervals}")
    noise = out.get("seed_noise")
    if noise:
        console.print(f"seed noise: {noise['sd_nats']:.4f} nats ({100 * noise['sd_log']:.2f}%), the spread of "
                      f"{noise['n_runs']} runs of {noise['n_configs']} configurations trained more than once")
    if out.get("candidates"):
        table = Table(*CANDIDATE_COLUMNS, title=f"candidate laws (--law auto, horizon {out.get('horizon', 10):g}x)")
        for row in candidate_rows(out["candidates"], out["law"]):
            table.add_row(*row)
        console.print(table)
        console.print(f"chosen: {out.get('chosen_by', '')}")
    _print_compute(out.get("compute"))
    _print_excluded(out.get("excluded"))


def _print_compute(compute: dict[str, Any] | None) -> None:
    """A warning when the FLOPs per token of new sizes come from a family the runs do not all follow."""
    if compute and compute.get("family") and not compute.get("family_exact", True):
        family = compute["family"]
        _warn(f"the runs' shapes are not all from one model family: FLOPs per token of other sizes follow the "
              f"nearest ({family['aspect_ratio']} wide per layer, head width {family['head_dim']}), under "
              f"{compute['convention']}", "compute")


def _print_sweep_fit(out: dict[str, Any]) -> None:
    _print_compute(out.get("compute"))
    _print_excluded(out.get("excluded"))
    for label, entry in out["groups"].items():
        _heading(label)
        if "error" in entry["parametric"]:
            _say(("parametric fit: ", "red"), entry["parametric"]["error"])
        else:
            _print_fit({**entry["parametric"], "excluded": None, "compute": None})
        iso = entry["isoflop"]
        if "error" in iso:
            _say(("IsoFLOP approach 2: ", "yellow"), iso["error"])
        else:
            (a_lo, a_hi), (b_lo, b_hi) = iso["a_interval"], iso["b_interval"]
            exponents = entry["parametric"].get("allocation_exponents")
            parametric = (f"; parametric ({exponents['convention']}): N_opt ~ C^{exponents['a']:.3f}"
                          f"{_interval_text(exponents.get('a_interval'), '.3f')}" if exponents else "")
            _say(f"IsoFLOP approach 2 ({iso['n_good']} budgets): N_opt ~ C^{iso['a']:.3f} [{a_lo:.3f}, {a_hi:.3f}], "
                 f"D_opt ~ C^{iso['b']:.3f} [{b_lo:.3f}, {b_hi:.3f}]{parametric}")
            for flagged in iso.get("flagged", []):
                _say(("  budget not fitted: ", "yellow"), f"{flagged:.3g}" if isinstance(flagged, float) else str(flagged))
        backtest = entry["backtest"]
        _say(f"backtest: {backtest.get('verdict', backtest.get('error'))}")
    if "quality" in out:
        _heading("quality law (all tiers)")
        if "error" in out["quality"]:
            _say(("quality fit: ", "red"), out["quality"]["error"])
        else:
            _print_fit({**out["quality"], "excluded": None, "compute": None})


def _check_output_file(path: Path, option: str) -> None:
    if path.is_dir():
        raise ConfigError(f"{option} {path}: a folder; expected a file name")
    check_writable_folder(str(path.parent), option)


def _write_json_file(path: Path, obj: Any) -> None:
    """Atomically, like the store's files."""
    from scaler.store import atomic_write_bytes, filesystem

    fs, fs_path = filesystem(str(path), "--out")
    atomic_write_bytes(fs, fs_path, (_json_text(obj) + "\n").encode())


def _all_failed(result: dict[str, Any]) -> bool:
    """A fit in which no law could be fitted: every group failed (or the one law did)."""
    if "groups" in result:
        return bool(result["groups"]) and len(result.get("failed_groups", [])) == len(result["groups"])
    return "error" in result


GROUP_LAWS = ("quality", "chinchilla_group_e", "mixing")  # laws fitted across a table's groups at once


@app.command()
def fit(
    spec_file: Annotated[Path | None, typer.Argument(help="a sweep spec: fit its store (writes fit.json there)")] = None,
    table: Annotated[Path | None, typer.Option(help="a CSV of runs exported from anywhere")] = None,
    n: Annotated[str | None, typer.Option(help="--table: the parameters column")] = None,
    d: Annotated[str | None, typer.Option(help="--table: the training tokens column")] = None,
    loss: Annotated[str | None, typer.Option(help="--table: the loss column (nats)")] = None,
    unique: Annotated[str | None, typer.Option(help="--table: the unique tokens column")] = None,
    group: Annotated[str | None, typer.Option(help="--table: a group column (dataset, tier, mix): each group is fitted, side by side; quality and chinchilla_group_e fit across the groups")] = None,
    flops: Annotated[str | None, typer.Option(help="--table: a training FLOPs column (D = C / 6N without --d; tables are fitted under C = 6ND)")] = None,
    law: Annotated[str | None, typer.Option(help="chinchilla | chinchilla_group_e | kaplan | overtrain | broken | data_constrained | quality | mixing | auto (default: the spec's fit.law, else chinchilla)")] = None,
    reference: Annotated[str | None, typer.Option(help="quality law: the tier or group with kappa = 1 (default: the spec's fit.reference, else raw)")] = None,
    objective: Annotated[str | None, typer.Option(help="huber (default) | asymmetric (the chinchilla toolkit's lower-envelope estimator)")] = None,
    delta: Annotated[float | None, typer.Option(help="the Huber threshold (default 1e-3)")] = None,
    asymmetry: Annotated[float | None, typer.Option(help="asymmetric: weight of predictions above a run (default 10)")] = None,
    drop_top_loss: Annotated[int, typer.Option(help="drop the K highest-loss rows")] = 0,
    drop_nan: Annotated[bool, typer.Option(help="drop rows with NaN values (counted) instead of refusing")] = False,
    bootstrap: Annotated[int | None, typer.Option(help="bootstrap resamples for intervals (0: none; default 1000)")] = None,
    seed: Annotated[int | None, typer.Option(help="bootstrap seed (default 0)")] = None,
    horizon: Annotated[float | None, typer.Option(help="--law auto: the extrapolation (compute over the largest fitted run's) the laws' backtests are scored at (default 10)")] = None,
    eval_set: Annotated[str | None, typer.Option(help="SPEC: which eval set's final loss to fit (default heldout)")] = None,
    refit: Annotated[bool, typer.Option(help="SPEC: refit even if the store's fit.json matches")] = False,
    out: Annotated[Path | None, typer.Option(help="also write the fit as JSON to this file")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the fit as JSON only")] = False,
) -> None:
    """Fit a scaling law (4,500 starts) with bootstrap intervals and backtested prediction intervals."""
    from scaler.fit.choose import DEFAULT_HORIZON
    from scaler.fit.data import load_table
    from scaler.fit.pipeline import fit as fit_law, fit_sweep

    with _user_errors(ValueError):  # a law that cannot be fitted to these rows is one line too
        if json_out and spec_file is not None and spec_file.suffix == ".json":  # the old `--json FILE`
            raise ConfigError(f"{spec_file}: --json takes no file: it prints the fit as JSON only, on stdout; "
                              f"write it to a file with --out {spec_file}")
        if (spec_file is None) == (table is None):
            raise ConfigError("give a sweep spec, or --table FILE.csv with --n, --loss and --d or --flops")
        if out is not None:
            _check_output_file(out, "--out")
        if spec_file is not None:
            from scaler.sweep.spec import load_sweep_spec

            spec = load_sweep_spec(spec_file)
            check_writable_folder(spec.store_root, "store")
            result = _sweep_fit(spec, bootstrap, eval_set=eval_set, law=law, seed=seed, reference=reference,
                                refit=refit, objective=objective, delta=delta, asymmetry=asymmetry, horizon=horizon)
            if not json_out:
                _note(f"fit.json: {spec.store_root}/fit.json")
        else:
            if not (n and loss):
                raise ConfigError("--table needs --n COL and --loss COL (and --d COL or --flops COL)")
            goal = _objective(objective, delta, asymmetry)
            data = load_table(table, n=n, loss=loss, d=d, flops=flops, unique=unique, group=group,
                              drop_top=drop_top_loss, drop_nan=drop_nan)
            n_boot, name = 1000 if bootstrap is None else bootstrap, law or "chinchilla"
            reach = DEFAULT_HORIZON if horizon is None else horizon
            if group and name not in GROUP_LAWS:
                result = fit_sweep(data, name, n_boot, seed or 0, reference or "raw", goal, reach)
            else:
                result = fit_law(data, name, n_boot, seed or 0, reference or "raw", goal, with_data=True, horizon=reach)
        if out is not None:
            _write_json_file(out, result)
    if json_out:
        _print_json(result)
    elif "groups" in result:
        _print_sweep_fit(result)
    else:
        _print_fit(result)
    if out is not None and not json_out:
        _note(f"wrote {out}")
    if _all_failed(result):
        _warn("no law could be fitted", "error")
        raise typer.Exit(1)


# --- predictions, reports, recommendations, the demo ----------------------------------------------


def _objective(name: str | None, delta: float | None, asymmetry: float | None, base: Any = None):
    from scaler.fit.pipeline import Objective

    default = base or Objective()
    return Objective(name or default.name, default.delta if delta is None else delta,
                     default.asymmetry if asymmetry is None else asymmetry)


def _sweep_fit(spec, n_bootstrap: int | None = None, *, objective: str | None = None, delta: float | None = None,
               asymmetry: float | None = None, **overrides: Any) -> dict[str, Any]:
    """`workflow.sweep_fit` with the --objective, --delta and --asymmetry flags over the spec's [fit]."""
    from scaler.fit.pipeline import Objective

    s = spec.fit
    goal = _objective(objective, delta, asymmetry, Objective(s.objective, s.delta, s.asymmetry))
    return workflow.sweep_fit(spec, n_bootstrap, objective=goal, **overrides)


def _read_fit_json(path: Path) -> dict[str, Any]:
    from scaler.fit.result import PredictError, SweepFit

    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: not a readable fit JSON ({err})") from None
    try:
        return dict(SweepFit.from_json(raw).raw)
    except PredictError as err:
        raise ConfigError(f"{path}: {err}") from None


def _fit_source(source: Path) -> dict[str, Any]:
    """A fit JSON, or a sweep spec (TOML) whose store is fitted (or its fit.json reused)."""
    if source.suffix == ".toml":
        from scaler.sweep.spec import load_sweep_spec

        return _sweep_fit(load_sweep_spec(source))
    return _read_fit_json(source)


def _table_column(path: Path, name: str, option: str) -> list[Any]:
    import polars as pl

    try:
        frame = pl.read_csv(path, infer_schema_length=None)
    except Exception as err:  # noqa: BLE001 - polars raises several kinds for a bad file
        raise ConfigError(f"{path}: not a readable CSV: {err}") from None
    if name not in frame.columns:
        raise ConfigError(f"{path}: {option} {name!r}: no such column (columns: {', '.join(frame.columns)})")
    return frame[name].to_list()


def _points(at: Path | None, n: str | None, d: str | None, flops: str | None, group: str | None,
            params: float | None, tokens: float | None, tier: str | None, unique: str | None = None
            ) -> dict[str, Any]:
    """The points to predict: columns of a CSV (--at) or one run (--params, --tokens)."""
    if at is None:
        if params is None or tokens is None:
            raise ConfigError("give --at POINTS.csv with --n COL and --d COL (or --flops COL), or --params N --tokens D")
        return {"n": [params], "d": [tokens], "flops": None, "groups": [tier], "unique": None}
    if not at.is_file():
        raise ConfigError(f"--at {at}: file not found")
    if not n or (d is None) == (flops is None):
        raise ConfigError(f"--at {at}: give --n COL and one of --d COL or --flops COL")
    try:
        numbers = {key: [float(v) for v in _table_column(at, col, f"--{key}")] for key, col in
                   (("n", n), ("d", d), ("flops", flops), ("unique", unique)) if col}
    except (TypeError, ValueError):
        raise ConfigError(f"--at {at}: --n, --d and --flops must name numeric columns with no empty cells") from None
    groups = [None if v is None else str(v) for v in _table_column(at, group, "--group")] if group else None
    return {"n": numbers["n"], "d": numbers.get("d"), "flops": numbers.get("flops"),
            "groups": groups or [tier] * len(numbers["n"]), "unique": numbers.get("unique")}


@app.command()
def predict(
    source: Annotated[Path, typer.Argument(help="a fit JSON (a store's fit.json or `scaler fit --out`), or a sweep spec")],
    at: Annotated[Path | None, typer.Option(help="a CSV of points to predict")] = None,
    n: Annotated[str | None, typer.Option(help="--at: the parameters column")] = None,
    d: Annotated[str | None, typer.Option(help="--at: the training tokens column")] = None,
    flops: Annotated[str | None, typer.Option(help="--at: a training FLOPs column (D from the fit's convention)")] = None,
    group: Annotated[str | None, typer.Option(help="--at: the group (tier, dataset) column")] = None,
    unique: Annotated[str | None, typer.Option(help="--at: the unique tokens column (data_constrained law)")] = None,
    params: Annotated[float | None, typer.Option(help="one point: parameters N")] = None,
    tokens: Annotated[float | None, typer.Option(help="one point: training tokens D")] = None,
    tier: Annotated[str | None, typer.Option(help="the group or tier of every point (when the fit has several)")] = None,
    out: Annotated[Path | None, typer.Option(help="also write the predictions as JSON to this file")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the predictions as JSON only")] = False,
) -> None:
    """Predicted loss of planned runs, with a 95% prediction interval and how far each extrapolates."""
    from scaler.fit.predict import SHRINK, ranking_lines
    from scaler.fit.result import PredictError, predict as predict_loss

    with _user_errors(PredictError):
        if out is not None:
            _check_output_file(out, "--out")
        points = _points(at, n, d, flops, group, params, tokens, tier, unique)
        fit_json = _fit_source(source)
        result = predict_loss(fit_json, points["n"], d=points["d"], flops=points["flops"], groups=points["groups"],
                              unique=points["unique"])
        if out is not None:
            _write_json_file(out, result)
    rows = result["points"]
    far = [p for p in rows if p["extrapolation"] > EXTRAPOLATION_WARN]
    for label in dict.fromkeys(p["group"] for p in far):
        mine = [p for p in far if p["group"] == label]
        _warn(f"{len(mine)} point{'s' if len(mine) > 1 else ''}{'' if label is None else f' of {label}'} "
              f"extrapolate{'' if len(mine) > 1 else 's'} more than {EXTRAPOLATION_WARN:g}x (up to "
              f"{max(p['extrapolation'] for p in mine):.3g}x) beyond the largest fitted run; "
              f"{_fitted_range_text(fit_json, label)}", "extrapolation")
    if json_out:
        _print_json(result)
        return
    table = Table("N", "D", "group", "C (FLOPs)", "loss", "95% interval", "extrapolation", "width mostly from", "law",
                  title=f"predictions from {source}")
    for p in rows:
        width = p.get("width")
        table.add_row(f"{p['n']:.4g}", f"{p['d']:.4g}", str(p["group"] or "-"), f"{p['flops']:.3g} ({p['convention']})",
                      f"{p['loss']:.4f}", f"[{p['interval'][0]:.4f}, {p['interval'][1]:.4f}]",
                      f"{p['extrapolation']:.3g}x",
                      "-" if not width else f"{width['dominant'].replace('_', ' ')} ({width['shares'][width['dominant']]:.0%})",
                      p["law"])
    _console().print(table)
    for line in ranking_lines(result["rankings"]):
        _say(line)
    dominant = {p["width"]["dominant"] for p in rows if p.get("width")}
    for term in sorted(dominant):
        _note(f"where the width is mostly {term.replace('_', ' ')}, what would shrink it: {SHRINK[term]}")
    if out is not None:
        _note(f"wrote {out}")


def _fitted_range_text(fit_json: dict[str, Any], group: str | None) -> str:
    from scaler.fit.result import SweepFit

    law, _ = SweepFit.from_json(fit_json).law_for(group)
    return law.fitted_range.span_text(law.entry.get("flops_convention", "6ND"))


def _tier_values(pairs: list[str] | None, option: str) -> dict[str, float] | None:
    """`--yield clean=0.4 --yield dedup=0.8` as {tier: value}."""
    if not pairs:
        return None
    out: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"{option} {pair!r}: expected GROUP=NUMBER") from None
        if not sep or not name.strip():
            raise ConfigError(f"{option} {pair!r}: expected GROUP=NUMBER")
    return out


@app.command()
def recommend(
    spec_file: Annotated[Path | None, typer.Argument(help="a sweep spec whose runs are done (or give --fit)")] = None,
    budget: Annotated[float, typer.Option(help="the budget, in --unit")] = ...,
    unit: Annotated[str, typer.Option(help="flops | gpu-hours | usd")] = "flops",
    fit_file: Annotated[Path | None, typer.Option("--fit", help="a fit JSON (`scaler fit --table ... --out`) of runs trained anywhere, instead of a spec")] = None,
    yields: Annotated[list[str] | None, typer.Option("--yield", help="GROUP=FRACTION: tokens kept per raw token (repeatable; default 1, or the build's)")] = None,
    cleaning_costs: Annotated[list[str] | None, typer.Option("--cleaning-cost", help="GROUP=FLOPS_PER_RAW_TOKEN: the cost of producing the tier (repeatable; default 0, or the build's)")] = None,
    raw_tokens: Annotated[float | None, typer.Option(help="raw token pool U (default: the build's raw tier; needed with --fit)")] = None,
    peak_flops: Annotated[float | None, typer.Option(help="FLOP/s of one device (gpu-hours, usd)")] = None,
    mfu: Annotated[float | None, typer.Option(help="model FLOPs utilisation there")] = None,
    usd_per_hour: Annotated[float | None, typer.Option(help="price of one device hour (usd)")] = None,
    bootstrap: Annotated[int | None, typer.Option(help="bootstrap resamples for the verdict's probability (default: the spec's fit.bootstrap)")] = None,
    force: Annotated[bool, typer.Option(help=f"answer even beyond {EXTRAPOLATION_REFUSE:g}x the largest fitted run")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print the recommendation as JSON only")] = False,
) -> None:
    """For a budget: the best N, D and tier, whether to spend it on model size or on cleaner data,
    the crossover budget and how far the answer extrapolates."""
    from scaler.recommend import to_flops
    from scaler.sweep.spec import load_sweep_spec

    with _user_errors(ValueError):
        if (spec_file is None) == (fit_file is None):
            raise ConfigError("give a sweep spec, or --fit FIT.json (with --raw-tokens U) for runs trained anywhere")
        flops = to_flops(budget, unit, peak_flops=peak_flops, mfu=mfu, usd_per_hour=usd_per_hour)
        options = {"yields": _tier_values(yields, "--yield"),
                   "cleaning_costs": _tier_values(cleaning_costs, "--cleaning-cost"), "force": force}
        if spec_file is not None:
            spec = load_sweep_spec(spec_file)
            result = workflow.sweep_recommendation(spec, _sweep_fit(spec, bootstrap), flops, raw_tokens, **options)
        else:
            result = workflow.sweep_recommendation(None, _read_fit_json(fit_file), flops, raw_tokens, **options)  # type: ignore[arg-type]
    if result.extrapolation and result.extrapolation > EXTRAPOLATION_WARN:
        _warn(f"the budget is {result.extrapolation:.3g}x the largest fitted run: the answer extrapolates far "
              "beyond the evidence (see the note below)", "extrapolation")
    if json_out:
        _print_json(result.to_json())
        return
    for line in result.lines():
        _say(line)


@app.command()
def report(
    spec_file: Annotated[Path | None, typer.Argument(help="a sweep spec whose runs are done (or give --fit)")] = None,
    fit_file: Annotated[Path | None, typer.Option("--fit", help="a fit JSON (`scaler fit --table ... --out`): a report of runs trained anywhere")] = None,
    out: Annotated[Path | None, typer.Option(help="output folder (default reports/<sweep name>, or reports/<fit file name>)")] = None,
    budget_multiple: Annotated[float, typer.Option(help="recommend (and state the extrapolation) for this multiple of the largest run")] = 100.0,
    bootstrap: Annotated[int | None, typer.Option(help="bootstrap resamples (default: the spec's fit.bootstrap)")] = None,
) -> None:
    """Figures, a Markdown report and a self-contained HTML page for a fitted sweep or a fit JSON."""
    from scaler.report.render import build_report_from_fit
    from scaler.sweep.spec import load_sweep_spec

    with _user_errors(ValueError):
        if (spec_file is None) == (fit_file is None):
            raise ConfigError("give a sweep spec, or --fit FIT.json")
        if not budget_multiple > 0:
            raise ConfigError(f"--budget-multiple {budget_multiple}: expected a positive multiple")
        if spec_file is not None:
            spec = load_sweep_spec(spec_file)
            out_dir = out or Path("reports") / spec.name
            check_writable_folder(str(out_dir), "--out")
            paths = workflow.sweep_report(spec_file, spec, out_dir, budget_multiple, _sweep_fit(spec, bootstrap))
        else:
            fit_json = _read_fit_json(fit_file)  # type: ignore[arg-type]
            if not fit_json.get("largest_run_flops"):
                raise ConfigError(f"--fit {fit_file}: the fit failed or predates scaler's fit.json schema 4 "
                                  f"({fit_json.get('error', 'no largest_run_flops')}); refit it")
            out_dir = out or Path("reports") / fit_file.stem  # type: ignore[union-attr]
            check_writable_folder(str(out_dir), "--out")
            paths = build_report_from_fit(fit_json, out_dir, f"scaler report: {fit_file}",
                                          target_flops=budget_multiple * fit_json["largest_run_flops"])
    for name, path in paths.items():
        _say(f"{name}: {path}")


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
    from scaler.advance import table_lines
    from scaler.sweep.spec import load_sweep_spec

    with _user_errors(ValueError):
        spec = load_sweep_spec(spec_file)
        step = _advance(spec, budget_hours, _numbers(reach, "--reach"), pairs, budget, runner, workers)
    if json_out:
        _print_json(step)
        return
    for line in table_lines(step):
        _say(line)


def _advance(spec, budget_hours: float | None, reach: list[float], pairs: int, target_flops: float | None,
             runner: str = "local", workers: int = 2) -> dict[str, Any]:
    """One advance step of `spec` (`workflow.advance_sweep`), its runs trained with `runner`."""
    from scaler.sweep.engines import make_runner

    engine = make_runner(runner, workers=workers, resources=spec.resources.model_dump())
    return workflow.advance_sweep(spec, engine, lambda runs: _train(spec, runs, engine, runner, workers, 1, None),
                                  reach=reach, pairs=pairs, budget_hours=budget_hours, target_flops=target_flops,
                                  workers=workers, progress=_note)


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
    import numpy as np

    from scaler.design import simulate, table_lines
    from scaler.sweep.spec import load_sweep_spec

    with _user_errors(ValueError):
        prior_entry = workflow.prior_quality(_read_fit_json(prior), str(prior))
        specs = [load_sweep_spec(f) for f in spec_files]
        designs = [workflow.design_runs(spec, f.stem, prior_entry) for spec, f in zip(specs, spec_files, strict=True)]
        target = budget or 100.0 * float(np.max(designs[0].columns["C"]))

        def recommend_at(spec):
            return lambda entry: workflow.sweep_recommendation(spec, entry, target, crossover_budgets=0)

        results = []
        for spec, d in zip(specs, designs, strict=True):
            _note(f"design {d.name}: {len(d.groups)} runs, {d.trained_flops:.3g} FLOPs trained; {sims} synthetic sweeps")
            results.append(simulate(d, prior_entry, recommend_at(spec), n_sims=sims, n_bootstrap=bootstrap,
                                    noise_sd=noise, seed=seed))
    if json_out:
        _print_json({"target_flops": target, "designs": results})
        return
    for line in table_lines(results, target):
        _say(line)


def _numbers(text: str, option: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise ConfigError(f"{option} {text!r}: expected comma-separated numbers, e.g. 4,8") from None


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
    from scaler.advance import read_steps, table_lines
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
        paths = workflow.sweep_report(spec_file, spec, out, target / fit_json["largest_run_flops"], fit_json)
    for name, path in paths.items():
        _say(f"{name}: {path}")
    _heading(f"5. recommendation for {target:.3g} FLOPs ({DEMO_BUDGET_MULTIPLE:g}x the sweep's largest budget)")
    with _user_errors(ValueError):
        result = workflow.sweep_recommendation(spec, fit_json, target)
    for line in result.lines():
        _say(line)
    _note(f"demo done in {time.perf_counter() - t0:.0f} s; report: {out / 'index.html'}")


if __name__ == "__main__":
    app()
