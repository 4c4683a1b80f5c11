"""`scaler design` on a synthetic law: the interval widths it expects for a design match the
widths measured by fitting the same design's synthetic sweeps many times over."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from scaler.config import ConfigError
from scaler.simulate import DesignRuns, noise_of, simulate, synthetic_losses, table_lines
from scaler.fitting import laws
from scaler.fitting.inputs import FitData, with_clusters
from scaler.fitting.pipeline import fit
from scaler.decision import recommend_from_fit

TIERS = ["clean", "raw"]
LAW = laws.quality(TIERS, reference="raw", pools=True)
TRUTH = np.array([math.log(40.0), math.log(300.0), math.log(1.2), 0.35, 0.32, math.log(1.4), math.log(6.0)])
POOLS = {"raw": 4e6, "clean": 2.4e6}
NOISE = 0.01
PRIOR = {"spec": LAW.spec, "theta": TRUTH.tolist(), "derived": LAW.derived(TRUTH), "largest_run_flops": 1.28e12,
         "seed_noise": {"sd_log": NOISE, "n_runs": 80, "n_configs": 40}}


def isoflop_design(budgets=(2e10, 8e10, 3.2e11, 1.28e12), seeds=2, name="iso") -> DesignRuns:
    rows = [(n, c / (6 * n), t) for c in budgets for n in np.geomspace(0.25, 4.0, 5) * math.sqrt(c / 120)
            for t in TIERS for _ in range(seeds)]
    n, d = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    columns = {"N": n, "D": d, "C": 6 * n * d, **{f"w_{t}": np.array([float(r[2] == t) for r in rows]) for t in TIERS},
               **{f"U_{t}": np.full(len(rows), u) for t, u in POOLS.items()}}
    return DesignRuns(name, columns, np.array([r[2] for r in rows]), float(np.sum(6 * n * d)))


def recommend_at(entry):
    return recommend_from_fit(entry, None, 1e14, raw_tokens=POOLS["raw"], yields={"clean": 0.6}, crossover_budgets=0)


def test_expected_widths_match_repeated_synthetic_sweeps() -> None:
    design = isoflop_design()
    out = simulate(design, PRIOR, recommend_at, n_sims=12, n_bootstrap=100, seed=3)
    assert out["noise_sd_log"] == NOISE and out["sims_failed"] == 0 and out["law"] == "quality_pools"
    # the width measured the frequentist way: 48 independent synthetic sweeps, fitted, their estimates' spread
    rng = np.random.default_rng(11)
    base = with_clusters(FitData("repeated", dict(design.columns), np.ones(len(design.groups)), design.groups))
    estimates = {"kappa_clean": [], "a_exponent": []}
    for _ in range(48):
        entry = fit(replace(base, loss=synthetic_losses(LAW, TRUTH, design, NOISE, rng)), "quality", 0, backtests=False)
        for k in estimates:
            estimates[k].append(entry["derived"][k])
    for k, values in estimates.items():
        measured = 2 * 1.959963984540054 * np.std(values, ddof=1)
        expected = out["parameters"][k]["expected_width"]
        assert abs(expected / measured - 1) < 0.2, (k, expected, measured)
        assert abs(np.mean(values) - LAW.derived(TRUTH)[k]) < 0.25 * measured  # the fit is unbiased here


def test_designs_side_by_side_and_errors() -> None:
    wide, narrow = isoflop_design(name="two-seeds"), isoflop_design(seeds=1, name="one-seed")
    results = [simulate(d, PRIOR, recommend_at, n_sims=4, n_bootstrap=30) for d in (wide, narrow)]
    assert [r["runs"] for r in results] == [80, 40]
    assert results[0]["trained_flops"] == pytest.approx(2 * results[1]["trained_flops"])
    text = "\n".join(table_lines(results, 1e14))
    assert "two-seeds" in text and "one-seed" in text and "P(verdict)" in text
    assert 0 <= results[0]["verdict_probability"] <= 1
    assert noise_of({"error_model": {"sigma_run": 0.02}})[0] == 0.02
    with pytest.raises(ConfigError, match="neither seed noise nor run scatter"):
        noise_of({})
    with pytest.raises(ConfigError, match="n_sims 1"):
        simulate(wide, PRIOR, recommend_at, n_sims=1)
