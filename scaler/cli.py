"""The `scaler` command. JAX is imported inside commands that train, so `--help` stays fast."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from scaler.config import ConfigError, RunConfig, load_run_config
from scaler.runtime import configure_compilation_cache, configure_cpu

configure_cpu()  # one XLA CPU device per core, before JAX starts (scaler/runtime.py)
configure_compilation_cache()  # runs of one shape compile once

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Scaling-law and data-mix experiment planner.")
console = Console()


@contextlib.contextmanager
def _user_errors(*kinds: type[Exception]) -> Iterator[None]:
    """Bad input (ConfigError, or the other kinds named) becomes `error: ...` and exit code 2."""
    try:
        yield
    except (ConfigError, *kinds) as err:
        console.print(f"[red]error:[/] {err}")
        raise typer.Exit(2) from None


def _train_with_progress(config: RunConfig, store_root: str):
    from scaler.store import Store
    from scaler.train.defaults import resolve
    from scaler.train.loop import run_info, train_run

    resolved = resolve(config)
    info = run_info(resolved)
    console.print(
        f"[bold]{config.name or 'run'}[/]: {info['n_params']:,} parameters, {resolved.train.tokens:,} tokens, "
        f"{info['steps']:,} steps, {info['flops']:.3g} FLOPs ({resolved.flops_convention})"
    )
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("loss {task.fields[loss]}  {task.fields[tok_s]} tok/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("training", total=info["steps"], loss="-", tok_s="-")

        def on_row(row: dict[str, Any]) -> None:
            eval_loss = row.get("eval_heldout_loss")
            loss = f"{row['train_loss']:.3f}" + (f" (heldout {eval_loss:.3f})" if eval_loss else "")
            bar.update(task, completed=row["step"], loss=loss, tok_s=f"{row['tokens_per_s']:,.0f}")

        t0 = time.perf_counter()
        result = train_run(config, Store(store_root), progress=on_row)
    console.print(f"run [bold]{result.run_id}[/] {result.state} in {time.perf_counter() - t0:.1f} s")
    if result.final:
        table = Table("metric", "value", box=None)
        for key, value in result.final.items():
            table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
        console.print(table)
    console.print(f"results: {result.run_dir}")
    return result


@app.command()
def train(
    run_file: Annotated[Path, typer.Argument(help="a run config (TOML)")],
    store: Annotated[str, typer.Option(help="results store root: a folder or an fsspec URL")] = "store/adhoc",
) -> None:
    """Train one run into the store, resuming from its checkpoint if it was interrupted."""
    with _user_errors():
        config = load_run_config(run_file)
        _train_with_progress(config, store)


data_app = typer.Typer(no_args_is_help=True, help="Build and inspect cleaned, tokenized data tiers.")
app.add_typer(data_app, name="data")


class _Bars:
    """One rich progress bar per named long step."""

    def __init__(self, progress: Progress):
        self.progress, self.tasks = progress, {}

    def __call__(self, what: str, done: int, total: int) -> None:
        if what not in self.tasks:
            self.tasks[what] = self.progress.add_task(what, total=total)
        self.progress.update(self.tasks[what], completed=done, total=total)


def _mb(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:,.1f}"


@data_app.command("build")
def data_build(
    spec: Annotated[Path | None, typer.Argument(help="a TOML file with a [data.build] table (a sweep spec)")] = None,
    source: Annotated[list[str] | None, typer.Option(help="stdlib, site-packages, dir:PATH, jsonl:PATH, parquet:PATH")] = None,
    tiers: Annotated[str | None, typer.Option(help="comma-separated tiers to build (and those they build on)")] = None,
    tokenizer: Annotated[list[str] | None, typer.Option(help="bytes or bpe-N (repeatable)")] = None,
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
        report = _build_with_progress(build_spec, out_dir, force)
    _print_tiers(report)


def _build_with_progress(build_spec, out_dir: Path, force: bool = False) -> dict[str, Any]:
    from scaler.data.build import build

    columns = (TextColumn("{task.description:<24}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        report = build(build_spec, out_dir, force=force, progress=_Bars(bar))
    if report.get("skipped"):
        console.print(f"{out_dir}: build {report['build_id']} is up to date (--force rebuilds it)")
    else:
        console.print(f"built {report['build_id']} into {out_dir}: {_mb(report['bytes_read'])} MB in "
                      f"{report['seconds']:.1f} s ({report['mb_per_s']:.2f} MB/s)")
    return report


def _print_tiers(report: dict[str, Any]) -> None:
    tokenizers = list(report["tokenizers"])
    table = Table("tier", "built from", "docs", "MB", "yield", *[f"{t} tokens" for t in tokenizers],
                  title="tiers (training split; yield = share of raw tokens)")
    for name, tier in report["tiers"].items():
        own = tier["steps"][len(report["tiers"][tier["base"]]["steps"]):] if tier["base"] else tier["steps"]
        built_from = " + ".join(([tier["base"]] if tier["base"] else []) + own) or "sources"
        label = f"{name} [yellow](synthetic)[/]" if tier["synthetic"] else name
        tokens = [f"{tier[f'{t}_train_tokens']:,}" for t in tokenizers]
        yield_ = tier[f"{tokenizers[0]}_yield"] if tokenizers else tier["yield_bytes"]
        table.add_row(label, built_from, f"{tier['train_documents']:,}", _mb(tier["train_bytes"]), f"{yield_:.1%}",
                      *tokens)
    console.print(table)


@data_app.command("inspect")
def data_inspect(
    data_dir: Annotated[Path, typer.Argument(help="a folder written by `scaler data build`")],
    examples: Annotated[int, typer.Option(help="removed examples shown per reason")] = 2,
) -> None:
    """Print a build's report: sources, steps with removal reasons and costs, tiers, examples."""
    import json

    path = data_dir / "report.json"
    if not path.exists():
        console.print(f"[red]error:[/] {path}: not found (is {data_dir} a data folder?)")
        raise typer.Exit(2)
    report = json.loads(path.read_text())
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
                console.print(f"[bold]{step['step']}[/] {reason}: {case['path']} ({case['detail']})", markup=True)
                snippet = case["snippet"].replace("\n", " | ")[:160]
                console.print(f"    {snippet}", markup=False, soft_wrap=False, overflow="ellipsis")


# --- sweeps ------------------------------------------------------------------------------------


def _load_sweep(spec_file: Path):
    from scaler.sweep.spec import expand, load_sweep_spec

    spec = load_sweep_spec(spec_file)
    return spec, expand(spec)


def _states(store_root: str, runs) -> dict[str, str]:
    from scaler.store import Store

    store = Store(store_root)
    return {r.run_id: store.read_status(r.run_id)["state"] for r in runs}


def _seconds(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min" if value < 7200 else f"{value / 3600:.1f} h"


@app.command()
def plan(
    spec_file: Annotated[Path, typer.Argument(help="a sweep spec (TOML)")],
    json_out: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
    peak_flops: Annotated[float | None, typer.Option(help="FLOP/s of the target hardware (e.g. 989e12)")] = None,
    mfu: Annotated[float | None, typer.Option(help="model FLOPs utilisation expected there (default 0.4)")] = None,
    usd_per_hour: Annotated[float | None, typer.Option(help="price of one device hour")] = None,
    force: Annotated[bool, typer.Option(help="exit 0 even if the plan exceeds the spec's budgets")] = False,
) -> None:
    """One row per run (id, shape, parameters, tokens, FLOPs, epochs per tier, estimated time), then totals."""
    import json

    from scaler.sweep.plan import make_plan, over_budget, unchecked_budgets

    with _user_errors():
        spec, runs = _load_sweep(spec_file)
        result = make_plan(spec, runs, peak_flops, mfu, usd_per_hour, _states(spec.store_root, runs))
        for warning in unchecked_budgets(spec, result):
            console.print(f"[yellow]warning:[/] {warning}")
    problems = over_budget(spec, result)
    if json_out:
        print(json.dumps({**result.to_json(), "over_budget": problems}, indent=1))
    else:
        _print_plan(spec, result)
    if problems and not force:
        for problem in problems:
            console.print(f"[red]over budget:[/] {problem} (--force to go ahead)")
        raise typer.Exit(3)


def _epochs(value: float | None) -> str:
    return "?" if value is None else f"{value:.3f}"


def _print_plan(spec, result) -> None:
    tiers = sorted({t for r in result.rows for t in r.epochs})
    table = Table("run id", "design", "mix", "seed", "shape", "params", "tokens", "FLOPs",
                  *[f"epochs {t}" for t in tiers], "est.", "state", title=f"sweep {spec.name}: {len(result.rows)} runs")
    for r in result.rows:
        table.add_row(r.run_id, r.point, r.mix, str(r.seed), f"{r.d_model}x{r.n_layers}", f"{r.n_params:,}",
                      f"{r.tokens:,}", f"{r.flops:.3g}", *[_epochs(r.epochs.get(t)) for t in tiers],
                      _seconds(r.est_seconds), r.state)
    console.print(table)
    usd = f", ${result.total_usd:,.2f}" if result.total_usd is not None else ""
    left = [r.est_seconds for r in result.rows if r.state not in ("done", "diverged")]
    hours = f" = {result.total_seconds / 3600:.2f} device-hours" if result.total_seconds is not None else ""
    console.print(f"total {result.total_flops:.3g} FLOPs, {_seconds(result.total_seconds)}{hours}{usd}; "
                  f"left to run: {len(left)} runs, {_seconds(None if None in left else sum(left))}; "
                  f"estimate: {result.estimate}")
    if result.provisional_ids:
        console.print("[yellow]data not built yet:[/] run ids are provisional until `scaler data build` or `scaler run`")


@app.command()
def calibrate(spec_file: Annotated[Path, typer.Argument(help="a sweep spec (TOML)")]) -> None:
    """Measure training throughput of every shape in the spec on this machine (used by `scaler plan`)."""
    from scaler.sweep.plan import cache_path, calibrate as measure

    with _user_errors():
        _, runs = _load_sweep(spec_file)
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("calibrating shapes", total=None)
        measured = measure(runs, progress=lambda done, total: bar.update(task, completed=done, total=total))
    table = Table("shape", "tokens/s", "GFLOP/s", title=f"throughput on this machine ({cache_path()})")
    for key, entry in sorted(measured.items()):
        table.add_row(key, f"{entry['tokens_per_s']:,.0f}", f"{entry['flops_per_s'] / 1e9:.1f}")
    console.print(table)


def _prepare_data(spec) -> None:
    """Build the spec's data if it has a [data.build] table (skipped when up to date)."""
    if spec.data.dir is None or spec.data.build is None:
        return
    from scaler.data.build import parse_build_spec

    _build_with_progress(parse_build_spec(spec.data.build, "data.build"), Path(spec.data.dir))


@app.command()
def run(
    spec_file: Annotated[Path, typer.Argument(help="a sweep spec (TOML)")],
    runner: Annotated[str, typer.Option(help="local | ray | slurm")] = "local",
    workers: Annotated[int, typer.Option(help="local: runs trained at once (processes)")] = 1,
    max_runs: Annotated[int | None, typer.Option(min=1, help="train at most this many runs now")] = None,
    address: Annotated[str | None, typer.Option(help="ray: HOST:PORT of the head (or RAY_ADDRESS)")] = None,
    slurm_cluster: Annotated[str | None, typer.Option(help="slurm: submitit cluster (None: auto, 'local', 'debug')")] = None,
    force: Annotated[bool, typer.Option(help="run even if the plan exceeds the spec's budgets")] = False,
) -> None:
    """Train the sweep's runs: skip done ones, resume interrupted ones, retry failures."""
    from scaler.sweep.plan import make_plan, over_budget, unchecked_budgets
    from scaler.sweep.spec import expand

    with _user_errors():
        if runner not in ("local", "ray", "slurm"):
            raise ConfigError(f"--runner: expected local, ray or slurm (got {runner!r})")
        spec, _ = _load_sweep(spec_file)
        _prepare_data(spec)
        if spec.data.dir is not None and not (Path(spec.data.dir) / "build.json").exists():
            raise ConfigError(f"data.dir: {spec.data.dir} is not built; add a [data.build] table to the spec "
                              "or run `scaler data build` first")
        runs = expand(spec)  # now with the data's build id
        states = _states(spec.store_root, runs)
        result = make_plan(spec, runs, states=states)
        problems = over_budget(spec, result)
        if problems and not force:
            raise ConfigError("; ".join(problems) + " (--force to go ahead)")
        for warning in unchecked_budgets(spec, result):
            console.print(f"[yellow]warning:[/] {warning}")
    todo = [r for r in runs if states[r.run_id] not in ("done", "diverged")][:max_runs]
    console.print(f"sweep [bold]{spec.name}[/]: {len(runs)} runs, {len(runs) - len([r for r in runs if states[r.run_id] not in ('done', 'diverged')])} "
                  f"done, {len(todo)} to run now ({runner}); store {spec.store_root}")
    configs = [r.config.model_dump(mode="json") for r in todo]
    try:
        with _user_errors(ValueError, ConnectionError):
            outcomes = _dispatch(runner, configs, spec, workers, address, slurm_cluster, todo)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted:[/] the current run is back to pending; run the same command to resume")
        raise typer.Exit(130) from None
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome["state"]] = counts.get(outcome["state"], 0) + 1
    console.print("outcomes: " + ", ".join(f"{state} {n}" for state, n in sorted(counts.items())))
    for outcome in outcomes:
        if outcome["state"] == "failed":
            console.print(f"[red]failed[/] {outcome['run_id']}: {outcome['error']}")
    if counts.get("failed"):
        raise typer.Exit(1)


def _dispatch(runner: str, configs, spec, workers: int, address, slurm_cluster, todo):
    if runner not in ("local", "ray", "slurm"):
        raise ConfigError(f"--runner: expected local, ray or slurm (got {runner!r})")
    if not configs:
        return []
    resources = spec.resources.model_dump()
    if runner == "ray":
        from scaler.sweep.cluster import run_on_ray

        return run_on_ray(configs, spec.store_root, resources, spec.retries, address=address)
    if runner == "slurm":
        from scaler.sweep.cluster import run_on_slurm

        return run_on_slurm(configs, spec.store_root, resources, spec.retries, cluster=slurm_cluster)
    from scaler.sweep.runners import run_local

    names = {r.run_id: r.config.name for r in todo}
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[info]}"), TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        sweep_task = bar.add_task("runs", total=len(configs), info="")
        run_task = bar.add_task("current run", total=None, info="")

        def on_step(row: dict[str, Any]) -> None:
            bar.update(run_task, description=names.get(row["run_id"], row["run_id"])[-48:], completed=row["step"],
                       total=row["steps"], info=f"loss {row['train_loss']:.3f}  {row['tokens_per_s']:,.0f} tok/s")

        def on_outcome(outcome: dict[str, Any]) -> None:
            bar.advance(sweep_task)
            bar.update(sweep_task, info=f"last: {outcome['run_id']} {outcome['state']}")

        return run_local(configs, spec.store_root, spec.retries, workers, on_outcome=on_outcome, on_step=on_step)


@app.command()
def status(spec_file: Annotated[Path, typer.Argument(help="a sweep spec (TOML)")]) -> None:
    """Runs per state, the last error of failed runs, time spent and estimated time left."""
    from scaler.store import Store
    from scaler.sweep.plan import make_plan

    with _user_errors():
        spec, runs = _load_sweep(spec_file)
    store = Store(spec.store_root)
    statuses = {r.run_id: store.read_status(r.run_id) for r in runs}
    result = make_plan(spec, runs, states={k: v["state"] for k, v in statuses.items()})
    counts: dict[str, int] = {}
    spent = 0.0
    for run_id, st in statuses.items():
        state = st["state"]
        if state == "running" and store.read_claim(run_id) is None:
            state = "stopped"  # running, but no worker holds it: killed; `scaler run` resumes it
        counts[state] = counts.get(state, 0) + 1
        if "elapsed_s" in st:
            spent += st["elapsed_s"]
        elif st.get("finished_at") and st.get("started_at"):
            spent += st["finished_at"] - st["started_at"]
        if state == "running" and st.get("started_at"):
            spent += max(0.0, time.time() - st["started_at"])
    table = Table("state", "runs", title=f"sweep {spec.name} ({spec.store_root})")
    for state in ("done", "running", "stopped", "pending", "failed", "diverged"):
        table.add_row(state, str(counts.get(state, 0)))
    console.print(table)
    for run_id, st in statuses.items():
        if st["state"] == "failed":
            console.print(f"[red]failed[/] {run_id} after {st.get('attempts', 0)} attempts: {st.get('error', '?')}")
    left = [r.est_seconds for r in result.rows if r.state not in ("done", "diverged")]
    left_s = None if None in left else sum(left)
    console.print(f"time spent: {_seconds(spent)}; estimated time left: {_seconds(left_s)} ({len(left)} runs)")


# --- fitting -----------------------------------------------------------------------------------


def _law_for(name: str, data):
    from scaler.fit import laws

    if name not in laws.LAWS:
        raise ConfigError(f"--law: unknown law {name!r}; expected one of {sorted(laws.LAWS)}")
    tiers = sorted(k.removeprefix("w_") for k in data.columns if k.startswith("w_"))
    tiers.sort(key=lambda t: t != "raw")  # the reference tier (kappa = 1) first
    if name == "data_constrained" and "U" not in data.columns:
        raise ConfigError("--law data_constrained needs unique tokens: --unique COL (or runs that record them)")
    if name in ("quality", "mixing"):
        if len(tiers) < 2:
            raise ConfigError(f"--law {name} needs runs over at least two tiers or domains (w_<tier> columns)")
        return laws.LAWS[name](tiers)
    return laws.LAWS[name]()


def fit_and_report(data, law_name: str, n_bootstrap: int, seed: int) -> dict[str, Any]:
    """The parametric fit with bootstrap intervals, and allocations at 1x, 10x, 100x the largest run."""
    from scaler.fit.fitter import bootstrap, fit as fit_law

    law = _law_for(law_name, data)
    top = float(data.columns["C"].max())
    budgets = [top, 10 * top, 100 * top]
    result = fit_law(law, data.columns, data.loss)
    if n_bootstrap:
        result = bootstrap(law, data.columns, data.loss, result, n=n_bootstrap, seed=seed, budgets=budgets)
    out = {"law": law.name, "source": data.source, "dropped": data.dropped, **result.to_json()}
    out["allocations"] = []
    for budget in budgets:
        allocation = law.allocation(result.theta, budget)
        if allocation is not None:
            n_opt, d_opt = allocation
            out["allocations"].append({"flops": budget, "n_opt": n_opt, "d_opt": d_opt})
    return out


def fit_sweep(data, law_name: str, n_bootstrap: int, seed: int) -> dict[str, Any]:
    """Per data option (tier or mix): the parametric fit, IsoFLOP approach 2 and a backtest; across
    them, the quality law (effective-data multipliers) when the runs span several tiers."""
    from scaler.fit.backtest import backtest
    from scaler.fit.isoflop import approach2

    out: dict[str, Any] = {"source": data.source, "n_points": data.n_points, "groups": {}}
    for label in sorted(set(data.groups.tolist())):
        part = data.subset(data.groups == label)
        entry: dict[str, Any] = {}
        for key, compute in (
            ("parametric", lambda p=part: fit_and_report(p, law_name, n_bootstrap, seed)),
            ("isoflop", lambda p=part: approach2(p.frame(), seed=seed).to_json()),
            ("backtest", lambda p=part: backtest(_law_for(law_name, p), p.frame()).to_json()),
        ):
            try:
                entry[key] = compute()
            except (ValueError, ConfigError) as err:
                entry[key] = {"error": str(err)}
        if "error" not in entry["parametric"] and "error" not in entry["isoflop"]:
            derived, intervals = entry["parametric"]["derived"], entry["parametric"].get("intervals", {})
            iso = entry["isoflop"]
            entry["compare"] = [
                {"method": "parametric", "a": derived["a_exponent"], "a_interval": intervals.get("a_exponent"),
                 "b": derived["b_exponent"], "b_interval": intervals.get("b_exponent")},
                {"method": "isoflop approach 2", "a": iso["a"], "a_interval": iso["a_interval"],
                 "b": iso["b"], "b_interval": iso["b_interval"]},
            ]
        out["groups"][label] = entry
    tiers = [k for k in data.columns if k.startswith("w_")]
    if len(tiers) >= 2:
        try:
            out["quality"] = fit_and_report(data, "quality", n_bootstrap, seed)
        except (ValueError, ConfigError) as err:
            out["quality"] = {"error": str(err)}
    return out


def _print_fit(out: dict[str, Any]) -> None:
    table = Table("parameter", "value", "95% interval", title=f"{out['law']} fit of {out['source']} ({out['n_points']} points)")
    intervals = out.get("intervals", {})
    for name, value in {**out.get("params", {}), **out.get("derived", {})}.items():
        lo_hi = intervals.get(name)
        table.add_row(name, f"{value:.5g}", f"[{lo_hi[0]:.5g}, {lo_hi[1]:.5g}]" if lo_hi else "-")
    console.print(table)
    console.print(f"objective {out['objective']:.6g} (sum of Huber, delta 1e-3, on log losses); "
                  f"converged: {out['converged']} ({out.get('stopped', '')}, gradient norm {out.get('grad_norm', float('nan')):.2g})")
    if out.get("flat_directions"):
        console.print(f"[yellow]not identified:[/] {'; '.join(out['flat_directions'])}")
    for row in out.get("allocations", []):
        console.print(f"at C = {row['flops']:.3g} FLOPs: N_opt = {row['n_opt']:.4g}, D_opt = {row['d_opt']:.4g}")


def _print_sweep_fit(out: dict[str, Any]) -> None:
    for label, entry in out["groups"].items():
        console.rule(f"[bold]{label}")
        if "error" in entry["parametric"]:
            console.print(f"[red]parametric fit:[/] {entry['parametric']['error']}")
        else:
            _print_fit(entry["parametric"])
        iso = entry["isoflop"]
        if "error" in iso:
            console.print(f"[yellow]IsoFLOP approach 2:[/] {iso['error']}")
        else:
            a_lo, a_hi = iso["a_interval"]
            b_lo, b_hi = iso["b_interval"]
            console.print(f"IsoFLOP approach 2 ({iso['n_good']} budgets): N_opt ~ C^{iso['a']:.3f} [{a_lo:.3f}, {a_hi:.3f}], "
                          f"D_opt ~ C^{iso['b']:.3f} [{b_lo:.3f}, {b_hi:.3f}]; parametric: N_opt ~ "
                          f"C^{entry['parametric']['derived']['a_exponent']:.3f}" if "derived" in entry["parametric"] else "")
            for flagged in iso.get("flagged", []):
                console.print(f"  [yellow]budget not fitted:[/] {flagged}")
        bt = entry["backtest"]
        console.print(f"backtest: {bt.get('verdict', bt.get('error'))}")
    if "quality" in out:
        console.rule("[bold]quality law (all tiers)")
        if "error" in out["quality"]:
            console.print(f"[red]quality fit:[/] {out['quality']['error']}")
        else:
            _print_fit(out["quality"])


@app.command()
def fit(
    spec_file: Annotated[Path | None, typer.Argument(help="a sweep spec: fit its store (writes fit.json beside it)")] = None,
    table: Annotated[Path | None, typer.Option(help="a CSV of runs exported from anywhere")] = None,
    n: Annotated[str | None, typer.Option(help="--table: the parameters column")] = None,
    d: Annotated[str | None, typer.Option(help="--table: the training tokens column")] = None,
    loss: Annotated[str | None, typer.Option(help="--table: the loss column (nats)")] = None,
    unique: Annotated[str | None, typer.Option(help="--table: the unique tokens column")] = None,
    group: Annotated[str | None, typer.Option(help="--table: a group column (tier, mix, ...)")] = None,
    flops: Annotated[str | None, typer.Option(help="--table: a training FLOPs column (D = C / 6N without --d)")] = None,
    law: Annotated[str, typer.Option(help="chinchilla | data_constrained | quality | mixing")] = "chinchilla",
    drop_top_loss: Annotated[int, typer.Option(help="drop the K highest-loss rows")] = 0,
    drop_nan: Annotated[bool, typer.Option(help="drop rows with NaN values (counted) instead of refusing")] = False,
    bootstrap: Annotated[int, typer.Option(help="bootstrap resamples for intervals (0: none)")] = 1000,
    seed: Annotated[int, typer.Option(help="bootstrap seed")] = 0,
    eval_set: Annotated[str, typer.Option(help="SPEC: which eval set's final loss to fit")] = "heldout",
    json_out: Annotated[Path | None, typer.Option("--json", help="write the fit as JSON here")] = None,
) -> None:
    """Fit a scaling law (sum of Huber on log losses, 4,500 starts) with bootstrap intervals."""
    import json

    from scaler.fit.data import FitDataError, from_store, load_table

    with _user_errors(FitDataError):
        if (spec_file is None) == (table is None):
            raise ConfigError("give a sweep spec, or --table FILE.csv with --n, --loss and --d or --flops")
        if spec_file is not None:
            from scaler.sweep.spec import load_sweep_spec

            spec = load_sweep_spec(spec_file)
            data = from_store(spec.store_root, eval_set, drop_nan)
            target = json_out or Path(spec.store_root) / "fit.json"
            out = fit_sweep(data, law, bootstrap, seed)
        else:
            if not (n and loss):
                raise ConfigError("--table needs --n COL and --loss COL (and --d COL or --flops COL)")
            data = load_table(table, n=n, loss=loss, d=d, flops=flops, unique=unique, group=group,
                              drop_top=drop_top_loss, drop_nan=drop_nan)
            target = json_out
            out = fit_and_report(data, law, bootstrap, seed)
    if "groups" in out:
        _print_sweep_fit(out)
    else:
        _print_fit(out)
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(out, indent=1, default=float))
        console.print(f"wrote {target}")


# --- reports, recommendations, the demo ---------------------------------------------------------

DEMO_SWEEP = Path(__file__).resolve().parent.parent / "sweeps" / "demo.toml"


def _fit_of_sweep(spec, eval_set: str = "heldout", n_bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The sweep's fit.json, refitted when the store has runs the fit has not seen."""
    import json

    from scaler.fit.data import from_store

    path = Path(spec.store_root) / "fit.json"
    data = from_store(spec.store_root, eval_set)
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("n_points") == data.n_points:
            return saved
    out = fit_sweep(data, "chinchilla", n_bootstrap, seed)
    path.write_text(json.dumps(out, indent=1, default=float))
    return out


def _recommendation(spec, budget_flops: float, raw_tokens: float | None, n_bootstrap: int, seed: int,
                    eval_set: str = "heldout"):
    from scaler.recommend import recommend_from_store

    if spec.data.dir is None:
        raise ConfigError("recommend needs a sweep over built data tiers (data.dir)")
    return recommend_from_store(spec.store_root, spec.data.dir, budget_flops, raw_tokens=raw_tokens,
                                eval_set=eval_set, n_bootstrap=n_bootstrap, seed=seed)


@app.command()
def recommend(
    spec_file: Annotated[Path, typer.Argument(help="a sweep spec whose runs are done")],
    budget: Annotated[float, typer.Option(help="the budget, in --unit")],
    unit: Annotated[str, typer.Option(help="flops | gpu-hours | usd")] = "flops",
    raw_tokens: Annotated[float | None, typer.Option(help="raw token pool U (default: the build's raw tier)")] = None,
    peak_flops: Annotated[float | None, typer.Option(help="FLOP/s of one device (gpu-hours, usd)")] = None,
    mfu: Annotated[float | None, typer.Option(help="model FLOPs utilisation there")] = None,
    usd_per_hour: Annotated[float | None, typer.Option(help="price of one device hour (usd)")] = None,
    bootstrap: Annotated[int, typer.Option(help="bootstrap resamples for the verdict's probability")] = 1000,
    seed: Annotated[int, typer.Option(help="bootstrap seed")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="print the recommendation as JSON")] = False,
) -> None:
    """For a budget: the best N, D and tier, and whether to spend it on model size or on cleaner data."""
    import json

    from scaler.recommend import to_flops
    from scaler.sweep.spec import load_sweep_spec

    with _user_errors(ValueError):
        spec = load_sweep_spec(spec_file)
        flops = to_flops(budget, unit, peak_flops=peak_flops, mfu=mfu, usd_per_hour=usd_per_hour)
        result = _recommendation(spec, flops, raw_tokens, bootstrap, seed)
    if json_out:
        print(json.dumps(result.to_json(), indent=1, default=float))
        return
    for line in result.lines():
        console.print(line, markup=False)


@app.command()
def report(
    spec_file: Annotated[Path, typer.Argument(help="a sweep spec whose runs are done")],
    out: Annotated[Path | None, typer.Option(help="output folder (default reports/<sweep name>)")] = None,
    budget_multiple: Annotated[float, typer.Option(help="recommend for this multiple of the largest run")] = 100.0,
    bootstrap: Annotated[int, typer.Option(help="bootstrap resamples")] = 1000,
) -> None:
    """Figures, a Markdown report and a self-contained HTML page for a fitted sweep."""
    import json

    from scaler.report.render import build_report
    from scaler.sweep.spec import load_sweep_spec

    with _user_errors(ValueError):
        spec = load_sweep_spec(spec_file)
        fit_json = _fit_of_sweep(spec, n_bootstrap=bootstrap)
        data_report = None
        if spec.data.dir and (Path(spec.data.dir) / "report.json").exists():
            data_report = json.loads((Path(spec.data.dir) / "report.json").read_text())
        from scaler.fit.data import from_store

        target = budget_multiple * float(from_store(spec.store_root).columns["C"].max())
        lines = _recommendation(spec, target, None, bootstrap, 0).lines() if spec.data.dir else None
        paths = build_report(spec.store_root, fit_json, data_report, out or Path("reports") / spec.name,
                             title=f"scaler report: sweep {spec.name}", recommendation_lines=lines,
                             spec_text=Path(spec_file).read_text(), target_flops=target)
    for name, path in paths.items():
        console.print(f"{name}: {path}")


@app.command()
def demo(
    workers: Annotated[int, typer.Option(help="runs trained at once")] = 2,
    out: Annotated[Path, typer.Option(help="where the report goes")] = Path("reports/demo"),
) -> None:
    """The whole loop on this machine: build the data, run sweeps/demo.toml, fit, report, recommend."""
    import time as clock

    t0 = clock.perf_counter()
    console.rule("[bold]1. data and sweep: the standard library in tiers, 36 runs over 3 budgets x 4 sizes x 3 tiers")
    run(DEMO_SWEEP, runner="local", workers=workers, max_runs=None, address=None, slurm_cluster=None, force=False)
    console.rule("[bold]2. fit")
    from scaler.sweep.spec import load_sweep_spec

    spec = load_sweep_spec(DEMO_SWEEP)
    fit_json = _fit_of_sweep(spec)
    _print_sweep_fit(fit_json)
    console.rule("[bold]3. report")
    report(DEMO_SWEEP, out=out, budget_multiple=100.0, bootstrap=1000)
    console.rule("[bold]4. recommendation for 100x the largest run")
    from scaler.fit.data import from_store

    top = float(from_store(spec.store_root).columns["C"].max())
    for line in _recommendation(spec, 100 * top, None, 1000, 0).lines():
        console.print(line, markup=False)
    console.print(f"demo done in {clock.perf_counter() - t0:.0f} s; report: {out / 'index.html'}")


if __name__ == "__main__":
    app()
