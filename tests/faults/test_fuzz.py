"""Fuzzed inputs get documented errors only (issue 12): a sweep spec, a run file or a table that
scaler cannot use is one line `error: ...` and exit 2, never a traceback.

Hypothesis mutates valid inputs (a key given a value of another type or out of range, a key
dropped or added, the text cut short) and also feeds raw bytes (binary, invalid UTF-8, huge
lines). CI mode runs 20 examples per input; SCALER_FAULTS=long runs 3,000 sweep specs, 3,500 run
files and 2,500 tables (with the 1,000 data sources of test_fuzz_data.py: 10,000 inputs).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from faultkit import documented
from typer.testing import CliRunner

from scaler.cli import app
from scaler.config import ConfigError, load_run_config

LONG = os.environ.get("SCALER_FAULTS") == "long"


def fuzz(long_examples: int) -> settings:
    return settings(max_examples=long_examples if LONG else 20, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

SPEC = '''name = "fuzz"
max_flops = 1e15
[model]
seq_len = 32
[train]
batch_size = 8
eval_tokens = 256
[design.grid]
sizes = [20_000, 80_000]
tokens = [4_096]
[fit]
law = "chinchilla"
bootstrap = 10
'''
RUN = '''name = "fuzz"
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
'''
TABLE = "params,tokens,loss\n1e6,2e7,3.1\n2e6,4e7,2.9\n4e6,8e7,2.7\n8e6,1.6e8,2.6\n1.6e7,3.2e8,2.5\n3.2e7,6.4e8,2.4\n"

values = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30), st.booleans(), st.lists(st.integers(-5, 10**9), max_size=4), st.just([]),
    st.dictionaries(st.text(min_size=1, max_size=8), st.integers(), max_size=2),
)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value == float("inf") else "-inf" if value == float("-inf") else repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f'"{k}" = {toml_value(v)}' for k, v in value.items()) + "}"


@st.composite
def mutated(draw, base: str) -> bytes:
    """`base` with one line changed (a value of any type, the line dropped, a new key), or cut, or
    raw bytes."""
    kind = draw(st.sampled_from(["value", "drop", "add", "cut", "bytes"]))
    lines = base.splitlines()
    if kind == "bytes":
        return draw(st.one_of(st.binary(max_size=300), st.just(b"a = \"" + b"x" * 200_000 + b"\"\n"),
                              st.just(b"\xff\xfe\x00name = 1\n")))
    if kind == "cut":
        return base[: draw(st.integers(0, len(base)))].encode()
    keyed = [i for i, line in enumerate(lines) if " = " in line]
    i = draw(st.sampled_from(keyed))
    if kind == "drop":
        del lines[i]
    elif kind == "add":
        key = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10))
        lines.insert(i, f"{key} = {toml_value(draw(values))}")
    else:
        lines[i] = f"{lines[i].split(' = ')[0]} = {toml_value(draw(values))}"
    return ("\n".join(lines) + "\n").encode()


@fuzz(3000)
@given(text=mutated(SPEC))
@example(text=SPEC.replace("tokens = [4_096]", "tokens = []").encode())  # found by the long runs: tracebacks once
@example(text=SPEC.replace("tokens = [4_096]", "tokens = [1]").encode())
def test_fuzzed_sweep_specs_plan_or_fail_in_one_line(text: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("spec")
    spec = folder / "spec.toml"
    spec.write_bytes(text.replace(b'name = "fuzz"', f'name = "fuzz"\nstore = "{folder / "store"}"'.encode(), 1))
    result = CliRunner().invoke(app, ["plan", str(spec), "--json"])
    if result.exit_code == 3:  # `plan`'s documented answer to a sweep over its max_flops / max_hours
        assert result.stderr.startswith("over budget: ") and "--force" in result.stderr
        return
    documented(result)


@fuzz(3500)
@given(text=mutated(RUN))
def test_fuzzed_run_files_load_or_raise_config_errors(text: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("run") / "run.toml"
    path.write_bytes(text)
    try:
        load_run_config(path)
    except ConfigError as err:
        assert "\n" not in str(err) and str(path) in str(err)


CELLS = st.sampled_from(["1e6", "-1", "nan", "", "x", "inf", "0", "3.2", "1e400", "1e-300", '"2,5"', "\u00e9"])


@st.composite
def tables(draw) -> bytes:
    """The valid table with one cell replaced, a row cut short or doubled; or cells at random; or bytes."""
    kind = draw(st.sampled_from(["cell", "row", "cells", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=400))
    if kind == "cells":
        cells = draw(st.lists(CELLS, min_size=3, max_size=21))
        return ("params,tokens,loss\n" + "\n".join(",".join(cells[i:i + 3]) for i in range(0, len(cells), 3))).encode()
    rows = [line.split(",") for line in TABLE.strip().splitlines()]
    r = draw(st.integers(0, len(rows) - 1))
    if kind == "cell":
        rows[r][draw(st.integers(0, 2))] = draw(CELLS)
    else:
        rows[r] = rows[r][: draw(st.integers(0, 2))] if draw(st.booleans()) else rows[r] * 2
    return ("\n".join(",".join(row) for row in rows) + "\n").encode()


@fuzz(2500)
@given(text=tables())
def test_fuzzed_tables_fit_predict_and_recommend_or_fail_in_one_line(text: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("table")
    table = folder / "runs.csv"
    table.write_bytes(text)
    fitted = CliRunner().invoke(app, ["fit", "--table", str(table), "--n", "params", "--d", "tokens", "--loss", "loss",
                                      "--bootstrap", "0", "--out", str(folder / "fit.json")])
    if fitted.exit_code == 1:  # every group failed: said in one line (tests/test_own_runs.py)
        return
    documented(fitted)
    fit_json = folder / "fit.json"
    if fitted.exit_code == 0:
        documented(CliRunner().invoke(app, ["predict", str(fit_json), "--at", str(table), "--n", "params", "--d", "tokens"]))
        documented(CliRunner().invoke(app, ["recommend", "--fit", str(fit_json), "--budget", "1e18", "--raw-tokens", "1e9"]))


def test_the_bases_are_valid(tmp_path: Path) -> None:
    """The fuzzers start from inputs that work, so what they find is the mutation's doing."""
    assert tomllib.loads(SPEC) and tomllib.loads(RUN)
    run = tmp_path / "run.toml"
    run.write_text(RUN)
    load_run_config(run)
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.replace('name = "fuzz"', f'name = "fuzz"\nstore = "{tmp_path / "store"}"'))
    assert CliRunner().invoke(app, ["plan", str(spec), "--json"]).exit_code == 0
