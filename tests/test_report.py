"""The sweep report (scaler.report): figures, report.md and a self-contained index.html, on a
synthetic two-tier store whose losses follow a known Chinchilla law, and on a fit JSON alone (a
CSV table of runs fitted per dataset, no store)."""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from scaler.config import Family, count_params, flops_per_token
from scaler.report import frames
from scaler.report.render import FIGURES, build_report_from_fit
from scaler.session import build_report
from scaler.store import Store

TRUE = {"E": 1.8, "A": 400.0, "B": 400.0, "alpha": 0.34, "beta": 0.28}
KAPPA = {"raw": 1.0, "clean": 1.5}
PNG = b"\x89PNG\r\n\x1a\n"
STORE_FIGURES = set(FIGURES) - {"crossover"}  # a store with curves, a fit and a data report: every figure but
TABLE_FIGURES = STORE_FIGURES - {"loss_curves", "data"}  # the recommendation's; a fit JSON alone: no curves, no data


def _law(n: float, d: float) -> float:
    return TRUE["E"] + TRUE["A"] / n ** TRUE["alpha"] + TRUE["B"] / d ** TRUE["beta"]


def _make_store(root: Path, noise: float = 0.003, seed: int = 1) -> None:
    """2 tiers x 3 budgets x 4 ladder shapes (flops_v1); tier t trains on kappa_t times its tokens
    (effective data); one more run diverged."""
    store, rng = Store(str(root)), np.random.default_rng(seed)
    family = Family()
    for tier, kappa in KAPPA.items():
        for c in (1e15, 1e16, 1e17):
            for width in (128, 192, 256, 384):
                shape = family.shape(width)
                n, per_token = count_params(shape), flops_per_token(shape)
                d = int(c / per_token)
                final = _law(n, kappa * d) * (1 + noise * rng.standard_normal())
                config = {"model": shape.model_dump(), "train": {"tokens": d, "seed": 0}, "data": {"mix": {tier: 1.0}}}
                rid = f"{tier}-{int(np.log10(c))}-{width}"
                store.write_config(rid, config)
                store.write_json(rid, "run_info.json", {"n_params": n, "flops": float(per_token * d)})
                tokens = (np.array([0.1, 0.3, 0.6, 1.0]) * d).astype(np.int64)
                loss = [_law(n, kappa * float(t)) for t in tokens[:-1]] + [final]
                store.write_metrics(rid, pl.DataFrame({
                    "step": np.arange(1, 5), "tokens": tokens, "flops": float(per_token) * tokens,
                    "train_loss": loss, "eval_heldout_loss": loss}))
                store.write_status(rid, "done")
    shape = family.shape(512)
    store.write_config("raw-17-512", {"model": shape.model_dump(), "train": {"tokens": 10**7, "seed": 0},
                                      "data": {"mix": {"raw": 1.0}}})
    store.write_status("raw-17-512", "diverged")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from scaler.session import from_store
    from scaler.fitting.pipeline import fit_sweep

    root = tmp_path_factory.mktemp("sweep") / "store"
    _make_store(root)
    fit_json = fit_sweep(from_store(str(root)), "chinchilla", 100, 0)
    return root, json.loads(json.dumps(fit_json.to_json()))  # as read back from fit.json


def _write_table(path: Path, noise: float = 0.003, seed: int = 0) -> None:
    """A CSV of runs trained elsewhere: params, tokens, loss, dataset; two datasets whose losses
    follow the Chinchilla law (the second with a higher irreducible loss), with noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for dataset, shift in (("web", 0.0), ("books", 0.05)):
        for c in (1e15, 1e16, 1e17, 1e18):
            for n in np.geomspace(1e6, 1e8, 5):
                d = c / (6 * n)
                loss = (_law(n, d) + shift) * (1 + noise * rng.standard_normal())
                rows.append({"params": n, "tokens": d, "loss": loss, "dataset": dataset})
    pl.DataFrame(rows).write_csv(path)


@pytest.fixture(scope="module")
def table_fit(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from scaler.fitting.inputs import load_table
    from scaler.fitting.pipeline import fit_sweep

    path = tmp_path_factory.mktemp("table") / "runs.csv"
    _write_table(path)
    data = load_table(path, n="params", loss="loss", d="tokens", group="dataset")
    return json.loads(json.dumps(fit_sweep(data, "chinchilla", n_bootstrap=50).to_json()))


DATA_REPORT = {
    "tiers": {"raw": {"base": None, "steps": [], "documents": 100, "bytes": 10_000, "yield_bytes": 1.0,
                      "bytes_train_tokens": 9_000},
              "clean": {"base": "raw", "steps": ["min-size"], "documents": 80, "bytes": 7_000, "yield_bytes": 0.7,
                        "bytes_train_tokens": 6_500}},
    "steps": [{"tier": "clean", "step": "min-size", "documents_in": 100, "documents_out": 80, "bytes_in": 10_000,
               "bytes_out": 7_000, "seconds": 0.1, "flops": 0.0,
               "removed": {"too-small": {"documents": 15, "bytes": 500}, "empty": {"documents": 5, "bytes": 0}}}],
}


def _check_outputs(out: dict[str, Path], out_dir: Path, drawn: set[str] = STORE_FIGURES) -> tuple[str, str]:
    """Every figure in `drawn` is a small PNG embedded in the page and linked from the Markdown;
    every other figure is a one-line note; the page refers to nothing outside itself."""
    md, page = out["markdown"].read_text(), out["html"].read_text()
    for key, (name, section, _) in FIGURES.items():
        if key in drawn:
            assert out[key] == out_dir / name
            assert out[key].read_bytes()[:8] == PNG
            assert out[key].stat().st_size < 150_000
        elif key == "crossover" and f"## {section}\n" not in md:  # no recommendation: no section
            assert key not in out and not (out_dir / name).exists()
        else:
            assert key not in out and not (out_dir / name).exists(), key
            after = md.split(f"## {section}\n", 1)[1].lstrip()
            assert after.startswith(("Not drawn: ", "Figure not drawn: ")), (key, after[:80])
    imgs = re.findall(r"<img\b[^>]*>", page)
    assert len(imgs) == len(drawn)
    for tag in imgs:
        assert re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', tag), tag[:80]
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<(link|script)\b", page) and "url(" not in page
    refs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(refs) == len(drawn)
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


def _recommendation() -> dict:
    """A recommendation (as `Recommendation.to_json()`) with known numbers, for the report's opening."""
    from scaler.decision import Experiment, OptionResult, Recommendation

    raw = OptionResult("raw", 1.0, 1.0, 0.0, 1e18, 1e10, True, n_params=1.0e7, tokens=1.5e10, epochs=1.5, loss=2.3220,
                       loss_interval=(2.30, 2.34), win_share=0.19, loss_prediction_interval=(2.26, 2.38))
    clean = OptionResult("clean", 1.5, 0.667, 2e15, 1e18, 6.67e9, True, n_params=1.2e7, tokens=1.4e10, epochs=2.1,
                         loss=2.3100, loss_interval=(2.29, 2.33), win_share=0.81, loss_prediction_interval=(2.25, 2.37))
    rec = Recommendation(
        budget_flops=1e18, raw_tokens=1e10, law="quality", r_star=15.4, r_star_source="published", n_samples=100,
        options=[raw, clean], raw_option="raw", best_clean="clean", verdict="cleaning", winner="clean", gap=0.012,
        gap_interval=(-0.003, 0.027), probability=0.81, probability_kind=0.81, flops_convention="flops_v1",
        extrapolation=10.0, crossover={"flops": 2e17, "interval": (1e17, 6e17), "share_crossing": 0.64,
                                       "direction": "size->cleaning", "range": (1e16, 1e20), "throughout": None,
                                       "curves": {"budgets": [1e16, 1e18, 1e20], "p_cleaning": [0.1, 0.8, 0.9],
                                                  "best": {"raw": [2.9, 2.32, 2.0], "clean": [math.inf, 2.31, 1.98]},
                                                  "best_interval": {"raw": [[2.8, 2.3, 1.9], [3.0, 2.34, 2.1]],
                                                                    "clean": [[math.inf, 2.29, 1.9], [math.inf, 2.33, 2.1]]}}},
        experiments=[Experiment("clean", 3e7, 5.6e9, 1e18, 0.84, 2.40, (2.38, 2.42), 0.015, rank=1)],
        notes=["a note that stays"], settle="not settled: 81% of bootstrap samples choose cleaning, short of 90%.")
    return rec.to_json()


def test_report_of_known_law(sweep: tuple[Path, dict], tmp_path: Path) -> None:
    root, fit_json = sweep
    out_dir = tmp_path / "report"
    out = build_report(str(root), fit_json, DATA_REPORT, out_dir, "synthetic sweep",
                       recommendation=_recommendation(), spec_text="[sweep]\n",
                       target_flops=1e18, next_run={"n": 3e7, "flops": 1e18})
    md, page = _check_outputs(out, out_dir, STORE_FIGURES | {"crossover"})
    # the report opens with the answer: a headline, then the options and the next experiments as tables
    assert md.index("## The answer") < md.index("## The sweep and its fit") < md.index("## Caveats") < md.index("## Loss curves")
    headline = md.split("## The answer\n\n")[1].split("\n")[0]
    assert headline.startswith("> **Spend on cleaning (tier clean) at 1e+18 FLOPs (flops_v1), 10x the largest fitted run: "
                               "clean is the best option in 81% of bootstrap samples.**"), headline
    assert "gap +0.0120 nats [-0.0030, +0.0270]" in headline and "do not settle the verdict" in headline
    assert "Crossover: from model size to cleaning at about 2e+17 FLOPs (64% of samples turn" in headline
    assert md.split("## The answer\n\n")[1].split("\n\n")[1] == "Not settled: 81% of bootstrap samples choose " \
        "cleaning, short of 90%."  # right under the headline
    assert "| clean | 1.5 | 1.2e+07 | 1.4e+10 | 2.10 of 6.67e+09 | 2.3100 [2.2900, 2.3300] | [2.2500, 2.3700] | 81% | " \
           "2e+15 (0.2%) |" in md
    assert "| #1 | clean | 3e+07 | 5.6e+09 | 1e+18 | 0.84 | 2.4000 [2.3800, 2.4200] | 0.0150 |" in md
    assert '<p class="headline"><strong>Spend on cleaning (tier clean)' in page
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
    # the store's runs are fitted under flops_v1, and every FLOP figure says so
    assert "1e+15 to 1e+17 FLOPs (flops_v1)" in md
    assert "| C (FLOPs (flops_v1)) |" in md
    assert "10x the largest run" in md
    assert "backtest" in md and "One seed per configuration" in md
    # the diverged run is named, and the error model is said per tier
    assert "1 run diverged and is not in the fit: raw-17-512." in md
    for tier in KAPPA:
        assert re.search(rf"- {tier} \(chinchilla\): run scatter [\d.]+% .* misspecification [\d.]+% at a reach of one "
                         r"fitted span .* conformal 95% multiplier [\d.]+ over all backtests, (calibrated on|not calibrated)", md), tier
    assert "too-small" in md and "70.0%" in md


def test_missing_pieces_do_not_crash(sweep: tuple[Path, dict], tmp_path: Path) -> None:
    root, fit_json = sweep
    broken = copy.deepcopy(fit_json)
    broken["groups"]["clean"] = {"parametric": {"error": "fit exploded"}, "isoflop": {"error": "too few budgets"},
                                 "backtest": {"error": "no runs"}}
    broken["failed_groups"] = ["clean"]
    broken["quality"] = {"error": "quality fit failed"}
    out_dir = tmp_path / "partial"
    out = build_report(str(root), broken, None, out_dir, "partial")
    md, _ = _check_outputs(out, out_dir, STORE_FIGURES - {"data"})
    assert "fit exploded" in md and "No data build report" in md and "quality fit failed" in md
    assert "The fit failed for 1 group (clean: fit exploded)" in md
    # no fit at all, and an empty store
    out = build_report(str(tmp_path / "nothing"), {}, None, tmp_path / "empty", "empty")
    _check_outputs(out, tmp_path / "empty", set())
    assert "No fit was given" in out["markdown"].read_text()
    # no store and a fit without data: every figure that needs runs is a note
    bare = copy.deepcopy(fit_json)
    del bare["data"]
    out = build_report_from_fit(bare, tmp_path / "bare", "bare")
    _check_outputs(out, tmp_path / "bare", {"allocation", "isoloss", "calibration", "frontier"})


def test_report_from_a_table_fit(table_fit: dict, tmp_path: Path) -> None:
    """A fit JSON alone (no store): the runs are the fit's data; the convention is 6ND; the runs
    left out are named."""
    fit_json = copy.deepcopy(table_fit)
    assert fit_json["compute"]["convention"] == "6ND" and not fit_json["excluded"]
    fit_json["excluded"] = {"diverged": ["id1", "id2"], "running": ["id3"]}
    fit_json["groups"]["web"]["parametric"]["seed_noise"] = {"sd_log": 0.004, "sd_nats": 0.017, "n_configs": 6,
                                                             "n_runs": 14}
    out_dir = tmp_path / "table"
    out = build_report_from_fit(fit_json, out_dir, "table fit", target_flops=1e20, next_run={"n": 3e8, "flops": 1e19})
    md, page = _check_outputs(out, out_dir, TABLE_FIGURES)
    assert "FLOPs (6ND)" in page and "compute convention 6ND" in page and "flops_v1" not in page
    assert "2 runs diverged and are not in the fit: id1, id2." in md
    assert "1 run was still running and is not in the fit: id3." in md
    assert "40 fitted runs carried by the fit (books 20, web 20)" in md
    assert "Seed noise (web): the runs that differ only in seed scatter by 0.40% in loss" in md
    assert "from 6 configurations run with several seeds (14 runs)" in md and "Seed noise (books)" not in md
    assert "Not drawn: no eval_heldout_loss curves" in md and "No data build report" in md
    for group in ("books", "web"):
        est, lo, hi = _interval_cell(md, "alpha", group)
        assert lo <= est <= hi and abs(est - TRUE["alpha"]) < 0.03, (group, est, lo, hi)
    assert "| C (FLOPs (6ND)) | x largest run |" in md
    assert re.search(r"- books \(chinchilla\): run scatter .* multiplier", md)
    # without excluded runs the sentence is not there; no candidates: no selection table
    out = build_report_from_fit(table_fit, tmp_path / "plain", "plain")
    md = out["markdown"].read_text()
    assert "not in the fit" not in md and "Law selection" not in md


def test_report_of_one_law_with_candidates(table_fit: dict, tmp_path: Path) -> None:
    """`scaler fit --table ... --law auto --out F.json`: one law's entry with its data and the
    candidate laws; the report draws it and tabulates the candidates, the chosen one marked."""
    entry = copy.deepcopy(table_fit["groups"]["web"]["parametric"])
    data = table_fit["data"]
    keep = [i for i, g in enumerate(data["group"]) if g == "web"]
    entry["data"] = {k: [v[i] for i in keep] for k, v in data.items()}
    entry["candidates"] = [
        {"law": "chinchilla", "score_pct": 0.31, "score_se_pct": 0.05, "gap_to_best_pct": 0.0, "gap_se_pct": 0.0,
         "objective": 1.2e-5, "n_params": 5, "params": entry["params"], "converged": True, "stopped": "converged"},
        {"law": "kaplan", "score_pct": 8.7, "score_se_pct": 1.2, "gap_to_best_pct": 8.39, "gap_se_pct": 1.1,
         "objective": 2.1e-3, "n_params": 4,
         "params": {"log_N_c": 25.5, "log_D_c": 29.8, "alpha_N": 0.15, "alpha_D": 0.15}, "converged": True,
         "stopped": "converged"},
        {"law": "broken", "n_params": 7, "converged": True, "score_pct": 0.2, "score_se_pct": 0.1,
         "refused": "break point N_b 3e12 outside the fitted N (1e6 to 1e8)"},
        {"law": "overtrain", "error": "too few points"},
    ]
    entry["chosen_by"] = "simplest law within one SE of the best backtest at 10x"
    entry["horizon"] = 10.0
    out_dir = tmp_path / "one"
    out = build_report_from_fit(entry, out_dir, "one law")
    md, page = _check_outputs(out, out_dir, TABLE_FIGURES)
    assert "Fit: one chinchilla law over 20 points" in md
    table = md.split("### Law selection", 1)[1]
    assert "backtested at 10x the largest fitted compute; chosen: simplest law within one SE" in table
    assert "| law | backtest error at the horizon | gap to the best | parameters | converged | status |" in table
    assert "| chinchilla (chosen) | 0.31% +- 0.05 | +0.00 +- 0.00 | 5 | True | ok |" in table
    assert "| kaplan | 8.70% +- 1.20 | +8.39 +- 1.10 |" in table
    assert "| broken | 0.20% +- 0.10 | - | 7 | True | refused: break point N_b 3e12 outside" in table
    assert "| overtrain | - | - | - | - | failed: too few points |" in table
    assert "FLOPs (6ND)" in page


def test_allocation_is_the_fits_own(table_fit: dict) -> None:
    """The figures' allocation line is the entry's allocation (allocate under the fit's
    convention): it reproduces the fit's own allocations and, under 6ND, Chinchilla's closed form."""
    from scaler.fitting.laws import chinchilla_allocation

    views = frames.law_views(table_fit)
    assert [v.label for v in views] == ["books", "web"]
    for v in views:
        rows = v.entry["allocations"]
        curve = frames.allocation_curve(v, [r["flops"] for r in rows])
        assert curve is not None and "n_lo" in curve
        for i, r in enumerate(rows):
            assert curve["n"][i] == pytest.approx(r["n_opt"], rel=1e-3)
            assert curve["n_lo"][i] <= r["n_opt"] <= curve["n_hi"][i]
        a, b, _, alpha, beta = v.theta
        n_closed, _ = chinchilla_allocation(a, b, alpha, beta, np.array([r["flops"] for r in rows]))
        assert np.allclose(curve["n"], n_closed, rtol=1e-3)
    # predictions for the fitted runs come with intervals that hold the observed losses
    runs = frames.runs_from_fit(table_fit)
    assert runs.height == 40 and set(runs["group"].to_list()) == {"books", "web"}
    pred = frames.predict_runs(views[0], runs)
    assert pred is not None and np.all(pred["lo"] <= pred["predicted"]) and np.all(pred["predicted"] <= pred["hi"])
    assert np.mean((pred["lo"] <= pred["observed"]) & (pred["observed"] <= pred["hi"])) >= 0.9


def test_report_imports_no_jax_or_trainer() -> None:
    import subprocess
    import sys

    code = ("import sys, scaler.report.render, scaler.report.figures, scaler.report.frames;"
            "bad = [m for m in sys.modules if m == 'jax' or m.startswith(('scaler.train', 'scaler.model', 'jax.'))];"
            "print(bad); sys.exit(1 if bad else 0)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_frames_import_no_matplotlib() -> None:
    """The frames the figures draw are computed without matplotlib: only scaler.report.figures draws."""
    import subprocess
    import sys

    code = ("import sys, scaler.report.frames, scaler.report.sections, scaler.report.parameters, scaler.report.answer;"
            "sys.exit(1 if any(m.split('.')[0] == 'matplotlib' for m in sys.modules) else 0)")
    subprocess.run([sys.executable, "-c", code], check=True)
