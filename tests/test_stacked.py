"""Stacked runs (scaler/train/stacked.py): K runs of one shape by one vmapped step equal the same
runs trained alone, a diverging member does not stop its stack, runs group into stacks by what
they share, and a killed stack resumes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config

from scaler.config import parse_run_config
from scaler.store import Store
from scaler.train import loop, stack_groups
from scaler.train.defaults import resolve

TIMING = ("tokens_per_s",)


def members():
    """Three runs that differ in seed, learning rate and schedule, and data."""
    other_data = tiny_config(seed=3).model_copy(update={"data": parse_run_config(
        {"model": tiny_config().model.model_dump(), "train": {"tokens": 512, "batch_size": 8},
         "data": {"heldout_fraction": 0.1, "eval_sets": ["heldout"]}}).data})
    return [tiny_config(seed=1), tiny_config(seed=2, lr=3e-3, schedule="wsd"), other_data]


def close_rows(got, want, rtol: float = 2e-5) -> None:
    assert got["step"].to_list() == want["step"].to_list()
    for column in want.columns:
        if column not in TIMING:
            np.testing.assert_allclose(got[column].to_numpy(), want[column].to_numpy(), rtol=rtol, err_msg=column)


@pytest.fixture(scope="module")
def solo(tmp_path_factory: pytest.TempPathFactory) -> Store:
    store = Store(str(tmp_path_factory.mktemp("solo")))
    for config in members():
        loop.train_run(config, store)
    return store


def test_a_stack_equals_its_runs_trained_alone(solo: Store, tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    results = loop.train_stack(members(), store)
    assert [r.state for r in results] == ["done"] * 3
    assert len({r.run_id for r in results}) == 3
    for result in results:
        assert result.run_id in solo.run_ids()  # the same run ids: a stack is a way to train, not a run setting
        close_rows(store.read_metrics(result.run_id), solo.read_metrics(result.run_id))
        assert store.read_status(result.run_id)["attempts"] == 1
        assert Path(store.ckpt_dir(result.run_id)).is_dir()
    again = loop.train_stack(members(), store)  # finished runs are never redone
    assert [store.read_status(r.run_id)["attempts"] for r in again] == [1, 1, 1]


def test_a_diverging_member_does_not_stop_its_stack(solo: Store, tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    configs = [members()[0], tiny_config(seed=9, lr=50.0), members()[1]]
    results = loop.train_stack(configs, store)
    assert [r.state for r in results] == ["done", "diverged", "done"]
    assert store.read_status(results[1].run_id)["state"] == "diverged"
    for result in (results[0], results[2]):
        close_rows(store.read_metrics(result.run_id), solo.read_metrics(result.run_id))


class Killed(BaseException):
    """The process died here."""


def test_a_killed_stack_resumes_to_the_same_rows(tmp_path: Path) -> None:
    whole = Store(str(tmp_path / "whole"))
    configs = [tiny_config(seed=1, checkpoint_every_steps=10), tiny_config(seed=2, checkpoint_every_steps=10)]
    uninterrupted = loop.train_stack(configs, whole)

    killed = Store(str(tmp_path / "killed"))

    def die_after_step_23(row: dict) -> None:
        if row["step"] >= 23:
            raise Killed

    with pytest.raises(Killed):
        loop.train_stack(configs, killed, progress=die_after_step_23)
    assert {killed.read_status(r.run_id)["state"] for r in uninterrupted} == {"failed"}
    resumed = loop.train_stack(configs, killed)
    for want, got in zip(uninterrupted, resumed):
        assert got.final["eval_heldout_loss"] == want.final["eval_heldout_loss"]  # same K, same step: bit for bit
        close_rows(killed.read_metrics(got.run_id), whole.read_metrics(want.run_id), rtol=0)


def test_members_at_different_checkpoints_train_as_separate_stacks(tmp_path: Path) -> None:
    """A stack killed between two members' saves: each resumes from its own checkpoint."""
    whole = Store(str(tmp_path / "whole"))
    configs = [tiny_config(seed=1, checkpoint_every_steps=10), tiny_config(seed=2, checkpoint_every_steps=10)]
    uninterrupted = loop.train_stack(configs, whole)
    killed = Store(str(tmp_path / "killed"))
    loop.train_stack(configs, killed)
    first, second = (r.run_id for r in uninterrupted)
    ckpt = loop.Checkpointer(killed.ckpt_dir(first))  # the first run back at its checkpoint 30
    ckpt.discard_after(30)
    ckpt.close()
    rows = killed.read_metrics(first)
    killed.write_metrics(first, rows.filter(rows["step"] <= 30))
    for run_id in (first, second):  # the second saved its checkpoint 40 but was not marked done
        killed.write_status(run_id, "pending")
    resumed = loop.train_stack(configs, killed)
    assert [r.state for r in resumed] == ["done", "done"]
    for want, got in zip(uninterrupted, resumed):
        close_rows(killed.read_metrics(got.run_id), whole.read_metrics(want.run_id))


def test_runs_group_into_stacks_by_what_they_share() -> None:
    a = [resolve(tiny_config(seed=s)) for s in range(5)]
    other_batch = resolve(tiny_config(batch_size=4, tokens=40 * 4 * 32))
    other_steps = resolve(tiny_config(tokens=20 * 8 * 32))
    configs = [a[0], other_batch, a[1], a[2], other_steps, a[3], a[4]]
    assert stack_groups.group_stacks(configs, 1) == [[i] for i in range(7)]
    assert stack_groups.group_stacks(configs, 2) == [[0, 2], [1], [3, 5], [4], [6]]
    assert stack_groups.group_stacks(configs, 16) == [[0, 2, 3, 5, 6], [1], [4]]
    one_member = stack_groups.bytes_per_member(a[0])
    assert stack_groups.group_stacks(configs, "auto", memory_bytes=int(one_member * 2 / stack_groups.MEMORY_SHARE)) == \
        [[0, 2], [1], [3, 5], [4], [6]]
    assert stack_groups.auto_stack_size(a[0], memory_bytes=10**15) == stack_groups.MAX_AUTO_STACK
    assert stack_groups.auto_stack_size(a[0], memory_bytes=1) == 1


def test_branch_families_group_into_tasks_by_trunk_and_token_counts() -> None:
    def wsd(seed: int, steps: int):
        return resolve(tiny_config(schedule="wsd", seed=seed, tokens=steps * 8 * 32, warmup_tokens=4 * 8 * 32))

    configs = [wsd(0, 20), wsd(1, 20), wsd(0, 30), wsd(1, 30), wsd(2, 20), wsd(2, 40), resolve(tiny_config())]
    assert stack_groups.group_branches(configs) == [[0, 2], [1, 3], [4, 5], [6]]
    assert stack_groups.group_branch_stacks(configs, 1) == [[0, 2], [1, 3], [4, 5], [6]]
    assert stack_groups.group_branch_stacks(configs, 4) == [[0, 1, 2, 3], [4, 5], [6]]  # seed 2 branches elsewhere
    # in a task: the trunks by stack (a schedule may differ in a stack), then the branches by stack
    assert stack_groups.task_stacks(configs) == [[2, 3], [5, 6], [0, 1, 4]]  # 4 forks at step 32, 0 and 1 at 16


def test_a_stack_refuses_runs_that_differ_in_shape(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="differ in more than"):
        loop.train_stack([tiny_config(), tiny_config(batch_size=4, tokens=40 * 4 * 32)], Store(str(tmp_path)))
