"""Fit inputs: CSV tables and stores, and the errors bad input gets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from scaler.fit.data import FitDataError, load_table

CHINCHILLA = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "chinchilla" / "svg_extracted_data.csv"


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
    with pytest.raises(FitDataError, match="--loss 'loss': no such column"):
        load_table(write(tmp_path, **good), n="n", d="d", loss="loss")
    with pytest.raises(FitDataError, match="--d COL, or --flops"):
        load_table(write(tmp_path, **good), n="n", loss="l")
    with pytest.raises(FitDataError, match="positive"):
        load_table(write(tmp_path, **{**good, "l": [3.0, 0.0, 2.8, 2.95, 2.85, 2.75]}), n="n", d="d", loss="l")
    with pytest.raises(FitDataError, match="single model size"):
        load_table(write(tmp_path, **{**good, "n": [1e6] * 6}), n="n", d="d", loss="l")
    with pytest.raises(FitDataError, match="at least 6"):
        load_table(write(tmp_path, n=[1e6, 2e6], d=[1e8, 1e8], l=[3.0, 2.9]), n="n", d="d", loss="l")
    nan = {**good, "l": [3.0, None, 2.8, 2.95, 2.85, 2.75], "n": good["n"] + [], "d": good["d"]}
    nan_more = {k: v + v[:1] for k, v in nan.items()}
    with pytest.raises(FitDataError, match="--drop-nan"):
        load_table(write(tmp_path, **nan_more), n="n", d="d", loss="l")
    dropped = load_table(write(tmp_path, **nan_more), n="n", d="d", loss="l", drop_nan=True)
    assert dropped.n_points == 6 and dropped.dropped == {"nan": 1}
    with pytest.raises(FitDataError, match="file not found"):
        load_table(tmp_path / "missing.csv", n="n", d="d", loss="l")
