"""Budget recommendation (scaler.recommend): synthetic laws with answers worked out by hand."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

from scaler.fit import laws
from scaler.recommend import TierOption, recommend, recommend_from_store, tier_options_from_report, to_flops

ROOT = Path(__file__).resolve().parents[1]
# Epoch AI's refit of Chinchilla (Besiroglu et al. 2024): a != b on purpose
A, B, E, ALPHA, BETA = 482.01, 2085.43, 1.8172, 0.3478, 0.3658
THETA = np.array([math.log(A), math.log(B), math.log(E), ALPHA, BETA])


def _samples(theta: np.ndarray, n: int = 32, scale: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return theta[None, :] + scale * rng.normal(size=(n, theta.size))


def test_single_tier_matches_closed_form_allocation() -> None:
    law = laws.chinchilla()
    for budget in (1e18, 1e21, 5e23):
        rec = recommend(_samples(THETA, scale=0.01), THETA, law, [TierOption("raw")], budget, raw_tokens=1e30)
        n_opt, d_opt = laws.chinchilla_allocation(THETA[0], THETA[1], ALPHA, BETA, budget)
        opt = rec.option("raw")
        assert opt.n_params == pytest.approx(n_opt, rel=1e-3)
        assert opt.tokens == pytest.approx(d_opt, rel=1e-3)
        assert opt.loss == pytest.approx(E + A / n_opt**ALPHA + B / d_opt**BETA, rel=1e-9)
        assert rec.verdict == "size" and rec.winner == "raw" and rec.probability == 1.0
        assert opt.loss_interval[0] <= opt.loss <= opt.loss_interval[1]
        assert 6 * opt.n_params * opt.tokens == pytest.approx(budget, rel=1e-9)
        json.dumps(rec.to_json())


def test_verdict_flips_at_the_closed_form_crossover() -> None:
    # At the optimum of E + A/N^a + B/(kD)^b under 6ND = C the reducible loss is
    # K (B k^-b)^(a/(a+b)) C^(-ab/(a+b)) = K' (k C)^(-ab/(a+b)): kappa acts as a compute multiplier.
    # Clean (budget C - cU, multiplier k) beats raw (budget C) iff k (C - cU) > C, i.e. above
    # C* = k c U / (k - 1), for any a, b (pools large enough that nothing repeats).
    k, y, c, U = 1.5, 0.5, 10.0, 1e12
    c_star = k * c * U / (k - 1)
    tiers = [TierOption("raw"), TierOption("clean", kappa=k, yield_fraction=y, cleaning_flops_per_raw_token=c)]
    law = laws.chinchilla()
    below = recommend(_samples(THETA), THETA, law, tiers, c_star * 0.99, U)
    above = recommend(_samples(THETA), THETA, law, tiers, c_star * 1.01, U)
    at = recommend(_samples(THETA), THETA, law, tiers, c_star, U)
    assert below.verdict == "size" and below.gap < 0 and below.winner == "raw"
    assert above.verdict == "cleaning" and above.gap > 0 and above.winner == "clean"
    assert "cleaning (tier clean)" in above.verdict_text
    assert abs(at.gap) < 1e-3 * abs(above.gap)
    for rec in (below, above):
        assert rec.option("clean").epochs < 1  # the construction's premise: no repetition
        assert rec.probability == 1.0 and rec.probability_kind == 1.0
        assert rec.option("clean").cleaning_flops == pytest.approx(c * U)
        assert rec.option("clean").training_flops == pytest.approx(rec.budget_flops - c * U)


def test_probability_is_the_share_of_samples() -> None:
    # Free cleaning, full yield: clean wins exactly in the samples where kappa_clean > 1.
    law = laws.quality(["raw", "clean"], reference="raw")
    theta = np.append(THETA, 0.05)
    rng = np.random.default_rng(1)
    samples = np.repeat(theta[None, :], 400, axis=0)
    samples[:, -1] = rng.normal(0.05, 0.05, size=400)
    tiers = [TierOption("raw"), TierOption("clean")]
    rec = recommend(samples, theta, law, tiers, 1e21, raw_tokens=1e30)
    assert rec.verdict == "cleaning" and rec.gap > 0
    assert rec.option("clean").kappa == pytest.approx(math.exp(0.05))
    assert rec.probability == pytest.approx(np.mean(samples[:, -1] > 0))
    assert rec.option("clean").win_share + rec.option("raw").win_share == pytest.approx(1.0)
    assert rec.gap_interval[0] < 0 < rec.gap_interval[1]


def test_repetition_uses_the_law_r_star_or_the_published_one() -> None:
    tiers = [TierOption("raw")]
    rec = recommend(_samples(THETA), THETA, laws.chinchilla(), tiers, 1e21, raw_tokens=1e9)
    assert rec.r_star == pytest.approx(15.4) and "published" in rec.r_star_source
    # a small pool: the optimum trains longer on fewer repeated tokens -> larger N than Chinchilla's
    n_free = laws.chinchilla_allocation(THETA[0], THETA[1], ALPHA, BETA, 1e21)[0]
    assert rec.option("raw").epochs > 1 and rec.option("raw").n_params > n_free
    law = laws.quality(["raw", "clean"], reference="raw", pools=True)
    theta = np.concatenate([THETA, [0.0, math.log(5.0)]])
    rec = recommend(np.zeros((0, theta.size)), theta, law, tiers + [TierOption("clean")], 1e21, raw_tokens=1e9)
    assert rec.r_star == pytest.approx(5.0) and rec.r_star_source == "fitted"


def test_infeasible_cleaning_is_reported() -> None:
    tiers = [TierOption("raw"), TierOption("clean", kappa=3.0, yield_fraction=0.5, cleaning_flops_per_raw_token=1e6)]
    rec = recommend(_samples(THETA), THETA, laws.chinchilla(), tiers, 1e17, raw_tokens=1e12)
    clean = rec.option("clean")
    assert not clean.feasible and "exceeds the budget" in clean.reason
    assert rec.verdict == "size" and rec.best_clean is None and rec.winner == "raw"
    assert any("infeasible" in line for line in rec.lines())
    json.dumps(rec.to_json())


def test_units() -> None:
    assert to_flops(1e20) == 1e20
    assert to_flops(1e20, "flops") == 1e20
    assert to_flops(10, "gpu-hours", peak_flops=1e15, mfu=0.4) == pytest.approx(10 * 3600 * 1e15 * 0.4)
    assert to_flops(100, "usd", peak_flops=1e15, mfu=0.5, usd_per_hour=2.0) == pytest.approx(50 * 3600 * 1e15 * 0.5)
    with pytest.raises(ValueError, match="peak_flops and mfu"):
        to_flops(10, "gpu-hours")
    with pytest.raises(ValueError, match="mfu"):
        to_flops(10, "gpu-hours", peak_flops=1e15)
    with pytest.raises(ValueError, match="usd_per_hour"):
        to_flops(10, "usd", peak_flops=1e15, mfu=0.5)
    with pytest.raises(ValueError, match="unit"):
        to_flops(10, "joules")
    with pytest.raises(ValueError, match="positive"):
        to_flops(-1, "flops")


def test_next_experiments_and_toml_snippet() -> None:
    from scaler.sweep.spec import Design

    law = laws.quality(["raw", "clean"], reference="raw")
    theta = np.append(THETA, 0.1)
    samples = _samples(theta, n=64, scale=0.02, seed=3)
    tiers = [TierOption("raw"), TierOption("clean", yield_fraction=0.6, cleaning_flops_per_raw_token=100.0)]
    rec = recommend(samples, theta, law, tiers, 1e22, raw_tokens=1e12, largest_run_flops=1e19, n_steps=3)
    assert len(rec.experiments) == 6 and {e.tier for e in rec.experiments} == {"raw", "clean"}
    assert all(1e19 < e.flops < 1e22 for e in rec.experiments)
    spreads = [e.gap_spread for e in rec.experiments]
    assert spreads == sorted(spreads, reverse=True)
    for snippet in (rec.toml, rec.toml_grid):
        design = Design.model_validate(tomllib.loads(snippet)["design"])
        assert design.mixes == [{"raw": 1.0}, {"clean": 1.0}]
    assert tomllib.loads(rec.toml)["design"]["isoflop"]["budgets"][0] > 1e19


def test_tier_options_from_report() -> None:
    report = {
        "tiers": {"raw": {"base": None, "bytes": 1000, "train_bytes": 900, "bytes_yield": 1.0},
                  "dedup": {"base": "raw", "bytes_yield": 0.9}, "clean": {"base": "dedup", "bytes_yield": 0.5}},
        "steps": [{"tier": "dedup", "flops": 0.0, "seconds": 2.0}, {"tier": "clean", "flops": 5000.0, "seconds": 3.0}],
        "tokenizers": {"bytes": {"tiers": {"raw": {"tokens": 900, "bytes_per_token": 1.0},
                                           "dedup": {"tokens": 810}, "clean": {"tokens": 450}}}},
    }
    opts, facts = tier_options_from_report(report, ["raw", "clean"], cleaning_flops_per_second=100.0)
    raw, clean = opts
    assert raw.cleaning_flops_per_raw_token == 0 and raw.yield_fraction == 1.0
    assert clean.yield_fraction == pytest.approx(0.5)
    assert clean.cleaning_flops_per_raw_token == pytest.approx((5000 + 100 * (2 + 3)) / 1000)
    assert facts["raw_train_tokens"] == 900
    with pytest.raises(ValueError, match="not in the build"):
        tier_options_from_report(report, ["raw", "filtered"])


@pytest.mark.skipif(not ((ROOT / "store/demo-sweep/runs").is_dir() and (ROOT / "data/demo/report.json").is_file()),
                    reason="store/demo-sweep and data/demo are built by `scaler run sweeps/demo.toml`, not in a clone")
def test_recommend_from_demo_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    rec = recommend_from_store("store/demo-sweep", "data/demo", 100 * 1.2e12, n_bootstrap=100)
    assert rec.verdict in ("size", "cleaning")
    assert 0.0 <= rec.probability <= 1.0 and 0.0 <= rec.probability_kind <= 1.0
    assert rec.option("raw").cleaning_flops == 0
    assert rec.option("clean").cleaning_flops > 0
    tomllib.loads(rec.toml)
    tomllib.loads(rec.toml_grid)
    assert rec.lines() and json.dumps(rec.to_json())
