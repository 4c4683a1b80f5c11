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

DEMO_RUN = Path(__file__).resolve().parent.parent / "examples" / "demo_run.toml"


def _train_with_progress(config: RunConfig, store_root: str) -> None:
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


@app.command()
def train(
    run_file: Annotated[Path, typer.Argument(help="a run config (TOML)")],
    store: Annotated[str, typer.Option(help="results store root: a folder or an fsspec URL")] = "store/adhoc",
) -> None:
    """Train one run into the store, resuming from its checkpoint if it was interrupted."""
    try:
        config = load_run_config(run_file)
    except ConfigError as err:
        console.print(f"[red]error:[/] {err}")
        raise typer.Exit(2) from None
    _train_with_progress(config, store)


@app.command()
def demo(store: Annotated[str, typer.Option(help="results store root")] = "store/demo") -> None:
    """Train the demo run (a small model on this machine's standard library) and show where it went."""
    _train_with_progress(load_run_config(DEMO_RUN), store)
    load = f"python -c \"from scaler.store import load_curves; print(load_curves('{store}'))\""
    console.print(f"load its curves with: {load}", soft_wrap=True, markup=False)


if __name__ == "__main__":
    app()
