"""Claims across commands and processes (issue 12): `scaler train` takes the claim sweep workers
take, a killed worker's run shows as `stopped` at once on its own host, and the pool workers of a
killed `scaler run` die with it. Real processes, real SIGKILLs."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from faultkit import alive, claims, scaler, states, wait_for
from typer.testing import CliRunner

from scaler.cli import app
from scaler.store import Store

LONG_RUN = ("[model]\nd_model = 32\nn_layers = 1\nn_heads = 2\nd_ff = 96\nvocab_size = 257\nseq_len = 32\n"
            "[train]\ntokens = 1_024_000\nbatch_size = 8\nlr = 1e-2\neval_tokens = 256\n")


def test_two_scaler_train_of_one_run_train_it_once(tmp_path: Path) -> None:
    run_file, root = tmp_path / "run.toml", tmp_path / "store"
    run_file.write_text(LONG_RUN)
    first = scaler("train", str(run_file), "--store", str(root))
    try:
        wait_for(lambda: claims(root))
        second = CliRunner().invoke(app, ["train", str(run_file), "--store", str(root)])
        assert second.exit_code == 1 and "is being trained by" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        first.kill()
        first.wait()
    store = Store(str(root))
    (run_id,) = store.run_ids()
    assert store.read_status(run_id)["attempts"] == 1  # the refused command never started an attempt


def test_killed_workers_show_as_stopped_and_pool_workers_die_with_their_parent(tmp_path: Path) -> None:
    spec, root = tmp_path / "sweep.toml", tmp_path / "store"
    spec.write_text(f'name = "t"\nstore = "{root}"\n[model]\nseq_len = 32\n[train]\nbatch_size = 8\n'
                    "eval_tokens = 256\n[design.grid]\nsizes = [20_000]\ntokens = [1_024_000, 1_026_048]\n")
    parent = scaler("run", str(spec), "--workers", "2")
    try:
        wait_for(lambda: len(claims(root)) == 2 and [states(root)] == [["running", "running"]])
        workers = {c["pid"] for c in claims(root)}
        assert parent.pid not in workers and all(alive(pid) for pid in workers)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    wait_for(lambda: not any(alive(pid) for pid in workers), timeout_s=30)  # they die with the parent
    status = CliRunner().invoke(app, ["status", str(spec), "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["counts"]["stopped"] == 2  # at once: their processes are gone
