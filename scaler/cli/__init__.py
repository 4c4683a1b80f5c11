"""The `scaler` command: it only wires. Each command parses its options, calls the library function
that does the work (`scaler.workflow` for a sweep spec's steps; data, fit, recommend, report) and
prints the result. One module per command group: train, data, sweeps (plan, calibrate, run, status,
advance, design), fitting (fit, predict), decide (recommend, report), mixture (mix), demo; common holds the output
rules they share.

Output rules: results go to stdout, progress, warnings and errors to stderr; `--json` prints JSON
only; output that is not a terminal is never wrapped; user text (paths, names, TOML keys) is
printed as written, never read as rich markup. Bad input is one line `error: ...` and exit 2.
JAX is imported inside the commands that train, so `--help` stays fast, and process set-up (XLA
host devices, the compilation cache) happens when a command runs, not when this module is imported.
"""

from __future__ import annotations

from scaler.cli import train, data, sweeps, fitting, decide, mixture, demo  # noqa: F401, I001 - each registers its commands, in this order
from scaler.cli.main import app

__all__ = ["app"]
