"""Tests for scaler.sweep.cluster: Ray against a real local head, SLURM through submitit's local
executor, and the resource mappings. Every run is tiny (20 steps of 8 x 32 tokens)."""

from __future__ import annotations

import glob
import os
import sys
import time

import pytest
from conftest import tiny_config

from scaler.store import Store
from scaler.sweep import cluster
from scaler.sweep.cluster import local_ray_head, run_on_ray, run_on_slurm

STEP_TOKENS = 8 * 32


def tiny_run(seed: int, steps: int = 20) -> dict:
    return tiny_config(tokens=steps * STEP_TOKENS, seed=seed).model_dump(mode="json")


def broken_run(data_dir: str) -> dict:
    """Valid as a config; fails on the worker, where the run resolves its data folder."""
    raw = tiny_run(seed=0)
    raw["data"] = {"dir": data_dir, "mix": {"clean": 1.0}}
    return raw


def claim_files(root: str) -> list[str]:
    return glob.glob(os.path.join(root, "runs", "*", "claim.json"))


def assert_all_done(root: str, outcomes: list[dict]) -> None:
    store = Store(root)
    for outcome in outcomes:
        assert outcome["state"] == "done", outcome
        assert store.read_status(outcome["run_id"])["state"] == "done"
    assert claim_files(root) == []


@pytest.fixture(scope="module")
def ray_address():
    """A real Ray head on 127.0.0.1 (2 CPUs), stopped by process id when the module's tests end."""
    with local_ray_head(num_cpus=2) as address:
        yield address


# -- Ray ----------------------------------------------------------------------------------------
def test_ray_runs_each_run_once(ray_address, tmp_path):
    root = str(tmp_path / "store")
    configs = [tiny_run(seed) for seed in (1, 2, 3)] + [broken_run(str(tmp_path))]
    resources = {"cpus": 1, "memory_gb": 1}  # cpus=1 also gives the workers SCALER_CPU_DEVICES=1
    seen: list[dict] = []

    first = run_on_ray(configs, root, resources, address=ray_address, progress=seen.append)
    assert_all_done(root, first[:3])
    assert len({o["run_id"] for o in first[:3]}) == 3
    assert [o["attempts"] for o in first[:3]] == [1, 1, 1]
    assert sorted(map(str, seen)) == sorted(map(str, first))
    failed = first[3]  # a task that raised: a failed outcome, the others unaffected
    assert failed["state"] == "failed" and failed["error"].startswith("BuildFolderError: ")
    assert "not a data folder" in failed["error"]

    again = run_on_ray(configs[:3], root, resources, address=ray_address)
    assert [(o["run_id"], o["state"], o["attempts"]) for o in again] == [(o["run_id"], "done", 1) for o in first[:3]]
    assert claim_files(root) == []

    import ray

    assert not ray.is_initialized()  # disconnected after each call


def test_ray_interrupt_cancels_and_releases(ray_address, tmp_path):
    """Ctrl-C (here: raised from the progress callback once the short run ended and the long one
    trains) cancels the long run, which records itself as pending and releases its claim."""
    import ray

    root = str(tmp_path / "store")
    short, long = tiny_run(seed=5), tiny_run(seed=6, steps=20_000)
    long_id, store = cluster.run_id_for(long), Store(root)

    def interrupt(outcome: dict) -> None:
        deadline = time.monotonic() + 60
        while store.read_status(long_id)["state"] != "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_on_ray([short, long], root, {"cpus": 1}, address=ray_address, progress=interrupt)
    assert not ray.is_initialized()
    status = store.read_status(long_id)
    assert status["state"] == "pending" and "interrupted_at" in status  # the task saw KeyboardInterrupt
    assert claim_files(root) == []


def test_cancel_latch_remembers_a_swallowed_interrupt():
    """ray.cancel interrupts once; when the KeyboardInterrupt is swallowed (as in JAX's gc
    callback: "Exception ignored"), the latch still holds the request for the next step."""
    import signal

    before = signal.getsignal(signal.SIGINT)
    with cluster._cancel_latch() as cancelled:
        assert not cancelled.is_set()
        try:
            signal.raise_signal(signal.SIGINT)
            time.sleep(0.05)
        except KeyboardInterrupt:
            pass  # swallowed, as an "Exception ignored" callback would
        assert cancelled.is_set()
    assert signal.getsignal(signal.SIGINT) is before


def test_ray_needs_an_address(monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(ValueError, match="address HOST:PORT"):
        run_on_ray([tiny_run(0)], str(tmp_path), {})


def test_ray_unreachable_address_fails_fast(tmp_path):
    with pytest.raises(ConnectionError, match="no Ray head answers"):
        run_on_ray([tiny_run(0)], str(tmp_path), {}, address=f"127.0.0.1:{cluster._free_port()}")


# -- SLURM through submitit's local executor -------------------------------------------------------
def test_slurm_local_executor(monkeypatch, tmp_path):
    monkeypatch.delenv("XLA_FLAGS", raising=False)  # the jobs inherit this environment
    monkeypatch.setenv("SCALER_CPU_DEVICES", "1")
    monkeypatch.chdir(tmp_path)
    root = "store"  # relative: made absolute before the jobs get it
    resources = {"cpus": 1, "memory_gb": 1, "time_limit_min": 5, "partition": "ignored-by-local"}
    configs = [tiny_run(7), broken_run(str(tmp_path)), tiny_run(8)]
    seen: list[dict] = []

    first = run_on_slurm(configs, root, resources, cluster="local", progress=seen.append)
    assert len(seen) == 3
    failed = first[1]
    assert failed["state"] == "failed" and failed["error"].startswith("BuildFolderError: ")
    assert "not a data folder" in failed["error"]
    good = [first[0], first[2]]
    assert_all_done(str(tmp_path / root), good)
    assert os.path.isdir(tmp_path / root / "slurm")  # submitit's job files: default <store>/slurm

    again = run_on_slurm([configs[0], configs[2]], root, resources, cluster="local")
    assert [(o["run_id"], o["state"], o["attempts"]) for o in again] == [(o["run_id"], "done", 1) for o in good]
    assert claim_files(str(tmp_path / root)) == []


# -- mappings -------------------------------------------------------------------------------------
def test_ray_task_options():
    options = cluster.ray_task_options({"cpus": 4, "gpus": 1, "memory_gb": 2.5, "tpu": None, "partition": "x"})
    assert options == {"num_cpus": 4, "num_gpus": 1, "memory": int(2.5 * 2**30),
                       "max_retries": cluster.WORKER_CRASH_RETRIES}
    assert cluster.ray_task_options({"tpu": "v4-8"})["resources"] == {"TPU": 4}


@pytest.mark.parametrize("name, chips", [("v4-8", 4), ("v3-8", 4), ("v5p-8", 4), ("v5litepod-8", 8),
                                         ("v6e-4", 4), ("v5e-1", 1), (2, 2)])
def test_tpu_chips(name, chips):
    assert cluster.tpu_chips(name) == chips


@pytest.mark.parametrize("name", ["v4-16", "v9-8", "v4", "tpu", "v4-1"])
def test_tpu_chips_refuses(name):
    with pytest.raises(ValueError, match="tpu"):
        cluster.tpu_chips(name)


def test_slurm_parameters():
    resources = {"cpus": 2, "gpus": 1, "memory_gb": 8.0, "time_limit_min": 90, "partition": "gpu",
                 "array_parallelism": 16, "tpu": None}
    assert cluster.slurm_parameters(resources, "slurm") == {
        "cpus_per_task": 2, "gpus_per_node": 1, "mem_gb": 8.0, "timeout_min": 90,
        "slurm_partition": "gpu", "slurm_array_parallelism": 16}
    assert cluster.slurm_parameters(resources, "local") == {
        "cpus_per_task": 2, "gpus_per_node": 1, "mem_gb": 8.0, "timeout_min": 90}
    with pytest.raises(ValueError, match="tpu"):
        cluster.slurm_parameters({"tpu": "v4-8"}, "slurm")


def test_error_text_of_a_submitit_trace():
    trace = ("Job (task=0) failed during processing with trace:\n----------------------\n"
             "Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n    g()\n"
             "scaler.config.ConfigError: sweep run: invalid config\n  model.x: bad\n\n"
             "----------------------\nYou can check full logs with ...")
    assert cluster._error_text(RuntimeError(trace)) == "ConfigError: sweep run: invalid config\n  model.x: bad"
    assert cluster._error_text(ValueError("plain")) == "ValueError: plain"


def test_store_root_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cluster.absolute_root("store") == str(tmp_path / "store")
    assert cluster.absolute_root("gs://bucket/store") == "gs://bucket/store"


def test_driver_does_not_import_jax():
    import subprocess

    code = "import sys, scaler.sweep.cluster; assert 'jax' not in sys.modules and 'scaler.train.loop' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
