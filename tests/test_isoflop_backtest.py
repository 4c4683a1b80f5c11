"""IsoFLOP (approach 2), envelope (approach 1), side-by-side rows, and backtests.

Synthetic data come from a known Chinchilla law L = E + A/N^α + B/D^β (Hoffmann et al.'s fitted
values), for which N_opt ∝ C^(β/(α+β)) and D_opt ∝ C^(α/(α+β)) under C = 6ND.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from scaler.fitting.isoflop import (
    EnvelopeResult,
    IsoflopResult,
    approach1,
    approach2,
    compare,
    group_budgets,
)

E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28
A_TRUE = BETA / (ALPHA + BETA)  # N_opt exponent
B_TRUE = ALPHA / (ALPHA + BETA)  # D_opt exponent
G = (ALPHA * A / (BETA * B)) ** (1 / (ALPHA + BETA))


def law(n, d):
    return E + A / np.asarray(n, float) ** ALPHA + B / np.asarray(d, float) ** BETA


def n_opt(c):
    return G * (c / 6) ** A_TRUE


def isoflop_runs(seed=1, noise=0.002, budgets=np.geomspace(1e17, 1e20, 7), sizes=7, spread=4.0):
    """`sizes` runs per budget, log-spaced in N from N_opt/spread to N_opt*spread; D = C/(6N);
    each run's C jittered by ±0.5% (as real runs' FLOPs are); loss with lognormal noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        for n in np.geomspace(n_opt(c) / spread, n_opt(c) * spread, sizes):
            d = c / (6 * n)
            rows.append({"N": n, "D": d, "C": c * (1 + rng.uniform(-0.005, 0.005)),
                         "loss": float(law(n, d) * np.exp(rng.normal(0, noise)))})
    return pl.DataFrame(rows)


def test_imports_stay_light():
    """fitting/ never imports training or model code; isoflop is numpy/scipy only (no JAX of its own)."""
    code = (
        "import sys, scaler.fitting.isoflop, scaler.fitting.backtest; m = sys.modules; "
        "assert not any(k.startswith(('scaler.train', 'scaler.model')) for k in m), 'training code'; "
        "assert 'jax' not in m or 'scaler.fitting.fitter' in m or 'scaler.fitting.laws' in m, 'jax'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def json_ok(obj):
    return json.loads(json.dumps(obj, allow_nan=False))


# --------------------------------------------------------------------------------------------
# approach 2
# --------------------------------------------------------------------------------------------


def test_group_budgets_within_two_percent():
    c = np.array([1e18, 1.01e18, 0.995e18, 3e18, 3.02e18, 1e19])
    labels = group_budgets(c)
    assert labels.tolist() == [0, 0, 0, 1, 1, 2]


def test_approach2_recovers_exponents_with_intervals():
    res = approach2(isoflop_runs(), n_boot=400, seed=0)
    assert isinstance(res, IsoflopResult)
    assert res.n_good == 7 and not res.flagged
    assert abs(res.a - A_TRUE) < 0.015
    assert abs(res.b - B_TRUE) < 0.015
    assert res.a_interval[0] < A_TRUE < res.a_interval[1]
    assert res.b_interval[0] < B_TRUE < res.b_interval[1]
    assert res.n_boot_used >= 390
    for bm in res.budgets:  # every vertex within 10% of the true optimum, interval bracketing it
        assert abs(np.log(bm.n_opt / n_opt(bm.budget))) < 0.1
        lo, hi = bm.n_opt_interval
        assert lo <= bm.n_opt <= hi
        assert bm.d_opt == pytest.approx(bm.budget / (6 * bm.n_opt), rel=0.02)  # interp ≈ C/6N here
    out = json_ok(res.to_json())
    assert out["a"] == pytest.approx(res.a) and len(out["budgets"]) == 7


def test_approach2_is_seeded():
    runs = isoflop_runs()
    r1, r2 = approach2(runs, n_boot=100, seed=3), approach2(runs, n_boot=100, seed=3)
    assert r1.a_interval == r2.a_interval


def test_approach2_flags_one_sided_concave_and_sparse_budgets():
    runs = isoflop_runs()
    c_edge = 3e20  # every size above the optimum: the vertex would be an extrapolation
    edge = [{"N": n, "D": c_edge / (6 * n), "C": c_edge, "loss": float(law(n, c_edge / (6 * n)))}
            for n in np.geomspace(2 * n_opt(c_edge), 16 * n_opt(c_edge), 5)]
    c_cav = 5e16  # a loss that peaks in the middle: no minimum
    x = np.linspace(-1, 1, 5)
    cav = [{"N": n_opt(c_cav) * np.exp(v), "D": c_cav / (6 * n_opt(c_cav) * np.exp(v)), "C": c_cav,
            "loss": 3.0 - 0.1 * v * v} for v in x]
    c_few = 1e21  # two sizes only
    few = [{"N": n, "D": c_few / (6 * n), "C": c_few, "loss": float(law(n, c_few / (6 * n)))}
           for n in (n_opt(c_few) / 2, n_opt(c_few) * 2)]
    res = approach2(pl.concat([runs, pl.DataFrame(edge + cav + few)]), n_boot=200)
    status = {round(np.log10(b.budget), 2): b.status for b in res.budgets}
    assert status[round(np.log10(c_edge), 2)] == "edge"
    assert status[round(np.log10(c_cav), 2)] == "concave"
    assert status[round(np.log10(c_few), 2)] == "too_few"
    assert len(res.flagged) == 3 and res.n_good == 7
    assert abs(res.a - A_TRUE) < 0.015  # the flagged budgets did not enter the fit
    edge_bm = next(b for b in res.budgets if b.status == "edge")
    assert edge_bm.n_opt < edge_bm.n_min and edge_bm.n_opt_interval is None and "below" in edge_bm.note
    json_ok(res.to_json())


def test_approach2_budget_column_and_too_few_budgets():
    runs = isoflop_runs(budgets=np.array([1e18, 1e19]))
    # an explicit budget column overrides the 2% grouping (here: everything one budget)
    with pytest.raises(ValueError, match="at least two budgets"):
        approach2(runs.with_columns(pl.lit(1e18).alias("budget")), n_boot=10)
    res = approach2(runs, n_boot=10, d_method="6nd")
    assert res.n_good == 2 and res.d_method == "6nd"
    with pytest.raises(ValueError, match="missing"):
        approach2(runs.drop("D"))


# --------------------------------------------------------------------------------------------
# approach 1
# --------------------------------------------------------------------------------------------


def curves(n_sizes=16, points=60):
    """Loss curves: each run (size N) evaluated at 60 log-spaced D from 1e8 to 1e12 tokens,
    loss from the law (the law has no schedule, so every point is "the loss at D")."""
    rows = []
    for i, n in enumerate(np.geomspace(1e7, 3e9, n_sizes)):
        for d in np.geomspace(1e8, 1e12, points):
            rows.append({"run_id": f"r{i:02d}", "N": n, "tokens": d, "flops": 6 * n * d, "loss": float(law(n, d))})
    return pl.DataFrame(rows)


@pytest.mark.parametrize("mode", ["interp", "bin"])
def test_approach1_recovers_exponent_roughly(mode):
    # Tolerance 0.03: the envelope can only pick one of 16 discrete sizes (a factor 1.46 apart),
    # so N along the envelope is a staircase; its slope in log-log is right to a few hundredths.
    res = approach1(curves(), mode=mode, n_boot=200, seed=0)
    assert isinstance(res, EnvelopeResult)
    assert abs(res.a - A_TRUE) < 0.03
    assert abs(res.b - B_TRUE) < 0.03
    assert res.a + res.b == pytest.approx(1.0, abs=0.01)  # C = 6ND along the envelope
    assert res.a_interval[0] - 0.01 < A_TRUE < res.a_interval[1] + 0.01
    assert res.n_used >= 10 and res.n_boot_used > 150
    assert any(not p.used for p in res.points)  # bins at the ends (edge winners) are reported, unused
    assert "cosine" in res.caveat
    json_ok(res.to_json())


def test_approach1_needs_usable_bins():
    few = curves(n_sizes=2, points=10)
    with pytest.raises(ValueError, match="usable envelope bins"):
        approach1(few, n_boot=0)


# --------------------------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------------------------


def test_compare_rows():
    r2 = approach2(isoflop_runs(), n_boot=50)
    r1 = approach1(curves(), n_boot=50)
    rows = compare(r1, r2, {"alpha": ALPHA, "beta": BETA, "a_interval": (0.44, 0.46), "b_lo": 0.54, "b_hi": 0.56})
    assert [r["method"].split()[1] for r in rows] == ["1", "2", "3"]
    for r in rows:
        assert list(r) == ["method", "a", "a_lo", "a_hi", "b", "b_lo", "b_hi"]
    assert rows[2]["a"] == pytest.approx(A_TRUE) and rows[2]["a_lo"] == 0.44 and rows[2]["b_hi"] == 0.56
    assert rows[1]["a"] == pytest.approx(r2.a)
    json_ok(rows)
    only = compare(None, r2, {"a": 0.5, "b": 0.5})
    assert len(only) == 2 and only[1]["a_lo"] is None
    with pytest.raises(ValueError):
        compare(None, None, {"x": 1})


# --------------------------------------------------------------------------------------------
# backtest (against the real fitter)
# --------------------------------------------------------------------------------------------


def _fitter():
    try:
        from scaler.fitting import fitter, laws
    except ImportError as err:  # pragma: no cover - only while the fitter is being written
        pytest.skip(f"scaler.fitting.fitter / scaler.fitting.laws not available: {err}")
    return fitter, laws


def grid_frame(seed=0, noise=0.003, bend=False):
    """6 sizes x 5 token multipliers (D = 5..80 tokens per parameter), one row per run.
    With `bend`, loss above 1e19 FLOPs falls more slowly than the law: it is multiplied by
    (C / 1e19)^0.02 (continuous at the cut; +4.7% at 1e20): a break the small runs cannot see."""
    rng = np.random.default_rng(seed)
    rows = []
    tiers = ["raw", "filtered", "clean"]
    for i, n in enumerate(np.geomspace(3e7, 1e9, 6)):
        for j, r in enumerate((5, 10, 20, 40, 80)):
            d = r * n
            c = 6 * n * d
            loss = law(n, d)
            if bend and c > 1e19:
                loss = loss * (c / 1e19) ** 0.02
            rows.append({"run_id": f"n{i}d{j}", "N": n, "D": d, "flops": c, "tier": tiers[(i + j) % 3],
                         "loss": float(loss * np.exp(rng.normal(0, noise)))})
    return pl.DataFrame(rows)


def test_backtest_small_error_on_the_true_law():
    fitter, laws = _fitter()
    from scaler.fitting.backtest import backtest

    frame = grid_frame()
    res = backtest(laws.chinchilla(), frame)
    assert res.n_fit + res.n_heldout == frame.height and res.n_heldout >= 5
    assert res.cut_flops == pytest.approx(np.quantile(frame["flops"].to_numpy(), 0.75))
    assert all(r.flops > res.cut_flops for r in res.rows)
    assert res.mean_abs_rel_error < 0.01, res.verdict()
    assert res.max_abs_rel_error < 0.03
    assert "predicts" in res.verdict() and "NOT" not in res.verdict()
    assert {r.run_id for r in res.rows} <= set(frame["run_id"])
    assert all(set(r.point) == {"N", "D"} for r in res.rows)
    out = json_ok(res.to_json())
    assert len(out["rows"]) == res.n_heldout


def test_backtest_sees_a_bend():
    fitter, laws = _fitter()
    from scaler.fitting.backtest import backtest

    clean = backtest(laws.chinchilla(), grid_frame(), cut_flops=1e19)
    bent = backtest(laws.chinchilla(), grid_frame(bend=True), cut_flops=1e19)
    assert bent.mean_abs_rel_error > 4 * clean.mean_abs_rel_error
    assert bent.mean_abs_rel_error > 0.02
    assert bent.bias < 0  # the bent runs are worse than the law fitted below the cut predicts
    assert "NOT" in bent.verdict()


def test_backtest_refuses_too_small_splits():
    fitter, laws = _fitter()
    from scaler.fitting.backtest import backtest

    frame = grid_frame()
    flops = np.sort(frame["flops"].to_numpy())
    with pytest.raises(ValueError, match="needs at least 6"):
        backtest(laws.chinchilla(), frame, cut_flops=flops[3])  # 4 points on the fit side
    with pytest.raises(ValueError, match="no points held out"):
        backtest(laws.chinchilla(), frame, cut_flops=flops[-1])


def test_leave_one_group_out_one_row_per_group():
    fitter, laws = _fitter()
    from scaler.fitting.backtest import leave_one_group_out

    frame = grid_frame()
    rows = leave_one_group_out(laws.chinchilla(), frame, "tier")
    assert [r.group for r in rows] == ["clean", "filtered", "raw"]
    for r in rows:
        assert r.ok and r.n_heldout == 10 and r.n_fit == 20
        assert r.mean_abs_rel_error < 0.02  # one law generated every tier
        json_ok(r.to_json())
