"""WSD branches: runs that differ only in their token count share one warmup-stable phase.

A WSD run of D tokens (`schedule = "wsd"`, scaler/train/schedule.py) warms up, holds the peak
rate, then cools down over its last `cooldown_fraction` of steps (Hägele et al. 2024). Runs of one
shape, seed, data, learning rate and warmup that differ only in D follow the same trajectory until
their cooldowns start: batch i is a function of (seed, i) and the rate is the peak. So the longest
run (the trunk) trains first, checkpointed at each shorter run's cooldown start (its branch point),
and each shorter run (a branch) is forked there: the trunk's metrics rows up to the branch point,
then that checkpoint, are copied into the branch's own folder (rows first, as the training loop
writes them), and the branch trains its cooldown by resuming. A branch is an ordinary run: its
config is a standalone WSD run's, with the same id, and its final loss equals the standalone run's
bit for bit on the CPU (tests/test_branches.py). A branch whose fork is missing (the trunk killed
before its branch point, or trained elsewhere) trains from the start, to the same result.

Rows of a branch before its branch point are the trunk's, at the trunk's logging cadence.

Families stack (`train_task`, the one trainer of a sweep task): the trunks of families that
differ in seed or data train as one stack, then their branches, stacked by token count.
"""

from __future__ import annotations

import uuid

import fsspec
import polars as pl

from scaler.config import RunConfig, run_id_of
from scaler.train.checkpoint import Checkpointer
from scaler.train.defaults import resolve
from scaler.train.folders import RunFolders
from scaler.train.loop import ProgressFn, RunResult, train_stack
from scaler.train.stack_groups import branch_point, branch_problem, group_branches, task_stacks, trunk_of


def check_branches(configs: list[RunConfig]) -> None:
    """ValueError unless the (resolved) configs are WSD runs that differ only in tokens."""
    problem = branch_problem(configs)
    if problem:
        raise ValueError(f"WSD branches: {problem}")


def fork(store: RunFolders, trunk_id: str, branch: RunConfig, step: int) -> None:
    """Start `branch` from the trunk's state at `step`: its rows up to `step`, then its checkpoint.
    A branch that has a status, rows or checkpoints of its own is left alone."""
    branch_id = run_id_of(branch.identity())
    store.write_config(branch_id, branch.identity())
    ckpt = Checkpointer(store.ckpt_dir(branch_id))
    has_progress = ckpt.all_steps() or store.read_metrics(branch_id).height
    ckpt.close()
    if has_progress or store.read_status(branch_id)["state"] != "pending":
        return
    rows = store.read_metrics(trunk_id)
    store.write_metrics(branch_id, rows.filter(pl.col("step") <= step))
    fs, source = fsspec.core.url_to_fs(f"{store.ckpt_dir(trunk_id)}/{step}")
    target = fsspec.core.url_to_fs(f"{store.ckpt_dir(branch_id)}/{step}")[1]
    partial = f"{target}.orbax-checkpoint-tmp-fork-{uuid.uuid4().hex[:8]}"  # a name orbax ignores and cleans
    fs.copy(source, partial, recursive=True)
    fs.mv(partial, target, recursive=True)


def train_branches(configs: list[RunConfig], store: RunFolders, progress: ProgressFn | None = None) -> list[RunResult]:
    """Train WSD runs that differ only in tokens as one trunk (the longest) and its branches; the
    results in input order."""
    configs = [resolve(c) for c in configs]
    check_branches(configs)
    return train_task(configs, store, progress)


def train_task(configs: list[RunConfig], store: RunFolders, progress: ProgressFn | None = None) -> list[RunResult]:
    """Train the runs of one sweep task: the trunks of its branch families (a run of no family is
    its own trunk) stacked where they stack (`stack_groups.task_stacks`), each checkpointed at its
    branches' points, where they fork; then the branches, stacked by token count. A stack of
    runs without branches is one `train_stack`. The results in input order."""
    configs = [resolve(c) for c in configs]
    ids = [run_id_of(c.identity()) for c in configs]
    forks: dict[tuple[str, int], list[RunConfig]] = {}  # (trunk id, step) -> the branches forked there
    for family in group_branches(configs):
        trunk = trunk_of(configs, family)
        for i in family:
            if i != trunk:
                forks.setdefault((ids[trunk], branch_point(configs[i])), []).append(configs[i])

    def on_saved(run_id: str, step: int) -> None:
        for branch in forks.get((run_id, step), []):
            fork(store, run_id, branch, step)

    results: dict[str, RunResult] = {}
    for stack in task_stacks(configs):
        save_at = frozenset(step for trunk_id, step in forks if trunk_id in {ids[i] for i in stack})
        for result in train_stack([configs[i] for i in stack], store, progress=progress, save_at=save_at,
                                  on_saved=on_saved):
            results[result.run_id] = result
    return [results[run_id] for run_id in ids]
