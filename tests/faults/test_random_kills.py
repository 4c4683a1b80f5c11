"""`kill -9` of `scaler train` at randomised instants: after each kill the same command finishes
the run, and the run's metrics and final loss equal an uninterrupted run's; a finished run is never
trained again (issue 12).

Half the kills land anywhere in the command's first seconds, half just after it wrote metrics rows
(`faultkit.kill_at_random`). CI mode kills twice (under a minute). Long mode, with
SCALER_FAULTS=long in the environment, kills 200 times: `SCALER_FAULTS=long pytest tests/faults`.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path

from faultkit import LONG, kill_at_random, same_rows, scaler

from scaler.config import load_run_config
from scaler.store import Store
from scaler.train import loop

RUN = ("[model]\nd_model = 32\nn_layers = 1\nn_heads = 2\nd_ff = 96\nvocab_size = 257\nseq_len = 32\n"
       "[train]\ntokens = 51200\nbatch_size = 8\nlr = 1e-2\neval_tokens = 256\neval_every_steps = 10\n"
       "checkpoint_every_steps = 20\n")
KILLS = 200 if LONG else 2


def test_kill_at_random_instants_then_finish(tmp_path: Path) -> None:
    run_file = tmp_path / "run.toml"
    run_file.write_text(RUN)
    config = load_run_config(run_file)
    whole = Store(str(tmp_path / "whole"))
    reference = loop.train_run(config, whole)
    rows = whole.read_metrics(reference.run_id)

    def check(store: Store) -> None:
        status = store.read_status(reference.run_id)
        finished = loop.train_run(config, store)  # the same run, finished by whoever comes next
        assert finished.final["eval_heldout_loss"] == reference.final["eval_heldout_loss"]
        same_rows(store.read_metrics(reference.run_id), rows)  # no row lost, none twice
        if status["state"] == "done":  # finished by the commands: never trained again
            assert store.read_status(reference.run_id)["attempts"] == status["attempts"]

    rng = random.Random(12)
    store, stores, aimed = None, 0, Counter()
    for _ in range(KILLS):
        if store is None or (store.run_ids() and store.read_status(reference.run_id)["state"] == "done"):
            if store is not None:
                check(store)
            stores += 1
            store = Store(str(tmp_path / f"killed-{stores}"))
        proc = scaler("train", str(run_file), "--store", store.root, env=dict(os.environ))  # the devices of this process
        aimed[kill_at_random(proc, Path(store.root), rng, anywhere_s=5.0)] += 1
    check(store)
    print(f"{KILLS} kills ({dict(aimed)}) over {stores} stores")
