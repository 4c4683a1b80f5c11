"""Runs trained anywhere, from the command line as the README's walkthrough uses them: a plain CSV
with a dataset column is fitted per group and across groups, predicted with intervals, and turned
into a recommendation; the extrapolation guard warns and refuses; nothing is dropped silently."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from scaler.cli import app
from scaler.store import Store

KAPPA = {"web": 1.0, "web-clean": 1.5}


def chinchilla_loss(n: np.ndarray, d: np.ndarray) -> np.ndarray:
    return 1.8 + 400.0 / n**0.34 + 410.0 / d**0.28


@pytest.fixture(scope="module")
def runs_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """As another training stack would export it: params, tokens, loss, dataset; two seeds each."""
    rng = np.random.default_rng(0)
    rows = []
    for dataset, kappa in KAPPA.items():
        for budget in (1e16, 1e17, 1e18):
            for n in np.geomspace(3e6, 1e8, 4) * (budget / 1e17) ** 0.5:
                d = budget / (6 * n)
                for seed in (0, 1):
                    loss = chinchilla_loss(n, kappa * d) * math.exp(rng.normal(0, 0.002))
                    rows.append({"params": n, "tokens": d, "loss": loss, "dataset": dataset, "seed": seed})
    path = tmp_path_factory.mktemp("own") / "runs.csv"
    pl.DataFrame(rows).write_csv(path)
    return path


@pytest.fixture(scope="module")
def group_fit(runs_csv: Path) -> tuple[Path, str]:
    out = runs_csv.parent / "fit.json"
    result = CliRunner().invoke(app, ["fit", "--table", str(runs_csv), "--n", "params", "--d", "tokens", "--loss", "loss",
                                      "--group", "dataset", "--reference", "web", "--bootstrap", "60", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.stdout


def test_a_table_with_a_group_column_is_fitted_per_group_and_across(group_fit: tuple[Path, str]) -> None:
    out, printed = group_fit
    fitted = json.loads(out.read_text())
    assert set(fitted["groups"]) == {"web", "web-clean"}  # side by side, not pooled
    assert fitted["flops_convention"] == "6ND"
    for entry in fitted["groups"].values():
        par = entry["parametric"]
        assert par["converged"] and par["allocations"][0]["convention"] == "6ND"
        assert par["seed_noise"]["n_configs"] == 12 and par["bootstrap_clusters"] == 12  # seeds kept together
        assert par["error_model"]["n_residuals"] > 0
    quality = fitted["quality"]
    assert quality["spec"]["reference"] == "web"
    lo, hi = quality["intervals"]["kappa_web-clean"]
    assert lo < KAPPA["web-clean"] < hi
    assert "== web-clean ==" in printed and "quality law" in printed and "seed noise" in printed
    assert "prediction intervals:" in printed


def test_quality_law_across_the_groups_of_a_table(runs_csv: Path) -> None:
    result = CliRunner().invoke(app, ["fit", "--table", str(runs_csv), "--n", "params", "--d", "tokens", "--loss", "loss",
                                      "--group", "dataset", "--law", "quality", "--reference", "web", "--bootstrap", "0",
                                      "--json"])
    assert result.exit_code == 0, result.stderr
    quality = json.loads(result.stdout)
    assert quality["law"] == "quality" and abs(quality["derived"]["kappa_web-clean"] - 1.5) < 0.1
    missing = CliRunner().invoke(app, ["fit", "--table", str(runs_csv), "--n", "params", "--d", "tokens", "--loss",
                                       "loss", "--group", "dataset", "--law", "quality"])
    assert missing.exit_code == 2 and "--reference 'raw'" in missing.stderr


def test_predict_points_from_a_csv_in_input_order_with_intervals(group_fit: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = group_fit
    points = tmp_path / "points.csv"
    pl.DataFrame({"N": [1e9, 3e7, 1e9], "C": [3e20, 1e17, 3e20], "dataset": ["web-clean", "web", "web"]}).write_csv(points)
    result = CliRunner().invoke(app, ["predict", str(out), "--at", str(points), "--n", "N", "--flops", "C",
                                      "--group", "dataset", "--json"])
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["points"]
    assert [(p["n"], p["group"]) for p in rows] == [(1e9, "web-clean"), (3e7, "web"), (1e9, "web")]
    for p in rows:
        assert set(p) >= {"n", "d", "group", "loss", "interval", "extrapolation"}
        assert p["interval"][0] < p["loss"] < p["interval"][1]
        assert p["d"] == pytest.approx(p["flops"] / (6 * p["n"]))
    assert rows[0]["loss"] < rows[2]["loss"]  # cleaner data, same run: lower loss
    assert rows[0]["extrapolation"] == pytest.approx(3e20 / json.loads(out.read_text())["largest_run_flops"])
    assert "extrapolation: " in result.stderr and "the fitted runs span" in result.stderr  # 300x: warned
    near = CliRunner().invoke(app, ["predict", str(out), "--params", "3e7", "--tokens", "6e8", "--tier", "web"])
    assert near.exit_code == 0 and "extrapolation" not in near.stderr and "0." in near.stdout
    unknown = CliRunner().invoke(app, ["predict", str(out), "--params", "3e7", "--tokens", "6e8", "--tier", "books"])
    assert unknown.exit_code == 2 and unknown.stderr.startswith("error: group 'books' is not in the fit")


def test_recommend_for_runs_trained_anywhere_warns_then_refuses_far_out(group_fit: tuple[Path, str]) -> None:
    out, _ = group_fit
    base = ["recommend", "--fit", str(out), "--raw-tokens", "1e11", "--yield", "web-clean=0.4",
            "--cleaning-cost", "web-clean=50"]
    largest = json.loads(out.read_text())["largest_run_flops"]
    near = CliRunner().invoke(app, [*base, "--budget", f"{10 * largest}", "--json"])
    assert near.exit_code == 0, near.stderr
    rec = json.loads(near.stdout)
    assert rec["extrapolation"] == pytest.approx(10) and rec["flops_convention"] == "6ND"
    assert {o["name"] for o in rec["options"]} == {"web", "web-clean"}
    far = CliRunner().invoke(app, [*base, "--budget", f"{1000 * largest}"])
    assert far.exit_code == 0 and "extrapolation: " in far.stderr and "crossover" in far.stdout.lower()
    refused = CliRunner().invoke(app, [*base, "--budget", f"{1e5 * largest}"])
    assert refused.exit_code == 2 and len(refused.stderr.strip().splitlines()) == 1 and "--force" in refused.stderr
    forced = CliRunner().invoke(app, [*base, "--budget", f"{1e5 * largest}", "--force"])
    assert forced.exit_code == 0, forced.stderr
    bad = CliRunner().invoke(app, [*base, "--budget", "1e20", "--yield", "clean"])
    assert bad.exit_code == 2 and "GROUP=NUMBER" in bad.stderr


def test_diverged_and_failed_runs_are_named_not_dropped(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from scaler.session import from_store

    store = Store(str(tmp_path / "store"))
    rng = np.random.default_rng(1)
    for i, (n, d) in enumerate((n, d) for n in (1e6, 3e6, 1e7, 3e7) for d in (2e7, 6e7)):
        run_id = f"run{i}"
        store.write_config(run_id, {"train": {"tokens": int(d), "seed": 0}, "data": {"mix": {"raw": 1.0}}})
        store.write_json(run_id, "run_info.json", {"n_params": int(n), "flops": 6.0 * n * d})
        loss = float(chinchilla_loss(n, d)) * (1 + 0.002 * rng.standard_normal())
        store.write_metrics(run_id, pl.DataFrame({"step": [1], "tokens": [int(d)], "eval_heldout_loss": [loss]}))
        store.write_status(run_id, "done")
    for run_id, state in (("blew-up", "diverged"), ("crashed", "failed")):
        store.write_config(run_id, {"train": {"tokens": 100, "seed": 0}, "data": {"mix": {"raw": 1.0}}})
        store.write_status(run_id, state)
    data = from_store(store.root)
    assert data.excluded == {"diverged": ["blew-up"], "failed": ["crashed"]} and data.n_points == 8
    from scaler.cli.common import _print_sweep_fit
    from scaler.session import fit_store

    sweep_ids = {f"run{i}" for i in range(7)} | {"blew-up"}  # run7 belongs to an earlier build of the sweep
    result = fit_store(store, n_bootstrap=0, run_ids=sweep_ids)
    assert result["excluded"] == {"outside the sweep": ["crashed", "run7"], "diverged": ["blew-up"]}
    assert result["n_points"] == 7 and json.loads((tmp_path / "store" / "fit.json").read_text())["excluded"]
    _print_sweep_fit(result)
    err = capsys.readouterr().err
    assert "1 diverged run not in the fit: blew-up" in err
    assert "2 runs of the store outside the sweep (another data build or spec version) not in the fit: crashed, run7" in err


def test_a_fit_whose_every_group_failed_exits_non_zero(tmp_path: Path) -> None:
    table = tmp_path / "few.csv"  # 4 runs per group: too few for a 5-parameter law in either group
    n = np.array([1e6, 3e6, 1e7, 3e7] * 2)
    pl.DataFrame({"N": n, "D": 20 * n, "loss": chinchilla_loss(n, 20 * n), "g": ["a"] * 4 + ["b"] * 4}).write_csv(table)
    result = CliRunner().invoke(app, ["fit", "--table", str(table), "--n", "N", "--d", "D", "--loss", "loss",
                                      "--group", "g", "--bootstrap", "0"])
    assert result.exit_code == 1 and "no law could be fitted" in result.stderr
    assert "too few points" in result.stdout


def test_bad_fits_and_points_are_one_line_errors(group_fit: tuple[Path, str], runs_csv: Path, tmp_path: Path) -> None:
    out, _ = group_fit
    garbled = tmp_path / "garbled.json"
    cases = {
        "not json": (["predict", str(garbled), "--params", "1e8", "--tokens", "1e9"], "{not json"),
        "not a fit": (["predict", str(garbled), "--params", "1e8", "--tokens", "1e9"], '{"spec": 3}'),
        "no parametric": (["predict", str(garbled), "--params", "1e8", "--tokens", "1e9"], '{"groups": {"a": {}}}'),
        "failed fit report": (["report", "--fit", str(garbled), "--out", str(tmp_path / "r")], '{"spec": {}, "error": "x"}'),
    }
    for name, (args, text) in cases.items():
        garbled.write_text(text)
        result = CliRunner().invoke(app, args)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (name, result.output)
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_bytes(b'N,D\n1e8,"unterminated\n')
    result = CliRunner().invoke(app, ["predict", str(out), "--at", str(bad_csv), "--n", "N", "--d", "D", "--tier", "web"])
    assert result.exit_code == 2 and result.stderr.startswith("error: "), result.output
    one = CliRunner().invoke(app, ["fit", "--table", str(runs_csv), "--n", "params", "--d", "tokens", "--loss", "loss",
                                   "--bootstrap", "1"])
    assert one.exit_code == 2 and "--bootstrap 1" in one.stderr
