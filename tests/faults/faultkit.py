"""Helpers of the fault tests: start scaler commands as real processes, SIGKILL them at random
instants, compare a store's runs with runs trained without interruption, and check that a command
failed in one documented line."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from scaler.store import Store

TIMING = ("tokens_per_s",)  # wall-clock columns differ between any two runs
LONG = os.environ.get("SCALER_FAULTS") == "long"


def one_device() -> dict[str, str]:
    """This environment with one XLA CPU device for every process (the CLI, pool workers, Ray
    workers): the batch is split across devices, so a run resumed on another device count would
    differ in the last bits."""
    return {**{k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}, "SCALER_CPU_DEVICES": "1"}


def scaler(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`scaler ARGS` as a process of its own (one XLA device unless `env` says otherwise), its
    output discarded."""
    return subprocess.Popen([sys.executable, "-m", "scaler.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env or one_device())


def wait_for(condition: Callable[[], bool], timeout_s: float = 120.0) -> None:
    deadline = time.time() + timeout_s
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def json_files(root: Path, name: str) -> list[dict]:
    """The readable `name` files of every run under the store `root` (those being written skipped)."""
    out = []
    for path in sorted(root.glob(f"runs/*/{name}")):
        try:
            held = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(held, dict):
            out.append(held)
    return out


def claims(root: Path) -> list[dict]:
    return json_files(root, "claim.json")


def states(root: Path) -> list[str]:
    return [status.get("state", "") for status in json_files(root, "status.json")]


def alive(pid: int) -> bool:
    """Running (a zombie that no init has reaped yet counts as dead)."""
    import psutil  # installed with ray

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def metrics_writes(root: Path) -> tuple:
    """Changes whenever any run of the store writes metrics rows."""
    out = []
    for path in root.glob("runs/*/metrics.parquet"):
        try:
            out.append((path.parent.name, path.stat().st_mtime_ns))
        except OSError:
            pass
    return tuple(sorted(out))


def kill_at_random(proc: subprocess.Popen, root: Path, rng: random.Random, anywhere_s: float) -> str:
    """SIGKILL `proc` at a random instant and say where it was aimed: half the kills land anywhere
    in its first `anywhere_s` seconds (start-up, compiling, training), the other half a random
    moment (up to 1 s) after it wrote a metrics row (training, writing rows, saving checkpoints),
    the windows that lose data when writes are not ordered."""
    if rng.random() < 0.5:
        time.sleep(rng.uniform(0.2, anywhere_s))
        where = "anywhere"
    else:
        before = metrics_writes(root)
        deadline = time.time() + 120
        while metrics_writes(root) == before and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.0))
        where = "training"
    proc.kill()
    proc.wait()
    return where


def same_rows(got: pl.DataFrame, want: pl.DataFrame, what: str = "", rtol: float = 0.0) -> None:
    """The same steps, once each, with equal values (to `rtol`; wall-clock columns aside)."""
    assert got["step"].to_list() == want["step"].to_list(), what
    for column in want.columns:
        if column not in TIMING:
            np.testing.assert_allclose(got[column].to_numpy(), want[column].to_numpy(), rtol=rtol, atol=0,
                                       err_msg=f"{what} {column}")


def same_runs(store: Store, reference: Store, run_ids: list[str], rtol: float = 0.0) -> None:
    """Every run done, with the rows and final loss of its uninterrupted twin in `reference`."""
    for run_id in run_ids:
        status, want = store.read_status(run_id), reference.read_status(run_id)
        assert status["state"] == "done", (run_id, status)
        np.testing.assert_allclose(status["final"]["eval_heldout_loss"], want["final"]["eval_heldout_loss"],
                                   rtol=rtol, atol=0, err_msg=run_id)
        same_rows(store.read_metrics(run_id), reference.read_metrics(run_id), run_id, rtol)


def documented(result) -> None:
    """A CliRunner result: exit 0, or exit 2 with one line `error: ...` on stderr; never a traceback."""
    if result.exit_code == 0:
        return
    assert result.exit_code == 2, (result.exit_code, result.output, repr(result.exception))
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr


# A data build's perplexity reference small enough to train in a second (tests of data builds).
SMALL_REFERENCE = """[data.build.steps.perplexity]
reference_params = 20000
reference_tokens = 4096
reference_min_tokens = 1024
reference_seq_len = 64
reference_batch_size = 16
"""
