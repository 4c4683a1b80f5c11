"""A full disk (a small tmpfs the test mounts; skipped, with the reason, where it cannot mount) or a
read-only store: one line naming the path and the cause, exit 2, no temporary files or folders
left, earlier results untouched (issue 12)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scaler.cli import app

RUN = ("[model]\nd_model = 32\nn_layers = 1\nn_heads = 2\nd_ff = 96\nvocab_size = 257\nseq_len = 32\n"
       "[train]\ntokens = {tokens}\nbatch_size = 8\nlr = 1e-2\neval_tokens = 256\ncheckpoint_every_steps = 10\n")


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 3 MB tmpfs, mounted for this test and unmounted after it."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {done.stderr.strip() or done.returncode}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fingerprint(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*") if ".tmp-" in p.name or "orbax-checkpoint-tmp" in p.name]


def test_a_full_disk_is_one_line_and_loses_nothing(small_disk: Path, tmp_path: Path) -> None:
    store = small_disk / "store"
    first = tmp_path / "first.toml"
    first.write_text(RUN.format(tokens=2560))
    assert CliRunner().invoke(app, ["train", str(first), "--store", str(store)]).exit_code == 0
    before = fingerprint(store)
    filler = small_disk / "filler"
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    filler.write_bytes(b"\0" * max(0, free - 60_000))  # room for a run folder's JSON, not for a checkpoint

    second = tmp_path / "second.toml"
    second.write_text(RUN.format(tokens=5120))
    result = CliRunner().invoke(app, ["train", str(second), "--store", str(store)])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert lines[-1].startswith("error: ") and "No space left on device" in lines[-1] and str(store) in lines[-1]
    assert "Traceback" not in result.stderr
    assert leftovers(store) == []
    assert {k: v for k, v in fingerprint(store).items() if k in before} == before  # the earlier run untouched


def test_a_read_only_store_is_one_line(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes through read-only permissions; the tmpfs test covers the write errors")
    store = tmp_path / "store"
    store.mkdir()
    store.chmod(0o500)
    run = tmp_path / "run.toml"
    run.write_text(RUN.format(tokens=2560))
    try:
        result = CliRunner().invoke(app, ["train", str(run), "--store", str(store)])
    finally:
        store.chmod(0o700)
    assert result.exit_code == 2 and result.stderr.startswith("error: --store") and "ermission denied" in result.stderr
