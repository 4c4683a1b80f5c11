"""Fit inputs: CSV tables and stores, and the errors bad input gets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from scaler.fitting.inputs import FitDataError, load_table

ANCHORS = Path(__file__).resolve().parents[1] / "anchors"  # the repository's copy of the public data
CHINCHILLA = ANCHORS / "chinchilla" / "svg_extracted_data.csv"


def write(tmp_path: Path, **columns: list) -> Path:
    path = tmp_path / "runs.csv"
    pl.DataFrame(columns).write_csv(path)
    return path


def test_chinchilla_anchor_loads_as_epoch_fits_it() -> None:
    data = load_table(CHINCHILLA, n="Model Size", loss="loss", flops="Training FLOP", drop_top=5)
    assert data.n_points == 240 and data.dropped == {"top_loss": 5}
    assert np.allclose(6 * data.columns["N"] * data.columns["D"], data.columns["C"])


def test_bad_tables_get_clear_errors(tmp_path: Path) -> None:
    good = {"n": [1e6, 2e6, 4e6, 1e6, 2e6, 4e6], "d": [1e8] * 3 + [2e8] * 3, "l": [3.0, 2.9, 2.8, 2.95, 2.85, 2.75]}
    with pytest.raises(FitDataError, match="loss 'loss': no such column"):
        load_table(write(tmp_path, **good), n="n", d="d", loss="loss")
    with pytest.raises(FitDataError, match="give d COL, or flops COL"):
        load_table(write(tmp_path, **good), n="n", loss="l")
    with pytest.raises(FitDataError, match="positive"):
        load_table(write(tmp_path, **{**good, "l": [3.0, 0.0, 2.8, 2.95, 2.85, 2.75]}), n="n", d="d", loss="l")
    with pytest.raises(FitDataError, match="single model size"):
        load_table(write(tmp_path, **{**good, "n": [1e6] * 6}), n="n", d="d", loss="l")
    with pytest.raises(FitDataError, match="at least 6"):
        load_table(write(tmp_path, n=[1e6, 2e6], d=[1e8, 1e8], l=[3.0, 2.9]), n="n", d="d", loss="l")
    nan = {**good, "l": [3.0, None, 2.8, 2.95, 2.85, 2.75], "n": good["n"] + [], "d": good["d"]}
    nan_more = {k: v + v[:1] for k, v in nan.items()}
    with pytest.raises(FitDataError, match="pass drop_nan"):
        load_table(write(tmp_path, **nan_more), n="n", d="d", loss="l")
    dropped = load_table(write(tmp_path, **nan_more), n="n", d="d", loss="l", drop_nan=True)
    assert dropped.n_points == 6 and dropped.dropped == {"nan": 1}
    with pytest.raises(FitDataError, match="file not found"):
        load_table(tmp_path / "missing.csv", n="n", d="d", loss="l")


def test_fit_cli_on_the_chinchilla_table_writes_fit_json(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from scaler.cli import app

    out = tmp_path / "fit.json"
    result = CliRunner().invoke(app, ["fit", "--table", str(CHINCHILLA), "--n", "Model Size", "--flops", "Training FLOP",
                                      "--loss", "loss", "--drop-top-loss", "5", "--bootstrap", "100", "--out", str(out)])
    assert result.exit_code == 0, result.output
    fit = json.loads(out.read_text())
    assert fit["law"] == "chinchilla" and fit["n_points"] == 240 and fit["converged"]
    assert abs(fit["derived"]["E"] - 1.8172) < 1e-3 and abs(fit["objective"] - 1.01827e-3) < 1e-7
    lo, hi = fit["intervals"]["alpha"]
    assert lo < 0.3473 < hi
    assert [round(a["n_opt"] * a["d_opt"] * 6 / a["flops"], 9) for a in fit["allocations"]] == [1.0] * 3
    bad = CliRunner().invoke(app, ["fit", "--table", str(CHINCHILLA), "--n", "Model Size", "--loss", "nope", "--d", "x"])
    assert bad.exit_code == 2 and "such column" in bad.output


def test_fit_sweep_gives_per_tier_fits_isoflop_backtests_and_quality_multipliers() -> None:
    from scaler.fitting.pipeline import fit_sweep
    from scaler.fitting.inputs import FitData

    rng = np.random.default_rng(0)
    rows = []
    for tier, kappa in (("raw", 1.0), ("clean", 2.0)):
        for budget in (1e17, 3e17, 1e18, 3e18):
            for n in np.geomspace(1.5e7, 1.2e9, 7) * (budget / 1e18) ** 0.5:
                d = budget / (6 * n)
                loss = 1.7 + 400 / n**0.34 + 410 / (kappa * d) ** 0.28
                rows.append((tier, n, d, budget, loss * np.exp(rng.normal(0, 0.002))))
    tiers, n, d, c, loss = map(np.array, zip(*rows, strict=True))
    columns = {"N": n, "D": d, "C": c, "w_raw": (tiers == "raw") * 1.0, "w_clean": (tiers == "clean") * 1.0}
    out = fit_sweep(FitData("synthetic", columns, loss, tiers), "chinchilla", 100, 0)
    assert set(out["groups"]) == {"raw", "clean"}
    for entry in out["groups"].values():
        assert entry["parametric"]["converged"] and abs(entry["isoflop"]["a"] - 0.28 / 0.62) < 0.05
        assert entry["backtest"]["mean_abs_rel_error"] < 0.01
    kappa = out["quality"]["derived"]["kappa_clean"]
    lo, hi = out["quality"]["intervals"]["kappa_clean"]
    assert abs(kappa - 2.0) < 0.15 and lo < 2.0 < hi
