"""Repetition per tier (scaler/fitting/repetition.py) on synthetic tables whose truth is known: the
test finds tiers that tolerate different epochs and recovers each R_D*, keeps one shared R_D* when
the truth has one, and says why when only one tier repeats."""

from __future__ import annotations

import numpy as np
import pytest

from scaler.fitting import laws
from scaler.fitting.inputs import FitData
from scaler.fitting.pipeline import sweep_json
from scaler.fitting.repetition import repetition_test

TIERS = ["clean", "raw"]
POOLS = {"raw": 4e8, "clean": 1.5e8}  # unique tokens per tier
THETA_BASE = [np.log(400.0), np.log(410.0), np.log(1.7), 0.34, 0.28]  # a, b (log), log e, alpha, beta


def table(r_star: dict[str, float], seed: int, noise: float = 0.003, pools: dict[str, float] = POOLS) -> FitData:
    """Single-tier runs over a grid of N and D reaching up to ~25 epochs of POOLS; losses from
    the quality law with kappa_clean = 2 and the given R_D* per tier, times log-normal noise."""
    law = laws.quality(TIERS, reference="raw", pools=True, repetition="per_tier")
    theta = np.array([*THETA_BASE, np.log(2.0), *(np.log(r_star[t]) for t in TIERS)])
    rng = np.random.default_rng(seed)
    rows = []
    for tier in TIERS:
        for n in np.geomspace(2e7, 6e8, 5):
            for epochs in (0.5, 1.5, 4.0, 10.0, 25.0):
                rows.append((tier, n, epochs * POOLS[tier]))  # the design's D; `pools` may differ from it
    tiers, n, d = (np.array(x) for x in zip(*rows, strict=True))
    columns = {"N": n.astype(float), "D": d.astype(float), "C": 6 * n * d,
               **{f"w_{t}": (tiers == t) * 1.0 for t in TIERS}, **{f"U_{t}": np.full(len(n), pools[t]) for t in TIERS}}
    loss = law.predict(theta, columns) * np.exp(rng.normal(0, noise, len(n)))
    return FitData("synthetic", columns, loss, tiers)


def test_tiers_that_tolerate_different_repetition_are_told_apart_and_recovered() -> None:
    truth = {"raw": 3.0, "clean": 25.0}
    out = repetition_test(table(truth, seed=0), TIERS, "raw")
    assert out["verdict"] == "per_tier" and out["p_value"] < 1e-3 and out["df"][0] == 1, out
    for tier, r in truth.items():
        assert out["per_tier"][tier] == pytest.approx(r, rel=0.35), (tier, out["per_tier"])
    assert out["rss_shared"] > 10 * out["rss_per_tier"]  # one R_D* cannot fit both tiers
    assert "tell the tiers apart" in out["note"]


def test_one_true_r_d_star_keeps_the_shared_value_and_the_test_holds_its_level() -> None:
    verdicts = [repetition_test(table({"raw": 8.0, "clean": 8.0}, seed=s), TIERS, "raw")
                for s in range(8)]
    assert sum(v["verdict"] == "per_tier" for v in verdicts) <= 2  # 5% level; 8 tables
    assert all(v["shared"]["R_D_star"] == pytest.approx(8.0, rel=0.3) for v in verdicts)
    shared = next(v for v in verdicts if v["verdict"] == "shared")
    assert "does not fit the runs better than chance" in shared["note"] and shared["p_value"] >= 0.05


def test_only_one_tier_repeating_says_the_runs_cannot_tell() -> None:
    data = table({"raw": 5.0, "clean": 5.0}, seed=1, pools={"raw": 1e12, "clean": 1.5e8})  # raw never repeats
    out = repetition_test(data, TIERS, "raw")
    assert out["verdict"] == "shared" and out["repeating_tiers"] == ["clean"] and "per_tier" not in out
    assert "no run repeats raw, so the runs cannot tell a per-tier R_D* for it" in out["note"]


def test_the_sweep_fit_uses_the_per_tier_law_when_the_test_says_so() -> None:
    out = sweep_json(table({"raw": 3.0, "clean": 25.0}, seed=2), "chinchilla", n_bootstrap=0)
    assert out["repetition"]["verdict"] == "per_tier"
    assert out["quality"]["law"] == "quality_pools_per_tier_r"
    assert set(out["quality"]["derived"]) >= {"R_D_star_raw", "R_D_star_clean", "kappa_clean"}
    from scaler.report.parameters import parameter_blocks

    text = repr(parameter_blocks(out, "FLOPs"))
    assert "Repetition per tier (R_D*)" in text and "the quality law above uses one per tier" in text
    assert "clean alone" in text and "raw alone" in text
