"""A full disk (a small tmpfs the test mounts; skipped, with the reason, where it cannot mount) or a
read-only store: one line naming the path and the cause, exit 2, no temporary files or folders
left, earlier results untouched (issue 12)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sysconfig
from pathlib import Path

import pytest
from faultkit import SMALL_REFERENCE
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


# --- a data build on a full disk ------------------------------------------------------------------

STDLIB = Path(sysconfig.get_paths()["stdlib"])
MODULES = {"alpha": ["textwrap", "shlex"], "beta": ["colorsys", "bisect"], "gamma": ["fnmatch", "glob"],
           "delta": ["keyword", "heapq"]}  # 80 kB of code: an 1.1 MB build (shards, reference, tables)
ROOM = 200_000  # bytes left free: the reference's checkpoint wants 1.4 MB, the shards of three tiers 0.6 MB


def data_build(spec: Path, source: Path, out: Path, *args: str):
    return CliRunner().invoke(app, ["data", "build", str(spec), "--source", f"dir:{source}", "--tokenizer", "bytes",
                                    "--heldout-fraction", "0.3", "--out", str(out), *args])


def data_leftovers(folder: Path) -> list[str]:
    """Temporary files or folders: the build's `.OUT.partial-*` and `.OUT.old-*`, the store's `*.tmp-*`."""
    return [str(p) for p in folder.rglob("*") if any(m in p.name for m in (".partial-", ".old-", ".tmp-"))]


@pytest.mark.parametrize(("into", "stage"), [("another", "shards"), ("another", "reference"), ("same", "shards")])
def test_a_data_build_on_a_full_disk_is_one_line_and_loses_nothing(small_disk: Path, tmp_path: Path, into: str,
                                                                   stage: str) -> None:
    """The disk fills while the build writes its token shards (tiers without the perplexity step)
    or its perplexity reference's checkpoint, building into a new folder or over an earlier build
    (of other sources): one line naming the output folder, the file and the cause; the earlier
    build untouched, nothing temporary left."""
    source = tmp_path / "src"
    for package, names in MODULES.items():
        (source / package).mkdir(parents=True)
        for name in names:
            (source / package / f"{name}.py").write_bytes((STDLIB / f"{name}.py").read_bytes())
    spec = tmp_path / "spec.toml"
    spec.write_text(SMALL_REFERENCE)
    first = small_disk / "first"
    assert data_build(spec, source, first).exit_code == 0
    before = fingerprint(first)
    (source / "gamma" / "more.py").write_bytes((STDLIB / "string.py").read_bytes())  # a new build id
    disk = os.statvfs(small_disk)
    (small_disk / "filler").write_bytes(b"\0" * (disk.f_bavail * disk.f_frsize - ROOM))

    out = first if into == "same" else small_disk / "second"
    result = data_build(spec, source, out, *(["--tiers", "raw,filtered,dedup"] if stage == "shards" else []))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"error: {out}: the data build failed: "), result.stderr
    written = f"{out}/tokens/bytes/" if stage == "shards" else f"{out}/reference/"  # what could not be written
    assert "No space left on device" in errors[0] and written in errors[0], errors[0]
    assert data_leftovers(small_disk) == []
    assert fingerprint(first) == before  # the earlier build, untouched
    assert into == "same" or not out.exists()
