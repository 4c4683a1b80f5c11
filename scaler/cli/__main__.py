"""`python -m scaler.cli`: the `scaler` command."""

from scaler.cli import app

app()
