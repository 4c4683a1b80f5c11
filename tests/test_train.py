"""The trainer on real stdlib code: learns, resumes exactly, stops on divergence, never redoes."""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config

from scaler.data.source import stdlib_source
from scaler.store import Store, load_curves, load_runs
from scaler.train import loop
from scaler.train import step as step_lib
from scaler.train.checkpoint import Checkpointer
from scaler.train.defaults import resolve
from scaler.train.schedule import cosine_lr, lr_at, wsd_lr


def unigram_entropy_nats(tokens: np.ndarray) -> float:
    counts = np.bincount(tokens, minlength=257).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def test_loss_falls_clearly_below_unigram_entropy_on_stdlib_code(tmp_path) -> None:
    source = stdlib_source()
    entropy = unigram_entropy_nats(source.streams.splits["heldout"])
    assert 2.5 < entropy < 4.5  # bytes of Python source
    config = tiny_config(tokens=150 * 16 * 64, batch_size=16, eval_tokens=4096).model_copy(
        update={"model": tiny_config().model.model_copy(update={"seq_len": 64})}
    )
    result = loop.train_run(config, Store(str(tmp_path)))
    assert result.state == "done"
    first = load_curves(str(tmp_path))["train_loss"][0]
    assert first > entropy  # starts near ln(257) = 5.55
    assert result.final["eval_heldout_loss"] < entropy - 0.4
    assert result.final["eval_heldout_bpb"] == pytest.approx(
        result.final["eval_heldout_loss"] / math.log(2) / source.eval_bytes_per_token("heldout")
    )


def final_params(store: Store, run_id: str, config) -> dict:
    config = resolve(config)
    from flax import nnx

    from scaler.model.transformer import init_model

    _, params = nnx.split(init_model(config.model, config.train.seed))
    ckpt = Checkpointer(store.ckpt_dir(run_id))
    state, _ = ckpt.restore(ckpt.latest_step(), {"params": params, "opt_state": step_lib.make_optimizer(config.train).init(params)})
    return state["params"]


class Interrupt(Exception):
    pass


def test_kill_and_resume_equals_uninterrupted_bitwise_on_cpu(tmp_path) -> None:
    config = tiny_config(eval_every_steps=5, checkpoint_every_steps=10)
    whole = Store(str(tmp_path / "whole"))
    uninterrupted = loop.train_run(config, whole)

    broken = Store(str(tmp_path / "broken"))

    def die_after_step_23(row: dict) -> None:
        if row["step"] >= 23:
            raise Interrupt

    with pytest.raises(Interrupt):
        loop.train_run(config, broken, progress=die_after_step_23)
    run_id = uninterrupted.run_id
    assert broken.read_status(run_id)["state"] == "failed"
    assert Checkpointer(broken.ckpt_dir(run_id)).latest_step() == 20

    resumed = loop.train_run(config, broken)
    assert resumed.run_id == run_id and resumed.state == "done"
    assert broken.read_status(run_id)["attempts"] == 2
    # Bitwise on CPU: same compiled step, same batches (a pure function of seed and step).
    assert resumed.final["eval_heldout_loss"] == uninterrupted.final["eval_heldout_loss"]
    a, b = final_params(whole, run_id, config), final_params(broken, run_id, config)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    curves_a, curves_b = whole.read_metrics(run_id), broken.read_metrics(run_id)
    assert curves_a["step"].to_list() == curves_b["step"].to_list()
    np.testing.assert_array_equal(curves_a["train_loss"].to_numpy(), curves_b["train_loss"].to_numpy())


def test_nan_injection_ends_as_diverged_without_touching_other_runs(tmp_path, monkeypatch) -> None:
    store = Store(str(tmp_path))
    healthy = loop.train_run(tiny_config(seed=1), store)
    before = store.read_metrics(healthy.run_id)

    real_make = step_lib.make_train_step

    def poisoned_make(*args):
        real_step = real_make(*args)
        calls = {"n": 0}

        def step(params, opt_state, tokens, lr):
            calls["n"] += 1
            if calls["n"] == 7:  # inject NaN into the weights
                params = jax.tree.map(lambda p: p * jnp.nan, params)
            return real_step(params, opt_state, tokens, lr)

        return step

    monkeypatch.setattr(step_lib, "make_train_step", poisoned_make)
    sick = loop.train_run(tiny_config(seed=2), store)
    assert sick.state == "diverged"
    status = store.read_status(sick.run_id)
    assert status["state"] == "diverged" and status["reason"] == "non-finite loss"
    assert status["diverged_at_step"] == 7  # the poisoned step, found in its logging window
    assert store.read_status(healthy.run_id)["state"] == "done"
    assert store.read_metrics(healthy.run_id).equals(before)
    # a diverged run is final: submitting it again does not retrain it
    monkeypatch.setattr(step_lib, "make_train_step", real_make)
    assert loop.train_run(tiny_config(seed=2), store).state == "diverged"
    runs = load_runs(str(tmp_path))
    assert sorted(runs["state"].to_list()) == ["diverged", "done"]


def test_loss_above_bound_is_diverged(tmp_path) -> None:
    result = loop.train_run(tiny_config(max_loss=1.0), Store(str(tmp_path)))
    assert result.state == "diverged" and result.final["reason"] == "loss above max_loss"


def test_done_runs_are_never_redone(tmp_path, monkeypatch) -> None:
    store = Store(str(tmp_path))
    first = loop.train_run(tiny_config(), store)
    monkeypatch.setattr(step_lib, "make_train_step", lambda *a: pytest.fail("retrained a done run"))
    again = loop.train_run(tiny_config(), store)
    assert again.run_id == first.run_id and again.state == "done" and again.final == first.final


def test_store_rows_and_run_info(tmp_path) -> None:
    config = tiny_config()
    result = loop.train_run(config, Store(str(tmp_path)))
    runs = load_runs(str(tmp_path))
    assert runs.height == 1
    row = runs.row(0, named=True)
    assert row["run_id"] == result.run_id and row["state"] == "done"
    assert row["n_params"] == 29_856 and row["model_d_model"] == 32
    assert row["final_tokens"] == resolve(config).train.tokens
    assert row["final_flops"] == pytest.approx(row["flops_per_token"] * row["final_tokens"])
    assert row["train_lr"] == 1e-2 and row["train_beta2"] == 0.99


def test_the_trainer_writes_through_run_folders_that_the_store_has() -> None:
    """The train layer imports no store (tests/test_layers.py): it types against `RunFolders`,
    which scaler.store.Store has, method by method, with the same signatures."""
    import inspect

    from scaler.train.folders import RunFolders

    names = sorted(n for n in vars(RunFolders) if not n.startswith("_"))
    assert names == ["ckpt_dir", "heartbeat", "read_config", "read_metrics", "read_status", "run_dir", "tracker_dir",
                     "write_config", "write_json", "write_metrics", "write_status"]
    assert isinstance(Store("memory://folders"), RunFolders)
    for name in names:
        assert inspect.signature(getattr(Store, name)) == inspect.signature(getattr(RunFolders, name)), name


def test_a_finished_run_loads_from_its_folder_through_the_callers_store(tmp_path) -> None:
    from scaler.config import ConfigError
    from scaler.data.perplexity import ReferenceRequest
    from scaler.train import reference

    store = Store(str(tmp_path))
    result = loop.train_run(tiny_config(), store)
    opened: list[str] = []

    def open_store(root: str) -> Store:
        opened.append(root)
        return Store(root)

    config, _, params = loop.load_trained(result.run_dir, open_store)
    assert opened == [str(tmp_path.resolve())] and config.identity() == resolve(tiny_config()).identity()
    fresh = nnx_params(config)
    assert any(not np.array_equal(np.asarray(a), np.asarray(b))
               for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(fresh), strict=True))  # the trained weights
    given = ReferenceRequest(None, result.run_dir, 0, 0, 32, 8, 0, None)  # type: ignore[arg-type]  # a given model
    loaded = reference.TrainReferenceScorer(Store).reference(given)
    assert (loaded.seq_len, loaded.run_dir, loaded.training_flops) == (32, result.run_dir, 0.0)
    with pytest.raises(ConfigError, match="not a run folder"):
        loop.load_trained(tmp_path, Store)
    store.write_status(result.run_id, "failed")
    with pytest.raises(ConfigError, match="the run is not done"):
        loop.load_trained(result.run_dir, Store)
    with pytest.raises(ValueError, match="needs open_store"):
        reference.TrainReferenceScorer().reference(None)  # type: ignore[arg-type]


def nnx_params(config):
    from flax import nnx

    from scaler.model.transformer import init_model

    return nnx.split(init_model(config.model, config.train.seed))[1]


def test_schedules() -> None:
    total, warmup, peak = 100, 10, 1.0
    cos = [cosine_lr(s, total, peak, warmup, 0.1) for s in range(total)]
    assert cos[0] == pytest.approx(0.1) and cos[warmup - 1] == pytest.approx(1.0)
    assert cos[-1] == pytest.approx(0.1)  # ends exactly at the run's last step
    assert all(a >= b for a, b in zip(cos[warmup:], cos[warmup + 1 :]))
    wsd = [wsd_lr(s, total, peak, warmup, 0.0, 0.2) for s in range(total)]
    assert wsd[10:80] == [1.0] * 70
    assert wsd[-1] == pytest.approx(0.0)
    # (1 - sqrt) cooldown: halfway through the decay, lr = 1 - sqrt(1/2)
    assert wsd[89] == pytest.approx(1 - math.sqrt(0.5))
    config = resolve(tiny_config(schedule="wsd"))
    assert lr_at(config.train, 0, 40, 0) == config.train.lr


def test_defaults_are_size_aware_and_resolution_is_idempotent() -> None:
    config = resolve(tiny_config(lr=None, tokens=10_001))
    assert config.train.tokens % (8 * 32) == 0  # whole steps
    assert 3e-4 <= config.train.lr <= 1e-2
    assert config.train.warmup_tokens == min(29_856, config.train.tokens // 4)
    assert config.train.beta2 == 0.99
    assert resolve(config) == config
    big_batch = resolve(tiny_config(batch_size=8192, tokens=8192 * 32))
    assert big_batch.train.beta2 == 0.95


def test_cli_train_prints_run_and_reports_config_errors(tmp_path) -> None:
    from typer.testing import CliRunner

    from scaler.cli import app

    good = tmp_path / "run.toml"
    good.write_text(
        "[model]\nd_model = 32\nn_layers = 1\nn_heads = 2\nd_ff = 96\nvocab_size = 257\nseq_len = 32\n"
        "[train]\ntokens = 2560\nbatch_size = 8\neval_tokens = 256\n"
    )
    result = CliRunner().invoke(app, ["train", str(good), "--store", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert "done" in result.output and str(tmp_path / "s" / "runs") in result.output.replace("\n", "")
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text().replace("n_heads = 2", "n_heads = 3"))
    result = CliRunner().invoke(app, ["train", str(bad), "--store", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert "bad.toml" in result.output and "divisible by n_heads" in result.output


def saved_steps(ckpt_dir: str) -> list[int]:
    """Checkpoint steps on disk, read without orbax: the trainer may be deleting old ones."""
    try:
        return [int(name) for name in os.listdir(ckpt_dir) if name.isdigit()]
    except FileNotFoundError:
        return []


def test_sigkilled_process_resumes_to_the_same_result(tmp_path) -> None:
    """A real `kill -9` of `scaler train` mid-run, then the same command again."""
    import os
    import signal
    import subprocess
    import sys
    import time

    run_file = tmp_path / "run.toml"
    run_file.write_text(
        "[model]\nd_model = 32\nn_layers = 1\nn_heads = 2\nd_ff = 96\nvocab_size = 257\nseq_len = 32\n"
        "[train]\ntokens = 76800\nbatch_size = 8\nlr = 1e-2\neval_tokens = 256\n"
        "eval_every_steps = 10\ncheckpoint_every_steps = 20\n"
    )
    killed = Store(str(tmp_path / "killed"))
    command = [sys.executable, "-m", "scaler.cli", "train", str(run_file), "--store", killed.root]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        ids = killed.run_ids()
        if ids and max(saved_steps(killed.ckpt_dir(ids[0])), default=0) >= 40:
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run_id = killed.run_ids()[0]
    assert killed.read_status(run_id)["state"] == "running"  # killed: no chance to say anything
    assert Checkpointer(killed.ckpt_dir(run_id)).latest_step() < 300

    from scaler.config import load_run_config

    config = load_run_config(run_file)
    resumed = loop.train_run(config, killed)
    whole = loop.train_run(config, Store(str(tmp_path / "whole")))
    assert resumed.state == whole.state == "done"
    assert resumed.final["eval_heldout_loss"] == whole.final["eval_heldout_loss"]


def test_the_final_evaluation_reads_its_own_larger_set_and_can_cover_the_whole_set(tmp_path) -> None:
    source = stdlib_source()
    stream = source.streams.splits["heldout"]
    whole = loop.load_eval_sets(source, tiny_config(final_eval_tokens="all"), final=True)["heldout"].tokens_NT1
    assert whole.shape[0] % 8 == 0 and whole.shape[0] * 32 >= len(stream)  # whole batches, every token scored
    assert np.array_equal(whole[0], stream[:33]) and np.array_equal(whole[-1], stream[-33:])
    assert "final_eval_tokens" not in tiny_config().identity()["train"]  # older run ids stay as they were
    config = tiny_config(final_eval_tokens=4096)
    store = Store(str(tmp_path))
    result = loop.train_run(config, store)
    final_set = loop.load_eval_sets(source, resolve(config), final=True)["heldout"].tokens_NT1
    assert final_set.shape == (128, 33)  # 4,096 tokens, against the periodic evaluations' 512
    from flax import nnx

    from scaler.model.transformer import init_model

    graphdef, _ = nnx.split(init_model(resolve(config).model, 0))
    eval_step = step_lib.make_eval_step(graphdef, jnp.float32, 8)
    params = final_params(store, result.run_id, config)
    ones = np.ones((8, 32), np.float32)
    direct = np.mean([float(eval_step(params, final_set[i : i + 8], ones)[0]) / (8 * 32) for i in range(0, 128, 8)])
    assert result.final["eval_heldout_loss"] == pytest.approx(direct, rel=1e-5)
    rows = load_curves(str(tmp_path))
    assert rows.filter(rows["step"] < rows["step"].max())["eval_heldout_loss"].drop_nulls().len() >= 1
