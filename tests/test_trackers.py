"""Run trackers (scaler/train/trackers.py): TensorBoard event files, W&B offline runs and JSON lines
read back with the losses of metrics.parquet; a failing tracker warns once and never fails a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config

from scaler.config import run_id_of
from scaler.store import Store
from scaler.train import loop, trackers
from scaler.train.defaults import resolve
from scaler.train.checkpoint import Checkpointer


def event_scalars(folder: str) -> dict[str, dict[int, float]]:
    """tag -> step -> value, as TensorBoard itself reads the event files (its last value per step)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(folder, size_guidance={"scalars": 0})
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def test_tensorboard_and_jsonl_read_back_the_losses_of_the_metrics(tmp_path) -> None:
    pytest.importorskip("tensorboardX")
    pytest.importorskip("tensorboard")
    config = tiny_config(eval_every_steps=10, trackers=["tensorboard", "jsonl"])
    store = Store(str(tmp_path))
    result = loop.train_run(config, store)
    assert result.state == "done"
    assert result.run_id == run_id_of(resolve(tiny_config(eval_every_steps=10)).identity())  # trackers: not identity
    metrics = store.read_metrics(result.run_id)
    scalars = event_scalars(f"{store.tracker_dir(result.run_id)}/tensorboard")
    for column in ("train_loss", "eval_heldout_loss", "eval_heldout_bpb", "grad_norm"):
        rows = metrics.filter(metrics[column].is_not_null()) if column in metrics.columns else metrics
        expected = dict(zip(rows["step"].to_list(), rows[column].to_list()))
        assert set(scalars[column]) == set(expected), column
        np.testing.assert_allclose([scalars[column][s] for s in expected], list(expected.values()), rtol=1e-6)
    lines = [json.loads(line) for line in Path(store.tracker_dir(result.run_id), "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["event"] == "start" and lines[0]["config"]["train"]["tokens"] == config.train.tokens
    assert "trackers" not in lines[0]["config"]["train"]
    assert [r["train_loss"] for r in lines if r["event"] == "row"] == metrics["train_loss"].to_list()
    assert lines[-1] == {"event": "done", "final": json.loads(json.dumps(result.final))}


def test_a_resumed_run_purges_the_events_past_its_checkpoint(tmp_path) -> None:
    pytest.importorskip("tensorboardX")
    pytest.importorskip("tensorboard")
    config = tiny_config(eval_every_steps=5, checkpoint_every_steps=10, trackers=["tensorboard"])
    store = Store(str(tmp_path))

    def die_after_step_23(row: dict) -> None:
        if row["step"] >= 23:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        loop.train_run(config, store, progress=die_after_step_23)
    run_id = run_id_of(resolve(config).identity())
    assert Checkpointer(store.ckpt_dir(run_id)).latest_step() == 20
    result = loop.train_run(config, store)
    metrics = store.read_metrics(result.run_id)
    scalars = event_scalars(f"{store.tracker_dir(run_id)}/tensorboard")["train_loss"]
    assert sorted(scalars) == metrics["step"].to_list()  # steps 21-25 of the first attempt are gone or rewritten
    np.testing.assert_allclose([scalars[s] for s in metrics["step"].to_list()], metrics["train_loss"].to_list(),
                               rtol=1e-6)


def test_wandb_logs_a_stack_offline_one_run_per_member(tmp_path, monkeypatch) -> None:
    pytest.importorskip("wandb")
    for key in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))  # not logged in: offline
    assert trackers.wandb_mode() == "offline"
    configs = [tiny_config(seed=seed, trackers=["wandb"]) for seed in (0, 1)]
    store = Store(str(tmp_path / "store"))
    results = loop.train_stack(configs, store)
    assert [r.state for r in results] == ["done", "done"]
    for r in results:
        runs = list(Path(store.tracker_dir(r.run_id), "wandb", "wandb").glob(f"offline-run-*-{r.run_id}"))
        assert len(runs) == 1 and list(runs[0].glob("*.wandb")), r.run_id  # the run's offline log, to `wandb sync`


class Broken:
    def __init__(self, *args: object) -> None:
        pass

    def log(self, row: object, step: int) -> None:
        raise OSError("disk full")

    def finish(self, state: str, final: object) -> None:
        raise AssertionError("a tracker that failed is not called again")


def test_a_failing_or_missing_tracker_warns_once_and_the_run_finishes(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(trackers.OPENERS, "tensorboard", Broken)
    monkeypatch.setitem(__import__("sys").modules, "wandb", None)  # not installed
    config = tiny_config(eval_every_steps=10, trackers=["tensorboard", "wandb", "jsonl"])
    store = Store(str(tmp_path))
    result = loop.train_run(config, store)
    assert result.state == "done"
    assert store.read_metrics(result.run_id).height == len(
        [line for line in Path(store.tracker_dir(result.run_id), "metrics.jsonl").read_text().splitlines()
         if json.loads(line)["event"] == "row"])
    err = capsys.readouterr().err
    assert err.count("the tensorboard tracker could not log step 10: OSError: disk full") == 1
    assert err.count("the wandb tracker could not start: wandb is not installed (pip install 'scaler[trackers]')") == 1
    assert err.count("warning:") == 2


def test_unknown_tracker_is_a_config_error() -> None:
    from scaler.config import ConfigError

    with pytest.raises(ConfigError, match=r"train\.trackers\.0: Input should be 'tensorboard', 'wandb' or 'jsonl'"):
        tiny_config(trackers=["mlflow"])


def test_a_sweeps_train_trackers_reach_its_runs_and_leave_their_ids() -> None:
    from test_sweep import GRID

    from scaler.sweep.spec import expand, parse_sweep_spec

    plain = expand(parse_sweep_spec(GRID, "grid.toml"), build_id="b1")
    tracked = expand(parse_sweep_spec({**GRID, "train": {**GRID["train"], "trackers": ["jsonl"]}}, "grid.toml"),
                     build_id="b1")
    assert [r.run_id for r in tracked] == [r.run_id for r in plain]
    assert {tuple(r.config.train.trackers) for r in tracked} == {("jsonl",)}


def test_cli_train_tracker_flag(tmp_path) -> None:
    from typer.testing import CliRunner

    from scaler.cli import app

    run_file = tmp_path / "run.toml"
    run_file.write_text(
        "[model]\nd_model = 32\nn_layers = 1\nn_heads = 2\nd_ff = 96\nvocab_size = 257\nseq_len = 32\n"
        "[train]\ntokens = 2560\nbatch_size = 8\neval_tokens = 256\n"
    )
    result = CliRunner().invoke(app, ["train", str(run_file), "--store", str(tmp_path / "s"), "--tracker", "jsonl"])
    assert result.exit_code == 0, result.output
    (jsonl,) = (tmp_path / "s" / "runs").glob("*/trackers/metrics.jsonl")
    assert json.loads(jsonl.read_text().splitlines()[-1])["event"] == "done"
    result = CliRunner().invoke(app, ["train", str(run_file), "--store", str(tmp_path / "s"), "--tracker", "mlflow"])
    assert result.exit_code == 2
    assert "--tracker mlflow: expected one of tensorboard, wandb, jsonl" in result.output
