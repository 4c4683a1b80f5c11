"""Budget recommendation (scaler.recommend): synthetic laws with answers worked out by hand."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

from scaler.config import Family
from scaler.fitting import laws
from scaler.fitting.compute import Compute
from scaler.fitting.stats import percentile_interval
from scaler.decision import (
    ExtrapolationRefused,
    TierOption,
    decide,
    recommend_from_fit,
    tier_options_from_report,
    to_flops,
)
from scaler import session

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
        rec = decide(_samples(THETA, scale=0.01), THETA, law, [TierOption("raw")], budget, raw_tokens=1e30)
        n_opt, d_opt = laws.chinchilla_allocation(THETA[0], THETA[1], ALPHA, BETA, budget)
        opt = rec.option("raw")
        assert opt.n_params == pytest.approx(n_opt, rel=1e-3)
        assert opt.tokens == pytest.approx(d_opt, rel=1e-3)
        assert opt.loss == pytest.approx(E + A / n_opt**ALPHA + B / d_opt**BETA, rel=1e-9)
        assert rec.verdict == "size" and rec.winner == "raw" and rec.probability == 1.0
        assert opt.loss_interval[0] <= opt.loss <= opt.loss_interval[1]
        assert 6 * opt.n_params * opt.tokens == pytest.approx(budget, rel=1e-9)
        assert rec.flops_convention == "6ND" and "FLOPs (6ND)" in rec.lines()[0]
        assert rec.crossover is None and rec.extrapolation is None and opt.loss_prediction_interval is None
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
    below = decide(_samples(THETA), THETA, law, tiers, c_star * 0.99, U)
    above = decide(_samples(THETA), THETA, law, tiers, c_star * 1.01, U)
    at = decide(_samples(THETA), THETA, law, tiers, c_star, U)
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
    rec = decide(samples, theta, law, tiers, 1e21, raw_tokens=1e30)
    assert rec.verdict == "cleaning" and rec.gap > 0
    assert rec.option("clean").kappa == pytest.approx(math.exp(0.05))
    assert rec.probability == pytest.approx(np.mean(samples[:, -1] > 0))
    assert rec.option("clean").win_share + rec.option("raw").win_share == pytest.approx(1.0)
    assert rec.gap_interval[0] < 0 < rec.gap_interval[1]


def test_repetition_uses_the_law_r_star_or_the_published_one() -> None:
    tiers = [TierOption("raw")]
    rec = decide(_samples(THETA), THETA, laws.chinchilla(), tiers, 1e21, raw_tokens=1e9)
    assert rec.r_star == pytest.approx(15.4) and "published" in rec.r_star_source
    # a small pool: the optimum trains longer on fewer repeated tokens -> larger N than Chinchilla's
    n_free = laws.chinchilla_allocation(THETA[0], THETA[1], ALPHA, BETA, 1e21)[0]
    assert rec.option("raw").epochs > 1 and rec.option("raw").n_params > n_free
    law = laws.quality(["raw", "clean"], reference="raw", pools=True)
    theta = np.concatenate([THETA, [0.0, math.log(5.0)]])
    rec = decide(np.zeros((0, theta.size)), theta, law, tiers + [TierOption("clean")], 1e21, raw_tokens=1e9)
    assert rec.r_star == pytest.approx(5.0) and rec.r_star_source == "fitted"


def test_infeasible_cleaning_is_reported() -> None:
    tiers = [TierOption("raw"), TierOption("clean", kappa=3.0, yield_fraction=0.5, cleaning_flops_per_raw_token=1e6)]
    rec = decide(_samples(THETA), THETA, laws.chinchilla(), tiers, 1e17, raw_tokens=1e12)
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
    rec = decide(samples, theta, law, tiers, 1e22, raw_tokens=1e12, largest_run_flops=1e19, n_steps=3)
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
    rec = session.recommend_from_store("store/demo-sweep", "data/demo", 100 * 1.2e12, n_bootstrap=100)
    assert rec.verdict in ("size", "cleaning")
    assert rec.flops_convention in rec.lines()[0] and rec.extrapolation is not None
    assert 0.0 <= rec.probability <= 1.0 and 0.0 <= rec.probability_kind <= 1.0
    assert rec.option("raw").cleaning_flops == 0
    assert rec.option("clean").cleaning_flops > 0
    tomllib.loads(rec.toml)
    tomllib.loads(rec.toml_grid)
    assert rec.lines() and json.dumps(rec.to_json())


# --------------------------------------------------------------------------------------------
# Compute convention, crossover, extrapolation guard, seeds, fits without a data build


def test_flops_v1_answers_cost_their_budget_and_differ_from_6nd() -> None:
    compute = Compute("flops_v1", Family())
    law = laws.quality(["raw", "clean"], reference="raw")
    theta = np.append(THETA, 0.2)
    tiers = [TierOption("raw"), TierOption("clean", yield_fraction=0.5, cleaning_flops_per_raw_token=10.0)]
    for budget in (1e15, 1e19):
        rec = decide(_samples(theta, scale=0.01), theta, law, tiers, budget, 1e12, compute=compute)
        assert rec.flops_convention == "flops_v1" and "FLOPs (flops_v1)" in rec.lines()[0]
        for o in rec.options:
            assert o.feasible
            assert float(compute.flops(o.n_params, o.tokens)) == pytest.approx(o.training_flops, rel=1e-2)
        for e in rec.experiments:
            assert float(compute.flops(e.n_params, e.tokens)) == pytest.approx(e.flops, rel=1e-2)
    small = decide(_samples(theta, scale=0.01), theta, law, tiers, 1e15, 1e12, compute=compute)
    textbook = decide(_samples(theta, scale=0.01), theta, law, tiers, 1e15, 1e12)
    for name in ("raw", "clean"):  # attention costs FLOPs per token at this size: another optimum
        assert abs(math.log(small.option(name).n_params / textbook.option(name).n_params)) > 0.01
        assert abs(math.log(small.option(name).tokens / textbook.option(name).tokens)) > 0.1
        assert small.option(name).loss > textbook.option(name).loss  # fewer tokens for the same FLOPs


def test_crossover_matches_the_closed_form_in_every_sample() -> None:
    # No repetition, common E: clean (multiplier k, cost c per raw token) beats raw above
    # C* = k c U / (k - 1) for any a, b, alpha, beta: each sample crosses at its own k.
    c, U, y = 10.0, 1e12, 0.5
    law = laws.quality(["raw", "clean"], reference="raw")
    theta = np.append(THETA, math.log(1.5))
    samples = _samples(theta, n=200, scale=0.02, seed=5)
    samples[:, -1] = np.random.default_rng(6).normal(math.log(1.5), 0.1, size=200)
    tiers = [TierOption("raw"), TierOption("clean", yield_fraction=y, cleaning_flops_per_raw_token=c)]
    c_star = 1.5 * c * U / 0.5
    rec = decide(samples, theta, law, tiers, c_star / 3, U)
    x = rec.crossover
    assert rec.verdict == "size" and x is not None
    assert x["direction"] == "size->cleaning" and x["range"] == pytest.approx([c_star / 300, 100 * c_star / 3])
    assert x["flops"] == pytest.approx(c_star, rel=1e-3)
    k = np.exp(samples[:, -1])
    assert x["share_crossing"] == 1.0
    assert x["interval"] == pytest.approx(list(percentile_interval(k * c * U / (k - 1))), rel=2e-3)
    line = next(line for line in rec.lines() if line.startswith("crossover"))
    assert "from model size to cleaning" in line and "100% of bootstrap samples" in line
    # the report's curves: the point estimate's best losses cross at C*, and the share of samples in
    # which cleaning wins is the share whose own crossover k c U / (k - 1) lies below each budget
    curves = rec.crossover["curves"]
    budgets = np.asarray(curves["budgets"])
    gap = np.asarray(curves["best"]["raw"]) - np.asarray(curves["best"]["clean"])
    assert np.array_equal(gap > 0, budgets > c_star)
    own = k * c * U / (k - 1)
    assert curves["p_cleaning"] == pytest.approx([float(np.mean(own < b)) for b in budgets], abs=0.011)
    lo, hi = (np.asarray(v) for v in curves["best_interval"]["raw"])
    assert np.all(lo <= np.asarray(curves["best"]["raw"]) + 1e-9) and np.all(hi >= lo)
    json.dumps(rec.to_json())


def _brute_best(flops: float, kappa: float, pool: float) -> float:
    """Best loss at `flops` (6ND) on a pool, by a dense grid over log N: Muennighoff repetition with
    the published R_D*, written out here independently of scaler."""
    x = np.linspace(0.0, math.log(flops / 6), 200_001)
    n = np.exp(x)
    d = flops / (6 * n)
    repeated = np.where(d > pool, pool + pool * 15.4 * -np.expm1(-(d / pool - 1) / 15.4), d)
    return float(np.min(E + A / n**ALPHA + B / (kappa * repeated) ** BETA))


def test_crossover_when_the_cleaned_pool_runs_out() -> None:
    # Free cleaning with kappa 2 but 1e-4 of the pool: cleaning wins while its pool lasts, and loses
    # once it repeats; the flip is found by bisection on a brute-force gap.
    U, y = 1e12, 1e-4
    tiers = [TierOption("raw"), TierOption("clean", kappa=2.0, yield_fraction=y)]

    def gap(flops: float) -> float:
        return _brute_best(flops, 1.0, U) - _brute_best(flops, 2.0, y * U)

    lo, hi = math.log(1e17), math.log(1e20)
    assert gap(math.exp(lo)) > 0 > gap(math.exp(hi))
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if gap(math.exp(mid)) > 0 else (lo, mid)
    expected = math.exp(0.5 * (lo + hi))
    rec = decide(_samples(THETA, n=100, scale=0.01, seed=2), THETA, laws.chinchilla(), tiers, 1e18, U,
                    largest_run_flops=1e16)
    x = rec.crossover
    assert rec.verdict == "cleaning" and x["direction"] == "cleaning->size"
    assert x["range"] == pytest.approx([1e16, 1e20])
    assert x["flops"] == pytest.approx(expected, rel=1e-3)
    assert x["share_crossing"] > 0.9 and x["interval"][0] < expected < x["interval"][1]
    assert any(line.startswith("crossover: the verdict turns from cleaning to model size") for line in rec.lines())
    # without samples: the point estimate alone
    alone = decide(np.zeros((0, 5)), THETA, laws.chinchilla(), tiers, 1e18, U, largest_run_flops=1e16)
    assert alone.crossover["flops"] == pytest.approx(expected, rel=1e-3)
    assert alone.crossover["share_crossing"] == 0.0 and alone.crossover["interval"] is None


def test_no_crossover_in_range() -> None:
    tiers = [TierOption("raw"), TierOption("worse", kappa=0.8)]  # free, but never better
    rec = decide(_samples(THETA, scale=0.01), THETA, laws.chinchilla(), tiers, 1e20, 1e15, largest_run_flops=1e18)
    x = rec.crossover
    assert x["flops"] is None and x["direction"] is None and x["throughout"] == "size"
    assert x["range"] == pytest.approx([1e18, 1e22])
    assert "no crossover between 1e+18 and 1e+22 FLOPs: the verdict is model size throughout" in "\n".join(rec.lines())


def _entry(theta: np.ndarray, law: laws.Law, samples: np.ndarray, **extra: object) -> dict:
    """A law entry as fit.json keeps it, written by hand (older entries lack the newer keys)."""
    return {"law": law.name, "spec": dict(law.spec), "theta": theta.tolist(), "bootstrap_theta": samples.tolist(),
            "derived": {}, "converged": True, "largest_run_flops": 1e18, **extra}


def test_extrapolation_note_refusal_and_force() -> None:
    law = laws.quality(["raw", "clean"], reference="raw")
    theta = np.append(THETA, 0.1)
    entry = _entry(theta, law, _samples(theta, n=16, scale=0.01),
                   fitted_range={"n_max": 1e8, "d_max": 2e9, "flops_max": 1e18, "flops_min": 1e16})
    kwargs = {"raw_tokens": 1e13, "yields": {"clean": 0.5}}
    near = recommend_from_fit(entry, budget_flops=1e19, **kwargs)
    assert near.extrapolation == pytest.approx(10.0) and "10x the largest fitted run" in near.lines()[0]
    assert not any("beyond the largest" in n for n in near.notes)
    far = recommend_from_fit(entry, budget_flops=1e21, **kwargs)
    assert far.extrapolation == pytest.approx(1e3)
    note = next(n for n in far.notes if "beyond the largest" in n)
    assert "the fitted runs span C = 1e+16 to 1e+18 FLOPs (6ND)" in note and "1e+03x beyond the largest" in note
    assert f"note: {note}" in far.lines()
    with pytest.raises(ExtrapolationRefused, match=r"1e\+05x the largest fitted run") as err:
        recommend_from_fit(entry, budget_flops=1e23, **kwargs)
    message = str(err.value)
    assert "\n" not in message and "1e+16 to 1e+18" in message and "pass force=True (--force) to answer anyway" in message
    assert isinstance(err.value, ValueError)
    forced = recommend_from_fit(entry, budget_flops=1e23, force=True, **kwargs)
    assert forced.extrapolation == pytest.approx(1e5) and any("forced" in n for n in forced.notes)
    no_min = dict(entry, fitted_range=None)  # only the largest run known
    note = next(n for n in recommend_from_fit(no_min, budget_flops=1e21, **kwargs).notes if "beyond the largest" in n)
    assert "the fitted runs span C = up to 1e+18 FLOPs (6ND)" in note


def test_seed_noise_note() -> None:
    law = laws.quality(["raw", "clean"], reference="raw")
    theta = np.append(THETA, 0.01)  # clean barely better: a gap of a few millinats
    samples = _samples(theta, n=16, scale=0.001)
    quiet = recommend_from_fit(_entry(theta, law, samples, seed_noise={"sd_nats": 1e-6, "sd_log": 1e-6}),
                               budget_flops=1e19, raw_tokens=1e13)
    assert quiet.seed_noise_nats == 1e-6 and not any("seed-to-seed" in n for n in quiet.notes)
    noisy = recommend_from_fit(_entry(theta, law, samples, seed_noise={"sd_nats": 0.05, "sd_log": 0.02}),
                               budget_flops=1e19, raw_tokens=1e13)
    assert noisy.seed_noise_nats == 0.05 and 0 < noisy.gap < 0.05
    note = next(n for n in noisy.notes if "seed-to-seed" in n)
    assert f"{noisy.gap:+.4f} nats" in note and "0.0500 nats" in note
    legacy = recommend_from_fit(_entry(theta, law, samples), budget_flops=1e19, raw_tokens=1e13)
    assert legacy.seed_noise_nats is None and legacy.flops_convention == "6ND"


@pytest.fixture(scope="module")
def table_fit(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A quality law fitted by scaler.fitting.pipeline.fit on a plain table of runs trained elsewhere:
    two datasets (kappa 2 for `clean`), two seeds per configuration."""
    from scaler.fitting.inputs import load_table
    from scaler.fitting.pipeline import fit

    rng = np.random.default_rng(0)
    rows = ["params,tokens,loss,dataset"]
    for dataset, kappa in (("raw", 1.0), ("clean", 2.0)):
        for n in np.geomspace(1e6, 3e8, 6):
            for d in (5 * n, 20 * n, 80 * n):
                for _ in range(2):
                    loss = (E + A / n**ALPHA + B / (kappa * d) ** BETA) * math.exp(rng.normal(0, 0.005))
                    rows.append(f"{n:.6g},{d:.6g},{loss:.6g},{dataset}")
    path = tmp_path_factory.mktemp("table") / "runs.csv"
    path.write_text("\n".join(rows) + "\n")
    data = load_table(path, n="params", loss="loss", d="tokens", group="dataset")
    return fit(data, "quality", n_bootstrap=50, reference="raw")


def test_recommend_from_a_table_fit_without_a_data_build(table_fit: dict) -> None:
    entry = table_fit
    budget = 100 * entry["largest_run_flops"]
    rec = recommend_from_fit(entry, budget_flops=budget, raw_tokens=1e12, yields={"clean": 0.3},
                             cleaning_costs={"clean": 50.0})
    assert [o.name for o in rec.options] == ["raw", "clean"]
    clean = rec.option("clean")
    assert clean.kappa == pytest.approx(2.0, rel=0.1) and clean.yield_fraction == 0.3
    assert clean.cleaning_flops == pytest.approx(50.0 * 1e12) and rec.option("raw").cleaning_flops == 0
    assert rec.flops_convention == "6ND" and rec.extrapolation == pytest.approx(100.0)
    assert rec.seed_noise_nats == pytest.approx(entry["seed_noise"]["sd_nats"])
    for o in rec.options:  # the error model's interval: bootstrap, run scatter and misspecification
        lo, hi = o.loss_prediction_interval
        assert lo < o.loss < hi and hi - lo > o.loss_interval[1] - o.loss_interval[0]
    assert any("95% prediction interval" in line for line in rec.lines())
    assert any("no data build" in n and "clean yield 30.0%" in n for n in rec.notes)
    assert rec.crossover is not None and rec.crossover["range"][0] == pytest.approx(entry["largest_run_flops"])
    swept = recommend_from_fit({"quality": entry, "groups": {}}, budget_flops=budget, raw_tokens=1e12,
                               yields={"clean": 0.3}, cleaning_costs={"clean": 50.0})
    assert swept.option("clean").loss == rec.option("clean").loss and swept.gap == rec.gap
    free = recommend_from_fit(entry, budget_flops=budget, raw_tokens=1e12)  # defaults: yield 1, no cost
    assert free.option("clean").yield_fraction == 1.0 and free.option("clean").cleaning_flops == 0
    assert free.verdict == "cleaning"
    json.dumps(rec.to_json())
    with pytest.raises(ValueError, match="raw_tokens U is needed without a data build"):
        recommend_from_fit(entry, budget_flops=budget)
    with pytest.raises(ValueError, match="yields: unknown tier.*filtered.*raw, clean"):
        recommend_from_fit(entry, budget_flops=budget, raw_tokens=1e12, yields={"filtered": 0.5})
    with pytest.raises(ValueError, match="cleaning_costs: unknown tier"):
        recommend_from_fit(entry, budget_flops=budget, raw_tokens=1e12, cleaning_costs={"dirty": 1.0})


@pytest.mark.skipif(not ((ROOT / "store/demo-sweep/fit.json").is_file() and (ROOT / "data/demo/report.json").is_file()),
                    reason="store/demo-sweep and data/demo are built by `scaler run sweeps/demo.toml`, not in a clone")
def test_saved_demo_fit_with_build_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    fit = json.loads((ROOT / "store/demo-sweep/fit.json").read_text())
    if "quality" not in fit or "error" in fit["quality"]:
        pytest.skip("the saved demo fit has no quality law")
    budget = 100 * fit["quality"]["largest_run_flops"]
    built = session.recommend(fit, "data/demo", budget)
    tier = next(o.name for o in built.options if o.name != built.raw_option)
    given = session.recommend(fit, "data/demo", budget, yields={tier: 0.25}, cleaning_costs={tier: 0.0})
    assert given.option(tier).yield_fraction == 0.25 and given.option(tier).cleaning_flops == 0
    assert given.option(built.raw_option).yield_fraction == built.option(built.raw_option).yield_fraction
    if "compute" not in fit["quality"]:
        assert built.flops_convention == "6ND"  # a fit that predates conventions
    assert any("report.json" in n for n in built.notes)


def test_settle_says_whether_the_verdict_is_settled_and_what_would_settle_it() -> None:
    law = laws.quality(["raw", "clean"], reference="raw")
    theta = np.append(THETA, 0.05)
    tiers = [TierOption("raw"), TierOption("clean")]
    from scaler.fitting.predict import ErrorModel

    errors = ErrorModel(sigma_run=0.01, growth=0.0, multiplier=1.96, calibrated=False, n_residuals=0)
    sure = decide(_samples(theta, n=200, scale=0.002, seed=1), theta, law, tiers, 1e21, raw_tokens=1e30,
                     largest_run_flops=1e19, error_model=errors)
    assert sure.probability_kind >= 0.9 and sure.settle.startswith("settled: ")
    unsure = decide(_samples(theta, n=200, scale=0.05, seed=1), theta, law, tiers, 1e21, raw_tokens=1e30,
                       largest_run_flops=1e19, error_model=errors)
    assert unsure.probability_kind < 0.9 and unsure.settle.startswith("not settled: ")
    assert "needs the sd below" in unsure.settle and "Either way, the options differ by at most" in unsure.settle
    assert ("The measurement that would settle it: the pair raw and clean at" in unsure.settle
            or "would not settle it even with 32 seeds" in unsure.settle)
    top = [e for e in unsure.experiments if e.rank == 1]
    assert len(top) == 2 and top[0].gap_sd_after < top[0].gap_sd and top[0].information_per_flop > 0
    # ranked by information per FLOP, not by the spread of the gap
    per_flop = [e.information_per_flop for e in unsure.experiments[::2]]
    assert per_flop == sorted(per_flop, reverse=True)
    assert "ranked by the gap variance each pair would remove per FLOP" in "\n".join(unsure.lines())


def test_any_law_of_n_and_d_is_recommended_from_through_its_own_formula() -> None:
    """recommend evaluates the fitted law itself (tests/test_laws.py: the quality law's runs), so a
    Kaplan fit is recommended from too, and a law that needs other columns is refused."""
    kaplan, k_theta = laws.kaplan(), np.array([math.log(6.4e13), math.log(1.8e13), 0.076, 0.103])
    rec = decide(_samples(k_theta, scale=0.01), k_theta, kaplan, [TierOption("raw")], 1e21, raw_tokens=1e30)
    best = rec.option("raw")
    assert best.loss == pytest.approx(float(kaplan.predict(k_theta, {"N": [best.n_params], "D": [best.tokens]})[0]),
                                      rel=1e-9)
    mixing = laws.mixing(["web", "code"])
    with pytest.raises(ValueError, match="needs columns"):
        decide(np.zeros((0, mixing.n_params)), np.zeros(mixing.n_params), mixing, [TierOption("raw")], 1e21,
                  raw_tokens=1e12)
