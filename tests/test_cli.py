"""The command line as a user meets it: every bad input found so far is one line `error: ...` on
stderr and exit 2 (never a traceback, nothing written); results on stdout and progress on stderr;
`--json` is JSON only; piped output is not wrapped; user text is never read as rich markup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from scaler.cli import app

RUN_TOML = """
name = "tiny"
[model]
d_model = 32
n_layers = 1
n_heads = 2
d_ff = 96
vocab_size = 257
seq_len = 32
[train]
tokens = 2048
batch_size = 8
eval_tokens = 256
"""


def sweep_toml(store: str, extra: str = "", design: str = "[design.grid]\nsizes = [20_000]\ntokens = [4_096]") -> str:
    return f'name = "t"\nstore = "{store}"\n{extra}\n[model]\nseq_len = 32\n[train]\nbatch_size = 8\n{design}\n'


def table_csv(tmp_path: Path, rows: int = 12) -> Path:
    path = tmp_path / "runs.csv"
    n = [1e6 * (1 + i % 4) for i in range(rows)]
    d = [1e8 * (1 + i // 4) for i in range(rows)]
    pl.DataFrame({"N": n, "D": d, "loss": [1.8 + 400 / a**0.34 + 400 / b**0.28 for a, b in zip(n, d, strict=True)],
                  "tier": ["raw", "clean"] * (rows // 2)}).write_csv(path)
    return path


def _files(tmp_path: Path) -> dict[str, Path]:
    """The inputs the table's rows need, written into tmp_path."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    run = tmp_path / "run.toml"
    run.write_text(RUN_TOML)
    table = table_csv(tmp_path)
    specs = {
        "good": sweep_toml(str(tmp_path / "store")),
        "store_through_file": sweep_toml(str(blocker / "store")),
        "string_budget": sweep_toml(str(tmp_path / "store"), design='[design.isoflop]\nbudgets = ["1e11"]'),
        "bool_seed": sweep_toml(str(tmp_path / "store"), design="[design.grid]\nsizes = [20_000]\ntokens = [4_096]\n"
                                "[design]\nseeds = [true]"),
        "huge_model": sweep_toml(str(tmp_path / "store"), design="[design.grid]\nsizes = [1_000_000_000_000_000]\n"
                                 "tokens = [4_096]"),
    }
    paths = {name: tmp_path / f"{name}.toml" for name in specs}
    for name, text in specs.items():
        paths[name].write_text(text)
    chinchilla_fit = tmp_path / "chinchilla-fit.json"
    chinchilla_fit.write_text('{"spec": {"family": "chinchilla"}, "theta": [1, 1, 0, 0.3, 0.3]}')
    return {"blocker": blocker, "run": run, "table": table, "chinchilla_fit": chinchilla_fit, **paths}


# (name, arguments built from the files, text the one-line error must contain)
BAD_INPUTS: list[tuple[str, Callable[[dict[str, Path]], list[str]], str]] = [
    ("train: store through a file", lambda f: ["train", str(f["run"]), "--store", str(f["blocker"] / "s")],
     "is a file, not a folder"),
    ("train: unwritable store", lambda f: ["train", str(f["run"]), "--store", "/sys/scaler-test-store"],
     "cannot write there"),
    ("train: a folder as the run file", lambda f: ["train", str(f["blocker"].parent)], "a folder; expected a TOML file"),
    ("train: store URL without its package", lambda f: ["train", str(f["run"]), "--store", "s3://bucket/store"],
     "s3fs"),
    ("train: unknown store protocol", lambda f: ["train", str(f["run"]), "--store", "nosuch://bucket/store"],
     "Protocol not known"),
    ("run: store through a file", lambda f: ["run", str(f["store_through_file"])], "is a file, not a folder"),
    ("run: --workers 0", lambda f: ["run", str(f["good"]), "--workers", "0"], "--workers 0"),
    ("run: --runner nonsense", lambda f: ["run", str(f["good"]), "--runner", "k8s"], "--runner"),
    ("run: --max-runs 0", lambda f: ["run", str(f["good"]), "--max-runs", "0"], "--max-runs 0"),
    ("report: --out through a file", lambda f: ["report", str(f["good"]), "--out", str(f["blocker"] / "r")],
     "is a file, not a folder"),
    ("fit: --out through a file", lambda f: ["fit", "--table", str(f["table"]), "--n", "N", "--d", "D", "--loss", "loss",
                                             "--out", str(f["blocker"] / "fit.json")], "is a file, not a folder"),
    ("fit: --out a folder", lambda f: ["fit", "--table", str(f["table"]), "--n", "N", "--d", "D", "--loss", "loss",
                                       "--out", str(f["blocker"].parent)], "a folder; expected a file name"),
    ("fit: a folder as the table", lambda f: ["fit", "--table", str(f["blocker"].parent), "--n", "N", "--loss", "loss",
                                              "--d", "D"], "a folder; expected a CSV file"),
    ("fit: --group names a missing column", lambda f: ["fit", "--table", str(f["table"]), "--n", "N", "--d", "D",
                                                       "--loss", "loss", "--group", "mix"], "--group 'mix'"),
    ("fit: --bootstrap -5", lambda f: ["fit", "--table", str(f["table"]), "--n", "N", "--d", "D", "--loss", "loss",
                                       "--bootstrap", "-5"], "--bootstrap -5"),
    ("fit: --drop-top-loss at the row count", lambda f: ["fit", "--table", str(f["table"]), "--n", "N", "--d", "D",
                                                         "--loss", "loss", "--drop-top-loss", "12"], "only 12 rows"),
    ("fit: --drop-top-loss negative", lambda f: ["fit", "--table", str(f["table"]), "--n", "N", "--d", "D",
                                                 "--loss", "loss", "--drop-top-loss", "-1"], "--drop-top-loss -1"),
    ("fit: --reference not a tier", lambda f: ["fit", "--table", str(f["table"]), "--n", "N", "--d", "D", "--loss",
                                               "loss", "--law", "quality", "--reference", "web"], "--law quality"),
    ("fit: the old --json FILE", lambda f: ["fit", "--table", str(f["table"]), "--n", "N", "--d", "D", "--loss", "loss",
                                            "--json", "out.json"], "--json takes no file"),
    ("plan: --peak-flops -1", lambda f: ["plan", str(f["good"]), "--peak-flops", "-1", "--mfu", "0.5"], "--peak-flops"),
    ("plan: --mfu 2", lambda f: ["plan", str(f["good"]), "--peak-flops", "1e12", "--mfu", "2"], "--mfu"),
    ("plan: a string budget", lambda f: ["plan", str(f["string_budget"])], "design.isoflop.budgets.0"),
    ("plan: a boolean seed", lambda f: ["plan", str(f["bool_seed"])], "design.seeds.0"),
    ("plan: a model far beyond memory", lambda f: ["plan", str(f["huge_model"])], "bytes"),
    ("advance: --reach below 1", lambda f: ["advance", str(f["good"]), "--reach", "0.5,4"], "--reach 0.5,4"),
    ("advance: --reach not numbers", lambda f: ["advance", str(f["good"]), "--reach", "four"], "--reach 'four'"),
    ("advance: --pairs 0", lambda f: ["advance", str(f["good"]), "--pairs", "0"], "--pairs 0"),
    ("advance: a sweep without tiers", lambda f: ["advance", str(f["good"])], "advance compares raw with cleaned data"),
    ("design: --prior missing", lambda f: ["design", str(f["good"]), "--prior", str(f["blocker"].parent / "no.json")],
     "file not found"),
    ("design: --prior without a quality law", lambda f: ["design", str(f["good"]), "--prior", str(f["chinchilla_fit"])],
     "the prior has no fitted quality law"),
    ("data build: --out through a file", lambda f: ["data", "build", "--source", f"dir:{f['blocker'].parent}",
                                                    "--out", str(f["blocker"] / "data")], str("a-file")),
]


@pytest.mark.parametrize(("name", "args", "message"), BAD_INPUTS, ids=[row[0] for row in BAD_INPUTS])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, name: str, args: Callable, message: str) -> None:
    files = _files(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = CliRunner().invoke(app, args(files))
    assert result.exit_code == 2, (name, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.output and result.stdout == ""
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert after == before, f"{name} wrote {set(after) - set(before)}"


def test_plan_json_is_json_only_in_a_fresh_home(tmp_path: Path) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text(sweep_toml(str(tmp_path / "store"), extra="max_hours = 0.000001"))
    env = {**os.environ, "HOME": str(tmp_path / "home"), "SCALER_CACHE": str(tmp_path / "home" / ".cache")}
    proc = subprocess.run([sys.executable, "-m", "scaler.cli", "plan", str(spec), "--json"], capture_output=True,
                          text=True, env=env)
    plan = json.loads(proc.stdout)  # nothing but JSON on stdout: no calibration warning, no "over budget"
    assert plan["runs"] and "over_budget" in plan
    assert "warning" in proc.stderr  # no estimate to check max_hours against: said on stderr


def test_piped_output_is_not_wrapped_and_markup_is_printed_as_written(tmp_path: Path) -> None:
    weird = tmp_path / "weird[red]dir"
    weird.mkdir()
    spec = weird / "s.toml"
    spec.write_text(sweep_toml(str(weird / "store[bold]x")))
    proc = subprocess.run([sys.executable, "-m", "scaler.cli", "plan", str(spec)], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": ""})
    assert proc.returncode == 0, proc.stderr
    assert max(len(line) for line in proc.stdout.splitlines()) > 100  # one table row per line, whole
    row = next(line for line in proc.stdout.splitlines() if "29,856" in line)
    assert "4,096" in row and "pending" in row  # the whole row on one line
    status = subprocess.run([sys.executable, "-m", "scaler.cli", "status", str(spec)], capture_output=True, text=True)
    assert "store[bold]x" in status.stdout, status.stdout


def test_help_shows_toml_keys_as_written() -> None:
    result = CliRunner().invoke(app, ["data", "build", "--help"], terminal_width=200)
    assert "a TOML file with a [data.build] table" in " ".join(result.output.split())


def test_fit_json_and_out_use_one_style(tmp_path: Path) -> None:
    out = tmp_path / "fit.json"
    args = ["fit", "--table", str(table_csv(tmp_path)), "--n", "N", "--d", "D", "--loss", "loss", "--bootstrap", "20"]
    printed = CliRunner().invoke(app, [*args, "--json", "--out", str(out)])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.stdout) == json.loads(out.read_text())
    assert json.loads(printed.stdout)["law"] == "chinchilla"
