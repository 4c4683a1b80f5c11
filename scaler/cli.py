"""The `scaler` command. JAX is imported inside commands that train, so `--help` stays fast."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from scaler.config import ConfigError, RunConfig, load_run_config
from scaler.runtime import configure_cpu

configure_cpu()  # one XLA CPU device per core, before JAX starts (scaler/runtime.py)

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Scaling-law and data-mix experiment planner.")
console = Console()

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEMO_RUN = EXAMPLES / "demo_run.toml"
DEMO_DATA = EXAMPLES / "demo_data.toml"


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
    try:
        config = load_run_config(run_file)
        _train_with_progress(config, store)
    except ConfigError as err:
        console.print(f"[red]error:[/] {err}")
        raise typer.Exit(2) from None


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

    try:
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
    except (ConfigError, FileNotFoundError) as err:
        console.print(f"[red]error:[/] {err}")
        raise typer.Exit(2) from None
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


@app.command()
def demo(store: Annotated[str, typer.Option(help="results store root")] = "store/demo") -> None:
    """Build the demo data (this machine's standard library in quality tiers), train on its clean
    and raw tiers, and compare them on the same held-out code."""
    from scaler.data.build import load_build_spec

    try:
        build_spec, data_dir = load_build_spec(DEMO_DATA)
        _print_tiers(_build_with_progress(build_spec, Path(data_dir)))
        config = load_run_config(DEMO_RUN)
        results = {}
        for tier in ("clean", "raw"):
            data = config.data.model_copy(update={"mix": {tier: 1.0}})
            results[tier] = _train_with_progress(config.model_copy(update={"name": f"demo-{tier}", "data": data}), store)
    except ConfigError as err:
        console.print(f"[red]error:[/] {err}")
        raise typer.Exit(2) from None
    table = Table("trained on", "heldout bits/byte", "humaneval bits/byte", title="same model, same tokens")
    for tier, result in results.items():
        table.add_row(tier, *(f"{result.final.get(f'eval_{s}_bpb', float('nan')):.4f}" for s in ("heldout", "humaneval")))
    console.print(table)
    load = f"python -c \"from scaler.store import load_runs; print(load_runs('{store}'))\""
    console.print(f"load the runs with: {load}", soft_wrap=True, markup=False)


if __name__ == "__main__":
    app()
