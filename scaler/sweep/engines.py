"""The engines behind one interface: `make_runner(name)` gives the local engine
(`scaler.sweep.runners.LocalRunner`, the default), Ray's or SLURM's (`scaler.sweep.cluster`). Every
engine has `run(configs, store_root, retries, on_outcome=None, on_step=None, stacks=None)`."""

from __future__ import annotations

from typing import Any

from scaler.errors import ParameterError
from scaler.sweep.cluster import RayRunner, SlurmRunner
from scaler.sweep.runners import LocalRunner

__all__ = ["RUNNER_NAMES", "make_runner"]

RUNNER_NAMES = ("local", "ray", "slurm")


def make_runner(name: str, *, workers: int = 1, address: str | None = None, slurm_cluster: str | None = None,
                resources: dict[str, Any] | None = None):
    """The engine called `name` (local | ray | slurm). Every engine has `run(configs, store_root,
    retries, on_outcome=None, on_step=None, stacks=None) -> outcomes in input order` (`stacks`:
    lists of indices of configs trained together); only the local engine with one worker reports
    steps. Bad settings raise ConfigError before anything runs."""
    if name not in RUNNER_NAMES:
        raise ParameterError(f"{{runner}}: expected local, ray or slurm (got {name!r})", "runner")
    if workers < 1:
        raise ParameterError(f"{{workers}} {workers}: expected 1 or more processes", "workers")
    if name == "local":
        return LocalRunner(workers)
    if name == "ray":
        return RayRunner(resources or {}, address)
    return SlurmRunner(resources or {}, slurm_cluster)
