"""One unreadable file never blocks the other runs: the run is reported by id and file, counted as
`corrupt`, left out of fits, moved aside (never deleted) and trained again by `scaler run`; bad
claim files are treated as torn (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from scaler.cli import app
from scaler.session import from_store
from scaler.store import Store, load_curves, load_runs

GARBAGE = b"\x00\x9f{not json or parquet"
FILES = ("config.json", "status.json", "run_info.json", "metrics.parquet")


def small_store(root: Path) -> Store:
    store = Store(str(root))
    for i, n in enumerate((1e6, 2e6, 4e6, 8e6, 1.6e7, 3.2e7, 6.4e7)):
        run_id = f"run{i}"
        store.write_config(run_id, {"train": {"tokens": int(20 * n), "seed": 0}, "data": {"mix": {"raw": 1.0}}})
        store.write_json(run_id, "run_info.json", {"n_params": int(n), "flops": 6.0 * n * 20 * n})
        loss = 1.8 + 400 / n**0.34 + 410 / (20 * n) ** 0.28
        store.write_metrics(run_id, pl.DataFrame({"step": [1], "tokens": [int(20 * n)], "eval_heldout_loss": [loss]}))
        store.write_status(run_id, "done")
    return store


@pytest.mark.parametrize("name", FILES)
def test_one_bad_file_is_one_corrupt_run_the_others_load_and_fit(name: str, tmp_path: Path) -> None:
    store = small_store(tmp_path / "store")
    (Path(store.run_dir("run3")) / name).write_bytes(GARBAGE)
    runs = load_runs(store)
    assert runs.height == 7
    bad = runs.filter(pl.col("state") == "corrupt")
    assert bad["run_id"].to_list() == ["run3"] and name in bad["problem"][0]
    assert store.problems("run3")[0][0] == name and store.state_of("run3") == "corrupt"
    assert store.problems("run2") == [] and store.state_of("run2") == "done"
    assert "run3" not in set(load_curves(store)["run_id"].to_list()) or name != "metrics.parquet"
    data = from_store(store.root)
    assert data.n_points == 6 and data.excluded == {"corrupt": ["run3"]}
    moved = store.set_aside("run3")
    assert len(moved) == 1 and Path(moved[0]).read_bytes() == GARBAGE  # aside, not deleted
    assert store.problems("run3") == []


@pytest.mark.parametrize("content", [b"[]", b"null", b'{"heartbeat": "soon"}', GARBAGE])
def test_a_claim_file_that_is_not_a_claim_is_torn(content: bytes, tmp_path: Path) -> None:
    store = small_store(tmp_path / "store")
    (Path(store.run_dir("run0")) / "claim.json").write_bytes(content)
    assert store.read_claim("run0") is None or content == b'{"heartbeat": "soon"}'
    assert not store.claim("run0", "me", stale_after_s=3600) or content == b'{"heartbeat": "soon"}'  # fresh: being written
    assert store.claim("run0", "me", stale_after_s=0.0)  # stale: taken over
    assert store.read_claim("run0")["owner"] == "me"


def test_scaler_run_sets_a_corrupt_run_aside_and_finishes_it(tmp_path: Path) -> None:
    spec = tmp_path / "sweep.toml"
    store_root = tmp_path / "store"
    spec.write_text(f'name = "t"\nstore = "{store_root}"\n[model]\nseq_len = 32\n[train]\nbatch_size = 8\n'
                    "eval_tokens = 256\n[design.grid]\nsizes = [20_000]\ntokens = [4_096, 8_192]\n")
    first = CliRunner().invoke(app, ["run", str(spec), "--workers", "1"])
    assert first.exit_code == 0, first.output
    store = Store(str(store_root))
    run_a, run_b = store.run_ids()
    final = {r: store.read_status(r)["final"]["eval_heldout_loss"] for r in (run_a, run_b)}

    (Path(store.run_dir(run_a)) / "status.json").write_bytes(GARBAGE)
    (Path(store.run_dir(run_b)) / "metrics.parquet").write_bytes(GARBAGE)
    status = CliRunner().invoke(app, ["status", str(spec), "--json"])
    assert status.exit_code == 0, status.output
    report = json.loads(status.stdout)
    assert report["counts"]["corrupt"] == 2 and {c["file"] for c in report["corrupt"]} == {"status.json", "metrics.parquet"}

    again = CliRunner().invoke(app, ["run", str(spec), "--workers", "1"])
    assert again.exit_code == 0, again.output
    assert again.stderr.count("corrupt: ") == 2 and "moved aside" in again.stderr
    for run_id in (run_a, run_b):
        assert store.problems(run_id) == [] and store.read_status(run_id)["state"] == "done"
        assert store.read_status(run_id)["final"]["eval_heldout_loss"] == final[run_id]  # the same result
        assert list(Path(store.run_dir(run_id)).glob("*.corrupt-*"))  # the damaged file is kept
    assert store.read_metrics(run_b)["step"].to_list()[-1] == store.read_status(run_b)["final"]["step"]
