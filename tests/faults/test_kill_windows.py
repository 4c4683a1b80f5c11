"""Kills in every window between a run's two durable writes (metrics.parquet, then the checkpoint)
lose no metrics row, never finish a run with a stale final row, and never leave a run that cannot
finish; the resumed run's metrics equal an uninterrupted run's (issue 12).

A kill is simulated by an exception that no handler of scaler catches (a BaseException, as
SystemExit or a signal would be) raised inside the write that the kill interrupts; the store is
then exactly as a SIGKILL at that instant leaves it. Stores written by an older scaler (checkpoint
first, rows second) are rebuilt by truncating the rows of a finished run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import tiny_config

from scaler.store import Store
from scaler.train import loop
from scaler.train.checkpoint import Checkpointer

STEPS, EVERY = 40, 10  # tiny_config trains 40 steps; a checkpoint every 10
TIMING = ("tokens_per_s",)  # wall-clock columns differ between any two runs


class Killed(BaseException):
    """The process died here."""


def config():
    return tiny_config(eval_every_steps=5, checkpoint_every_steps=EVERY)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, str, pl.DataFrame, dict]:
    store = Store(str(tmp_path_factory.mktemp("whole") / "store"))
    result = loop.train_run(config(), store)
    return store, result.run_id, store.read_metrics(result.run_id), result.final


def same_rows(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert a["step"].to_list() == b["step"].to_list()
    for column in a.columns:
        if column not in TIMING:
            np.testing.assert_array_equal(a[column].to_numpy(), b[column].to_numpy(), err_msg=column)


@pytest.mark.parametrize("kill_at", [10, 20, STEPS])
def test_a_kill_between_the_rows_and_their_checkpoint(kill_at: int, uninterrupted, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _, run_id, rows, final = uninterrupted
    store = Store(str(tmp_path / "store"))
    save = Checkpointer.save

    def die_before_saving(self, step, state, meta):
        if step == kill_at:
            raise Killed
        save(self, step, state, meta)

    monkeypatch.setattr(Checkpointer, "save", die_before_saving)
    with pytest.raises(Killed):
        loop.train_run(config(), store)
    assert store.read_metrics(run_id)["step"].max() == kill_at  # the rows are durable first
    monkeypatch.setattr(Checkpointer, "save", save)
    resumed = loop.train_run(config(), store)
    assert resumed.state == "done" and resumed.final["eval_heldout_loss"] == final["eval_heldout_loss"]
    same_rows(store.read_metrics(run_id), rows)


@pytest.mark.parametrize("rows_up_to", [0, 20, 30])
def test_a_store_whose_checkpoint_ran_ahead_of_its_rows(rows_up_to: int, uninterrupted, tmp_path: Path,
                                                        capfd: pytest.CaptureFixture) -> None:
    """An older scaler saved the checkpoint first: killed before the rows, the checkpoint at 40
    (the final one) has rows only up to `rows_up_to` (0: no metrics file at all, the first
    checkpoint's window). The rerun falls back to a checkpoint whose rows are there, or starts
    afresh; it does not call the run done with the last eval's loss, nor fail on a missing column."""
    whole, run_id, rows, final = uninterrupted
    store = Store(str(tmp_path / "store"))
    shutil.copytree(whole.run_dir(run_id), store.run_dir(run_id))
    store.write_status(run_id, "running")
    metrics = Path(store.run_dir(run_id)) / "metrics.parquet"
    if rows_up_to:
        store.write_metrics(run_id, rows.filter(pl.col("step") <= rows_up_to))
    else:
        metrics.unlink()
    saved = Checkpointer(store.ckpt_dir(run_id)).all_steps()
    assert saved[-1] == STEPS > rows_up_to  # the latest checkpoint ran ahead of the rows (30: the one before did not)
    resumed = loop.train_run(config(), store)
    assert resumed.state == "done" and resumed.final["eval_heldout_loss"] == final["eval_heldout_loss"]
    same_rows(store.read_metrics(run_id), rows)
    assert f"no metrics rows after step {rows_up_to} on disk" in capfd.readouterr().err


def _stopped_at_35(tmp_path: Path) -> tuple[Store, str]:
    """A run killed after step 35: checkpoints 20 and 30 on disk, rows up to 30."""
    store = Store(str(tmp_path / "store"))

    def die(row: dict) -> None:
        if row["step"] >= 35:
            raise Killed

    with pytest.raises(Killed):
        loop.train_run(config(), store, progress=die)
    run_id = store.run_ids()[0]
    assert Checkpointer(store.ckpt_dir(run_id)).all_steps() == [20, 30]
    return store, run_id


def _largest_array_file(step_dir: Path) -> Path:
    return max((p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"),
               key=lambda p: p.stat().st_size)


@pytest.mark.parametrize("damage", ["random bytes", "truncated", "both checkpoints"])
def test_a_damaged_checkpoint_is_never_loaded(damage: str, uninterrupted, tmp_path: Path,
                                              capfd: pytest.CaptureFixture) -> None:
    """Random bytes inside the arrays, or a truncated file: the restore fails verification, the
    step is moved aside (kept), the run falls back to the previous checkpoint (or starts afresh)
    and ends exactly as an uninterrupted run."""
    _, _, rows, final = uninterrupted
    store, run_id = _stopped_at_35(tmp_path)
    ckpt_dir = Path(store.ckpt_dir(run_id))
    for step in ([30, 20] if damage == "both checkpoints" else [30]):
        target = _largest_array_file(ckpt_dir / str(step))
        data = bytearray(target.read_bytes())
        if damage == "truncated":
            target.write_bytes(bytes(data[: len(data) // 2]))
        else:
            rng = np.random.default_rng(step)
            middle = len(data) // 2
            data[middle:middle + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
            target.write_bytes(bytes(data))
    resumed = loop.train_run(config(), store)
    assert resumed.state == "done" and resumed.final["eval_heldout_loss"] == final["eval_heldout_loss"]
    same_rows(store.read_metrics(run_id), rows)
    err = capfd.readouterr().err
    assert "checkpoint 30: " in err and "moved to" in err
    kept = list(Path(f"{ckpt_dir}-corrupt").iterdir())
    assert len(kept) == (2 if damage == "both checkpoints" else 1)  # set aside, never deleted
