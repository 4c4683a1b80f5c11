"""The `scaler` Typer app, its `data` group, and the process set-up every command runs first."""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Scaling-law and data-mix experiment planner.")
data_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Build and inspect cleaned, tokenized data tiers.")
app.add_typer(data_app, name="data")


@app.callback()
def _process_setup() -> None:
    """Before any command: one XLA CPU device per core, and the persistent compilation cache
    (scaler/runtime.py). Done here, when a command runs, never at import."""
    from scaler.runtime import configure_compilation_cache, configure_cpu

    configure_cpu()
    configure_compilation_cache()
