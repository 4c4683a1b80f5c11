"""Tests for scaler.store: run ids, config/status/metrics files, atomic writes, loading frames."""

from __future__ import annotations

import math
import os
import threading
import uuid

import fsspec
import polars as pl
import pytest

from scaler import store as store_mod
from scaler.config import canonical_json, run_id_of
from scaler.store import (
    RUN_STATES,
    Store,
    StoreError,
    atomic_write_bytes,
    load_curves,
    load_runs,
)

CONFIG = {"model": {"d_model": 64, "n_layers": 2}, "train": {"tokens": 1000, "lr": 3e-4}, "seeds": [0, 1]}


def metrics_frame(n: int, *, eval_every: int = 2, start: int = 0) -> pl.DataFrame:
    steps = list(range(start, start + n))
    return pl.DataFrame(
        {
            "step": steps,
            "tokens": [s * 128 for s in steps],
            "flops": [s * 1e6 for s in steps],
            "train_loss": [5.0 - 0.1 * s for s in steps],
            "lr": [1e-3] * n,
            "eval_heldout_loss": [5.5 - 0.1 * s if s % eval_every == 0 else None for s in steps],
        }
    )


# -- run ids ----------------------------------------------------------------------------------
def test_run_id_stable_and_order_independent():
    reordered = {"seeds": [0, 1], "train": {"lr": 3e-4, "tokens": 1000}, "model": {"n_layers": 2, "d_model": 64}}
    rid = run_id_of(CONFIG)
    assert len(rid) == 16 and int(rid, 16) >= 0
    assert rid == run_id_of(CONFIG) == run_id_of(reordered)
    changed = {**CONFIG, "model": {"d_model": 65, "n_layers": 2}}
    assert run_id_of(changed) != rid


def test_canonical_json_format_and_nan():
    assert canonical_json({"b": 0.1, "a": [1, "é"]}) == '{"a":[1,"\\u00e9"],"b":0.1}'
    with pytest.raises(ValueError):
        canonical_json({"x": math.nan})


# -- config -----------------------------------------------------------------------------------
def test_config_roundtrip_and_collision(tmp_path):
    store = Store(str(tmp_path))
    assert not (tmp_path / "runs").exists()  # nothing created until a write
    rid = run_id_of(CONFIG)
    store.write_config(rid, CONFIG)
    store.write_config(rid, dict(reversed(CONFIG.items())))  # same content: no-op
    assert store.read_config(rid) == CONFIG
    assert store.run_ids() == [rid]
    assert store.run_dir(rid) == f"{tmp_path}/runs/{rid}"
    assert store.ckpt_dir(rid) == os.path.join(str(tmp_path), "runs", rid, "ckpt")
    with pytest.raises(StoreError, match="config.json"):
        store.write_config(rid, {**CONFIG, "seeds": [2]})
    assert store.read_config(rid) == CONFIG


def test_ckpt_dir_absolute_for_relative_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Store("rel").ckpt_dir("abc") == str(tmp_path / "rel" / "runs" / "abc" / "ckpt")


def test_corrupt_config_names_file(tmp_path):
    store = Store(str(tmp_path))
    (tmp_path / "runs" / "r1").mkdir(parents=True)
    (tmp_path / "runs" / "r1" / "config.json").write_text("{not json")
    with pytest.raises(StoreError, match=r"r1/config\.json"):
        store.read_config("r1")


# -- status -----------------------------------------------------------------------------------
def test_status_merge_heartbeat_and_validation(tmp_path):
    store = Store(str(tmp_path))
    store.write_config("r1", CONFIG)
    assert store.read_status("r1") == {"state": "pending"}
    first = store.write_status("r1", "running", attempts=1)
    assert first["state"] == "running" and first["attempts"] == 1
    assert isinstance(first["updated_at"], float) and first["host"]
    second = store.write_status("r1", "done", final_step=10)
    assert second["attempts"] == 1 and second["created_at"] == first["created_at"]
    assert second["final_step"] == 10
    assert store.read_status("r1") == second
    store.heartbeat("r1")
    status = store.read_status("r1")
    assert status["state"] == "done" and status["heartbeat"] >= second["updated_at"]
    with pytest.raises(ValueError):
        store.write_status("r1", "exploded")
    assert set(RUN_STATES) == {"pending", "running", "done", "failed", "diverged"}


def test_corrupt_status_names_file(tmp_path):
    store = Store(str(tmp_path))
    store.write_config("r1", CONFIG)
    path = tmp_path / "runs" / "r1" / "status.json"
    path.write_text('{"state": "runn')
    with pytest.raises(StoreError, match=r"r1/status\.json"):
        store.read_status("r1")
    path.write_text('{"state": "bogus"}')
    with pytest.raises(StoreError, match=r"status\.json.*state"):
        store.read_status("r1")
    runs = load_runs(str(tmp_path))  # the run is reported, not a crash (tests/faults/test_bad_files.py)
    assert runs["state"].to_list() == ["corrupt"] and "status.json" in runs["problem"][0]


def test_write_read_json(tmp_path):
    store = Store(str(tmp_path))
    assert store.read_json("r1", "run_info.json") is None
    store.write_json("r1", "run_info.json", {"n_params": 123})
    assert store.read_json("r1", "run_info.json") == {"n_params": 123}
    with pytest.raises(ValueError):
        store.write_json("r1", "../escape.json", {})


# -- metrics and loading ----------------------------------------------------------------------
def test_metrics_roundtrip(tmp_path):
    store = Store(str(tmp_path))
    assert store.read_metrics("r1").is_empty()
    frame = metrics_frame(5)
    store.write_metrics("r1", frame)
    assert store.read_metrics("r1").equals(frame)


def test_load_runs_and_curves(tmp_path):
    store = Store(str(tmp_path))
    # run a: metrics with eval every 2 steps, last row has no eval; written out of step order
    store.write_config("a", CONFIG)
    store.write_status("a", "done")
    store.write_json("a", "run_info.json", {"n_params": 1000, "flops_per_token": 6e3, "notes": {"x": 1}})
    store.write_metrics("a", metrics_frame(6).reverse())
    # run b: another eval set and an extra config key (diagonal columns)
    store.write_config("b", {**CONFIG, "mix": {"clean": 0.5}})
    store.write_status("b", "diverged")
    store.write_metrics("b", metrics_frame(3).rename({"eval_heldout_loss": "eval_code_loss"}))
    # run c: config only, no metrics; and a half-created folder with no config
    store.write_config("c", CONFIG)
    (tmp_path / "runs" / "half").mkdir()
    store.write_status("half", "running")

    runs = load_runs(str(tmp_path))
    assert runs["run_id"].to_list() == ["a", "b", "c"]
    assert runs["state"].to_list() == ["done", "diverged", "pending"]
    assert runs.columns[:2] == ["run_id", "state"]
    assert runs["model_d_model"].to_list() == [64, 64, 64]
    assert runs["seeds"].to_list() == ["[0, 1]"] * 3
    assert runs["mix_clean"].to_list() == [None, 0.5, None]
    assert runs["n_params"].to_list() == [1000, None, None]
    assert "notes" not in runs.columns and "notes_x" not in runs.columns
    a = runs.row(0, named=True)
    assert (a["final_step"], a["final_tokens"], a["final_flops"]) == (5, 640, 5e6)
    assert a["final_train_loss"] == pytest.approx(4.5)
    assert a["final_eval_heldout_loss"] == pytest.approx(5.5 - 0.4)  # step 4: last non-null eval
    assert a["final_eval_code_loss"] is None
    b = runs.row(1, named=True)
    assert b["final_step"] == 2 and b["final_eval_code_loss"] == pytest.approx(5.3)
    c = runs.row(2, named=True)
    assert c["final_step"] is None and c["final_train_loss"] is None

    curves = load_curves(str(tmp_path))
    assert curves.columns[0] == "run_id"
    assert curves.height == 6 + 3
    assert curves["run_id"].to_list() == ["a"] * 6 + ["b"] * 3
    assert curves["step"].to_list() == list(range(6)) + list(range(3))
    assert {"eval_heldout_loss", "eval_code_loss"} <= set(curves.columns)


def test_empty_store(tmp_path):
    runs = load_runs(str(tmp_path / "nothing"))
    assert runs.is_empty() and {"run_id", "state"} <= set(runs.columns)
    curves = load_curves(str(tmp_path / "nothing"))
    assert curves.is_empty() and "run_id" in curves.columns
    assert Store(str(tmp_path)).run_ids() == []


def test_memory_root():
    root = f"memory://store-test-{uuid.uuid4().hex}"
    store = Store(root)
    try:
        store.write_config("r1", CONFIG)
        store.write_status("r1", "running", attempts=1)
        store.write_metrics("r1", metrics_frame(4))
        store.write_status("r1", "done")
        assert store.run_ids() == ["r1"]
        assert store.read_status("r1")["attempts"] == 1
        assert store.run_dir("r1") == f"{root}/runs/r1"
        assert store.ckpt_dir("r1") == f"{root}/runs/r1/ckpt"
        runs = load_runs(root)
        assert runs["final_step"].to_list() == [3] and runs["state"].to_list() == ["done"]
        assert load_curves(store).height == 4
        assert not [p for p in store.fs.find(store._base) if ".tmp-" in p]
    finally:
        store.fs.rm(store._base, recursive=True)


# -- atomic writes ----------------------------------------------------------------------------
def test_reader_never_sees_half_written_file(tmp_path):
    store = Store(str(tmp_path))
    small, big = metrics_frame(3), metrics_frame(20_000)
    store.write_metrics("r1", small)
    errors: list[BaseException] = []

    def writer():
        try:
            for i in range(200):
                store.write_metrics("r1", big if i % 2 == 0 else small)
        except BaseException as e:  # surfaced in the main thread
            errors.append(e)

    thread = threading.Thread(target=writer)
    thread.start()
    reads, sizes = 0, set()
    while thread.is_alive() or reads == 0:
        got = store.read_metrics("r1")  # raises StoreError if it saw a partial file
        assert got.equals(small) or got.equals(big)
        reads, sizes = reads + 1, sizes | {got.height}
    thread.join()
    assert not errors
    assert reads > 1 and sizes == {3, 20_000}, (reads, sizes)
    assert os.listdir(tmp_path / "runs" / "r1") == ["metrics.parquet"]


@pytest.mark.parametrize("local", [True, False])
def test_failed_write_keeps_old_file_and_no_temp(tmp_path, monkeypatch, local):
    store = Store(str(tmp_path) if local else f"memory://store-test-{uuid.uuid4().hex}")
    old = metrics_frame(3)
    store.write_metrics("r1", old)

    def boom(*args, **kwargs):
        raise OSError("disk on fire")

    if local:
        monkeypatch.setattr(store_mod.os, "replace", boom)
    else:
        monkeypatch.setattr(store.fs, "mv", boom)
    with pytest.raises(StoreError, match=r"metrics\.parquet: cannot write \(disk on fire\)"):  # path and cause
        store.write_metrics("r1", metrics_frame(10))
    monkeypatch.undo()
    assert store.read_metrics("r1").equals(old)
    files = [p.rsplit("/", 1)[-1] for p in store.fs.ls(store._path("r1"), detail=False)]
    assert files == ["metrics.parquet"]
    if not local:
        store.fs.rm(store._base, recursive=True)


def test_atomic_write_bytes_creates_parents(tmp_path):
    fs, _ = fsspec.core.url_to_fs(str(tmp_path))
    target = f"{tmp_path}/a/b/file.bin"
    atomic_write_bytes(fs, target, b"hello")
    atomic_write_bytes(fs, target, b"bye")
    assert (tmp_path / "a" / "b" / "file.bin").read_bytes() == b"bye"
    assert os.listdir(tmp_path / "a" / "b") == ["file.bin"]
