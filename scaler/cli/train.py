"""`scaler train`: one run from a run file, with a progress bar."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from scaler.cli.common import TRACKER_HELP, _console, _note, _progress, _say, _trackers, _user_errors
from scaler.cli.main import app
from scaler.config import RunConfig, load_run_config, run_id_of
from scaler.store import check_writable_folder


def _train_with_progress(config: RunConfig, store_root: str):
    from scaler.store import Store
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
    tracker: Annotated[list[str] | None, typer.Option(help=TRACKER_HELP)] = None,
) -> None:
    """Train one run into the store, resuming from its checkpoint if it was interrupted; a run
    that another command is training (its claim is live) is refused."""
    from scaler.sweep.runners import RunClaimed

    with _user_errors():
        config = load_run_config(run_file)
        if tracker:  # adds to [train] trackers; a run's trackers are not part of its id
            trackers = _trackers(config.train.trackers, tracker)
            config = config.model_copy(update={"train": config.train.model_copy(update={"trackers": trackers})})
        check_writable_folder(store, "--store")
        try:
            _train_with_progress(config, store)
        except RunClaimed as err:  # not bad input: busy; exit 1
            _say(("error: ", "red"), str(err), stderr=True)
            raise typer.Exit(1) from None
