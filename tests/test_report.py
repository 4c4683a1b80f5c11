"""The sweep report (scaler.report): figures, report.md and a self-contained index.html, on a
synthetic two-tier store whose losses follow a known Chinchilla law."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from scaler.report.render import FIGURES, build_report
from scaler.store import Store

TRUE = {"E": 1.8, "A": 400.0, "B": 400.0, "alpha": 0.34, "beta": 0.28}
KAPPA = {"raw": 1.0, "clean": 1.5}
PNG = b"\x89PNG\r\n\x1a\n"


def _law(n: float, d: float) -> float:
    return TRUE["E"] + TRUE["A"] / n ** TRUE["alpha"] + TRUE["B"] / d ** TRUE["beta"]


def _make_store(root: Path, noise: float = 0.003, seed: int = 1) -> None:
    """2 tiers x 3 budgets x 4 sizes; tier t trains on kappa_t times its tokens (effective data)."""
    store, rng = Store(str(root)), np.random.default_rng(seed)
    for tier, kappa in KAPPA.items():
        for c in (1e15, 1e16, 1e17):
            for n in (1e6, 3e6, 1e7, 3e7):
                d = int(c / (6 * n))
                final = _law(n, kappa * d) * (1 + noise * rng.standard_normal())
                config = {"model": {"d_model": int(n ** 0.33)}, "train": {"tokens": d, "seed": 0},
                          "data": {"mix": {tier: 1.0}}}
                rid = f"{tier}-{int(np.log10(c))}-{int(np.log10(n) * 10)}"
                store.write_config(rid, config)
                store.write_json(rid, "run_info.json", {"n_params": int(n), "flops": 6.0 * n * d})
                tokens = (np.array([0.1, 0.3, 0.6, 1.0]) * d).astype(np.int64)
                loss = [_law(n, kappa * float(t)) for t in tokens[:-1]] + [final]
                store.write_metrics(rid, pl.DataFrame({
                    "step": np.arange(1, 5), "tokens": tokens, "flops": 6.0 * n * tokens,
                    "train_loss": loss, "eval_heldout_loss": loss}))
                store.write_status(rid, "done")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from scaler.fit.pipeline import fit_sweep
    from scaler.fit.data import from_store

    root = tmp_path_factory.mktemp("sweep") / "store"
    _make_store(root)
    fit_json = fit_sweep(from_store(str(root)), "chinchilla", 100, 0)
    return root, json.loads(json.dumps(fit_json))  # as read back from fit.json


DATA_REPORT = {
    "tiers": {"raw": {"base": None, "steps": [], "documents": 100, "bytes": 10_000, "yield_bytes": 1.0,
                      "bytes_train_tokens": 9_000},
              "clean": {"base": "raw", "steps": ["min-size"], "documents": 80, "bytes": 7_000, "yield_bytes": 0.7,
                        "bytes_train_tokens": 6_500}},
    "steps": [{"tier": "clean", "step": "min-size", "documents_in": 100, "documents_out": 80, "bytes_in": 10_000,
               "bytes_out": 7_000, "seconds": 0.1, "flops": 0.0,
               "removed": {"too-small": {"documents": 15, "bytes": 500}, "empty": {"documents": 5, "bytes": 0}}}],
}


def _check_outputs(out: dict[str, Path], out_dir: Path) -> tuple[str, str]:
    for key, (name, _, _) in FIGURES.items():
        assert out[key] == out_dir / name
        assert out[key].read_bytes()[:8] == PNG
        assert out[key].stat().st_size < 150_000
    md, page = out["markdown"].read_text(), out["html"].read_text()
    imgs = re.findall(r"<img\b[^>]*>", page)
    assert len(imgs) == len(FIGURES)
    for tag in imgs:
        assert re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', tag), tag[:80]
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<(link|script)\b", page) and "url(" not in page
    refs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(refs) == len(FIGURES)
    for ref in refs:
        assert (out_dir / ref).is_file()
    return md, page


def _interval_cell(md: str, row: str, column: str) -> tuple[float, float, float]:
    """(estimate, lo, hi) printed in the parameter table's `row` for tier `column`."""
    lines = md.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("| parameter |") and column in line)
    columns = [c.strip() for c in lines[head].strip("|").split("|")]
    for line in lines[head + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == row:
            m = re.fullmatch(r"([-\d.e+,]+) \[([-\d.e+,]+), ([-\d.e+,]+)\]", cells[columns.index(column)])
            assert m, cells
            return tuple(float(g.replace(",", "")) for g in m.groups())  # type: ignore[return-value]
    raise AssertionError(f"no row {row}")


def test_report_of_known_law(sweep: tuple[Path, dict], tmp_path: Path) -> None:
    root, fit_json = sweep
    out_dir = tmp_path / "report"
    out = build_report(str(root), fit_json, DATA_REPORT, out_dir, "synthetic sweep",
                       recommendation_lines=["train 1e7 parameters on 1.7e10 tokens"], spec_text="[sweep]\n",
                       target_flops=1e18)
    md, page = _check_outputs(out, out_dir)
    assert "train 1e7 parameters" in md and "train 1e7 parameters" in page
    # the table prints intervals that contain the true exponents, for both tiers
    truth = {"alpha": TRUE["alpha"], "beta": TRUE["beta"],
             "a_exponent": TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"]),
             "b_exponent": TRUE["alpha"] / (TRUE["alpha"] + TRUE["beta"])}
    for tier in KAPPA:
        for name, value in truth.items():
            est, lo, hi = _interval_cell(md, name, tier)
            # printed to 4 significant digits: allow the rounding
            assert lo * (1 - 5e-4) <= value <= hi * (1 + 5e-4), (tier, name, est, lo, hi)
    # references beside the fit, kappa of the clean tier near its true 1.5
    assert "Hoffmann et al. 2022" in md and "Besiroglu et al. 2024" in md
    _, lo, hi = _interval_cell(md.replace("| parameter | value [95%] |", "| parameter | quality |"), "kappa_clean", "quality")
    assert lo <= KAPPA["clean"] <= hi
    # caveats: compute range, extrapolation factor, backtest, seeds
    assert "1e+15 to 1e+17 FLOPs" in md
    assert "10x the largest run" in md
    assert "backtest" in md and "One seed per configuration" in md
    assert "too-small" in md and "70.0%" in md


def test_missing_pieces_do_not_crash(sweep: tuple[Path, dict], tmp_path: Path) -> None:
    root, fit_json = sweep
    broken = copy.deepcopy(fit_json)
    broken["groups"]["clean"] = {"parametric": {"error": "fit exploded"}, "isoflop": {"error": "too few budgets"},
                                 "backtest": {"error": "no runs"}}
    broken["quality"] = {"error": "quality fit failed"}
    out_dir = tmp_path / "partial"
    out = build_report(str(root), broken, None, out_dir, "partial")
    md, _ = _check_outputs(out, out_dir)
    assert "fit exploded" in md and "No data build report" in md and "quality fit failed" in md
    # no fit at all, and an empty store
    out = build_report(str(tmp_path / "nothing"), {}, None, tmp_path / "empty", "empty")
    _check_outputs(out, tmp_path / "empty")
    assert "No fit was given" in out["markdown"].read_text()


def test_report_imports_no_jax_or_trainer() -> None:
    import subprocess
    import sys

    code = ("import sys, scaler.report.render, scaler.report.figures;"
            "bad = [m for m in sys.modules if m == 'jax' or m.startswith(('scaler.train', 'scaler.model', 'jax.'))];"
            "print(bad); sys.exit(1 if bad else 0)")
    subprocess.run([sys.executable, "-c", code], check=True)
