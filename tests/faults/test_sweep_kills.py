"""Sweeps killed at random instants, and several submitters plus Ray (its workers killed, its tasks
retried) on one sweep: no metrics row lost, no wrong final loss, no finished run trained again,
and every run ends done with the rows of its uninterrupted twin (issue 12).

CI mode kills a 4-run `scaler run --workers 2` once per stack size and one Ray worker;
SCALER_FAULTS=long kills an 8-run sweep 40 times per kind and Ray workers 10 times. Real processes, a real local Ray head on 127.0.0.1.
"""

from __future__ import annotations

import os
import random
from collections import Counter
import signal
import subprocess
import time
from pathlib import Path

import pytest
from faultkit import LONG, alive, claims, kill_at_random, same_runs, scaler, wait_for

from scaler.store import Store
from scaler.sweep.spec import expand, load_sweep_spec

SWEEP_KILLS = 40 if LONG else 1
RAY_KILLS = 10 if LONG else 1
TOKENS = "[10_240, 15_360]" if LONG else "[10_240]"  # 8 runs in long mode, 4 in CI
SPEC = '''name = "kills"
store = "{store}"
retries = 1
[model]
seq_len = 32
[train]
batch_size = 8
eval_tokens = 256
eval_every_steps = 10
checkpoint_every_steps = 10
[design]
seeds = [0, 1]
[design.grid]
sizes = [20_000, 100_000]
tokens = {tokens}
'''


def sweep(tmp_path: Path, name: str) -> tuple[Path, Path]:
    spec, root = tmp_path / f"{name}.toml", tmp_path / name
    spec.write_text(SPEC.format(store=root, tokens=TOKENS))
    return spec, root


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory):
    """The sweep's runs trained by one `scaler run --stack K`, never interrupted (per K, once)."""
    trained: dict[str, tuple[Store, list[str]]] = {}

    def sweep_with(stack: str) -> tuple[Store, list[str]]:
        if stack not in trained:
            spec, root = sweep(tmp_path_factory.mktemp("reference"), "whole")
            assert scaler("run", str(spec), "--stack", stack).wait(timeout=600) == 0
            trained[stack] = Store(str(root)), [run.run_id for run in expand(load_sweep_spec(spec))]
        return trained[stack]

    return sweep_with


def attempts_of_done_runs(store: Store, run_ids: list[str]) -> dict[str, int]:
    statuses = {run_id: store.read_status(run_id) for run_id in run_ids}
    return {run_id: s.get("attempts", 0) for run_id, s in statuses.items() if s["state"] == "done"}


@pytest.mark.parametrize("stack", ["1", "2"])
def test_a_sweep_killed_at_random_instants_loses_nothing(stack: str, reference, tmp_path: Path) -> None:
    """`scaler run --workers 2 --stack K` killed again and again (a new store once a sweep has
    finished); each store is finished by one more `scaler run` and compared with the
    uninterrupted sweep: bit for bit for solo runs; to fp32 rounding for stacks, whose members
    killed between their saves resume from different steps in smaller stacks."""
    want, run_ids = reference(stack)
    rng, aimed, stores = random.Random(7), Counter(), 0
    command = ("run", "--workers", "2", "--stack", stack)

    def finish_and_check(spec: Path, root: Path, finished: dict[str, int]) -> None:
        assert scaler(command[0], str(spec), *command[1:]).wait(timeout=600) == 0
        store = Store(str(root))
        assert {k: v for k, v in attempts_of_done_runs(store, run_ids).items() if k in finished} == finished
        same_runs(store, want, run_ids, rtol=0 if stack == "1" else 2e-5)
        assert not list(root.glob("runs/*/claim.json"))

    spec, root = sweep(tmp_path, "killed-0")
    finished: dict[str, int] = {}
    for _ in range(SWEEP_KILLS):
        if len(finished) == len(run_ids):  # this store's sweep is done: check it, start another
            finish_and_check(spec, root, finished)
            stores += 1
            spec, root, finished = *sweep(tmp_path, f"killed-{stores}"), {}
        parent = scaler(command[0], str(spec), *command[1:])
        aimed[kill_at_random(parent, root, rng, anywhere_s=15.0)] += 1
        workers = {c["pid"] for c in claims(root)}
        wait_for(lambda: not any(alive(pid) for pid in workers), timeout_s=30)  # they die with their parent
        now = attempts_of_done_runs(Store(str(root)), run_ids)
        assert {k: now[k] for k in finished} == finished  # a finished run is never trained again
        finished = now
    finish_and_check(spec, root, finished)
    print(f"{SWEEP_KILLS} kills of `scaler run --workers 2 --stack {stack}` ({dict(aimed)}) over {stores + 1} sweeps")


def test_submitters_and_ray_with_retries_share_one_sweep(reference, tmp_path: Path) -> None:
    """Two local submitters and a Ray submission work on one sweep at once; Ray workers are killed
    while they train (Ray retries their tasks, which take back their claims) and one submitter is
    killed and started again. Each run is trained by one worker at a time and ends equal to its
    uninterrupted twin. Rounds on fresh sweeps (at most 3 Ray kills each) until RAY_KILLS."""
    from scaler.sweep.cluster import local_ray_head

    want, run_ids = reference("1")
    rng, ray_kills, rounds = random.Random(11), 0, 0
    with local_ray_head(num_cpus=2) as address:
        while ray_kills < RAY_KILLS:
            spec, root = sweep(tmp_path, f"shared-{rounds}")
            kills = _share_one_sweep(spec, root, address, rng, min(3, RAY_KILLS - ray_kills))
            store = Store(str(root))
            same_runs(store, want, run_ids)
            total_attempts = sum(store.read_status(r)["attempts"] for r in run_ids)
            assert total_attempts <= len(run_ids) + kills + 1  # one attempt per run, one more per kill at most
            assert not list(root.glob("runs/*/claim.json"))
            ray_kills, rounds = ray_kills + kills, rounds + 1
    print(f"{ray_kills} Ray workers killed over {rounds} sweeps shared with two local submitters")


def _share_one_sweep(spec: Path, root: Path, address: str, rng: random.Random, most: int) -> int:
    """Run the sweep with Ray and two local submitters, killing up to `most` Ray workers while they
    train (at least one) and one local submitter; the number of Ray workers killed."""
    ray_submission = scaler("run", str(spec), "--runner", "ray", "--address", address)
    local: list[subprocess.Popen] = []
    kills, deadline = 0, time.time() + 300
    while kills < most and ray_submission.poll() is None and time.time() < deadline:
        held = [c for c in claims(root) if str(c.get("owner", "")).startswith("ray:") and alive(c["pid"])]
        if not held:
            time.sleep(0.05)
            continue
        time.sleep(rng.uniform(0.0, 1.0))  # while it trains, writes rows or saves a checkpoint
        if alive(held[0]["pid"]):
            os.kill(held[0]["pid"], signal.SIGKILL)  # a crashed Ray worker: Ray runs the task again
            kills += 1
        if not local:  # the other submitters join after the first kill
            local = [scaler("run", str(spec)), scaler("run", str(spec))]
    assert kills >= 1 and local
    kill_at_random(local[0], root, rng, anywhere_s=5.0)  # a submitter killed, then started again
    local[0] = scaler("run", str(spec))
    for proc in [ray_submission, *local]:
        assert proc.wait(timeout=600) == 0
    return kills
