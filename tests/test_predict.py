"""One compute convention (scaler/fitting/compute.py) and prediction intervals that hold at held-out
scale (scaler/fitting/predict.py), tested against laws whose truth is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scaler.config import Family, count_params, flops_per_token
from scaler.fitting import laws
from scaler.fitting.compute import FLOPS_V1, SIX_ND, Compute, allocate, family_of_shapes
from scaler.fitting.inputs import FitData, with_clusters
from scaler.fitting.pipeline import fit
from scaler.fitting.predict import seed_noise
from scaler.fitting.result import PredictError, predict

CHINCHILLA_THETA = np.array([math.log(406.4), math.log(410.7), math.log(1.69), 0.34, 0.28])


def test_flops_v1_is_exact_at_every_ladder_shape_and_close_between() -> None:
    family = Family()
    compute = Compute(FLOPS_V1, family)
    for d_model in range(16, 1025, 16):  # ladder shapes: exact
        shape = family.shape(d_model)
        assert compute.flops_per_token(count_params(shape)) == pytest.approx(flops_per_token(shape), rel=1e-12)
    for d_model in range(1040, 8193, 16):  # beyond 1024 the table thins out: interpolated within 0.1%
        shape = family.shape(d_model)
        assert compute.flops_per_token(count_params(shape)) == pytest.approx(flops_per_token(shape), rel=1e-3)
    assert Compute(SIX_ND).flops_per_token(1e9) == 6e9
    with pytest.raises(ValueError, match="needs the model family"):
        Compute(FLOPS_V1)
    assert Compute.from_json(compute.to_json()) == compute and Compute.from_json(None) == Compute(SIX_ND)


def test_family_of_shapes_recovers_the_ladder() -> None:
    family = Family(vocab_size=1000, seq_len=128, aspect_ratio=64, head_dim=32)
    shapes = [family.shape(d) for d in (64, 128, 256, 512)]
    found, exact = family_of_shapes(shapes)
    assert exact and found.shape(1024) == family.shape(1024)
    odd = shapes[:-1] + [shapes[-1].model_copy(update={"n_layers": 3})]
    assert family_of_shapes(odd)[1] is False


def test_allocation_matches_the_closed_form_under_6nd() -> None:
    law = laws.chinchilla()
    for budget in (1e15, 1e19, 1e23):
        closed = laws.chinchilla_allocation(*CHINCHILLA_THETA[[0, 1]], CHINCHILLA_THETA[3], CHINCHILLA_THETA[4], budget)
        n_opt, d_opt, _ = allocate(law, CHINCHILLA_THETA, budget, Compute(SIX_ND))
        assert n_opt[0] == pytest.approx(closed[0], rel=1e-5) and d_opt[0] == pytest.approx(closed[1], rel=1e-5)


def test_a_flops_v1_allocation_costs_its_budget_and_differs_from_6nd_where_attention_matters() -> None:
    law, compute = laws.chinchilla(), Compute(FLOPS_V1, Family())
    samples = CHINCHILLA_THETA + np.random.default_rng(0).normal(0, 0.01, (20, 5))
    for budget in (1e13, 1e16, 1e20):
        n_opt, d_opt, loss = allocate(law, samples, budget, compute)
        assert np.allclose(compute.flops(n_opt, d_opt), budget, rtol=1e-9)  # every sample spends the budget
        # a ladder shape near N_opt, trained for D_opt, costs the budget within 1% under flops_v1 itself
        shape = Family().shape_for_params(int(n_opt[0]))
        if abs(math.log(count_params(shape) / n_opt[0])) < 0.005:
            assert flops_per_token(shape) * d_opt[0] == pytest.approx(budget, rel=0.01)
    n_v1 = allocate(law, CHINCHILLA_THETA, 1e13, compute)[0][0]
    n_6nd = allocate(law, CHINCHILLA_THETA, 1e13, Compute(SIX_ND))[0][0]
    assert n_v1 < 0.97 * n_6nd  # attention costs FLOPs per token: fewer parameters at a small budget


# -- prediction intervals on misspecified synthetic laws ----------------------------------------


def _bend(n: np.ndarray, d: np.ndarray) -> np.ndarray:
    """The N exponent flattens by 0.08 past N_b = 3e7: not the Chinchilla form that is fitted."""
    return 1.8 + 400.0 * n**-0.34 * (1.0 + n / 3e7) ** 0.08 + 410.0 * d**-0.28


def _kaplan(n: np.ndarray, d: np.ndarray) -> np.ndarray:
    return ((6.4e13 / n) ** (0.076 / 0.103) + 1.8e13 / d) ** 0.103


def _runs(truth, seed: int) -> tuple[FitData, np.ndarray, np.ndarray, np.ndarray]:
    """Fitted runs up to C_max; held-out runs at 10x-30x C_max (0.3% noise on both)."""
    rng = np.random.default_rng(seed)
    n = np.repeat(np.geomspace(1e6, 3e8, 10), 4)
    d = n * np.tile(np.geomspace(5, 80, 4), 10)
    c = 6 * n * d
    keep = c <= np.quantile(c, 0.85)
    n, d = n[keep], d[keep]
    loss = truth(n, d) * np.exp(rng.normal(0, 0.003, len(n)))
    data = with_clusters(FitData("synthetic", {"N": n, "D": d, "C": 6 * n * d}, loss, compute=Compute(SIX_ND)))
    c_test = c[keep].max() * np.geomspace(10, 30, 16)
    tpp = np.tile(np.geomspace(5, 80, 4), 4)
    n_test = np.sqrt(c_test / (6 * tpp))
    d_test = c_test / (6 * n_test)
    return data, n_test, d_test, truth(n_test, d_test) * np.exp(rng.normal(0, 0.003, len(n_test)))


@pytest.mark.parametrize("truth", [_bend, _kaplan], ids=["bend", "kaplan"])
def test_intervals_cover_misspecified_laws_at_10x_to_30x(truth) -> None:
    data, n_test, d_test, observed = _runs(truth, seed=1)
    fitted = fit(data, "chinchilla", 60, 0)
    points = predict(fitted, n_test, d=d_test)["points"]
    lo, hi = np.array([p["interval"] for p in points]).T
    loss = np.array([p["loss"] for p in points])
    assert all(10 * 0.999 <= p["extrapolation"] <= 30 * 1.001 for p in points)
    coverage = np.mean((observed >= lo) & (observed <= hi))
    assert coverage >= 0.9
    assert np.median((hi - lo) / 2 / loss) < 0.08  # an interval, not a shrug
    model = fitted["error_model"]
    assert model["calibrated"] and model["growth"] > 0
    # the bootstrap alone (parameter uncertainty) would not have held: the misspecification term matters
    spread = np.array([laws.chinchilla().predict(s, {"N": n_test, "D": d_test}) for s in fitted["bootstrap_theta"]])
    boot_lo, boot_hi = np.percentile(spread, [2.5, 97.5], axis=0)
    assert np.mean((observed >= boot_lo) & (observed <= boot_hi)) < coverage


def test_auto_picks_the_form_the_runs_were_drawn_from() -> None:
    n = np.repeat(np.geomspace(3e6, 1e9, 8), 5)
    d = n * np.tile(np.geomspace(4, 100, 5), 8)
    truths = {
        "chinchilla": (laws.chinchilla(), CHINCHILLA_THETA),
        "kaplan": (laws.kaplan(), np.array([math.log(6.4e13), math.log(1.8e13), 0.076, 0.103])),
    }
    rng = np.random.default_rng(0)
    for name, (law, theta) in truths.items():
        loss = law.predict(theta, {"N": n, "D": d}) * np.exp(rng.normal(0, 0.001, len(n)))
        data = with_clusters(FitData(name, {"N": n, "D": d, "C": 6 * n * d}, loss, compute=Compute(SIX_ND)))
        chosen = fit(data, "auto", 0, 0)
        assert chosen["law"] == name, chosen["candidates"]
        assert {c["law"] for c in chosen["candidates"]} == {"chinchilla", "kaplan", "overtrain", "broken"}


def test_predictions_keep_input_order_groups_and_say_how_far_they_extrapolate() -> None:
    rng = np.random.default_rng(2)
    n = np.tile(np.repeat(np.geomspace(1e6, 1e8, 5), 3), 2)
    d = n * np.tile(np.geomspace(10, 40, 3), 10)
    groups = np.repeat(["a", "b"], 15)
    loss = laws.chinchilla().predict(CHINCHILLA_THETA, {"N": n, "D": d}) * (1 + 0.03 * (groups == "b"))
    loss *= np.exp(rng.normal(0, 0.002, len(n)))
    data = with_clusters(FitData("t", {"N": n, "D": d, "C": 6 * n * d}, loss, groups, compute=Compute(SIX_ND)))
    from scaler.fitting.pipeline import fit_sweep

    sweep = fit_sweep(data, "chinchilla", 30, 0)
    points = predict(sweep, [1e9, 1e6, 1e9], d=[2e10, 2e7, 2e10], groups=["b", "a", "a"])["points"]
    assert [p["group"] for p in points] == ["b", "a", "a"] and [p["n"] for p in points] == [1e9, 1e6, 1e9]
    assert points[0]["loss"] > points[2]["loss"]  # group b is 3% worse
    largest = float(np.max(6 * n * d))
    assert points[2]["extrapolation"] == pytest.approx(6 * 1e9 * 2e10 / largest)
    assert all(p["interval"][0] < p["loss"] < p["interval"][1] for p in points)
    by_flops = predict(sweep, [1e9], flops=[1.2e20], groups=["a"])["points"][0]
    assert by_flops["d"] == pytest.approx(1.2e20 / 6e9)
    with pytest.raises(PredictError, match="several groups"):
        predict(sweep, [1e9], d=[1e10])
    with pytest.raises(PredictError, match="not in the fit"):
        predict(sweep, [1e9], d=[1e10], groups=["c"])


def test_seeds_are_repeats_kept_together_and_their_noise_is_measured() -> None:
    rng = np.random.default_rng(3)
    n = np.repeat(np.geomspace(1e6, 1e8, 6), 3 * 2)  # 6 sizes x 3 lengths x 2 seeds
    d = n * np.tile(np.repeat(np.geomspace(10, 40, 3), 2), 6)
    loss = laws.chinchilla().predict(CHINCHILLA_THETA, {"N": n, "D": d}) * np.exp(rng.normal(0, 0.004, len(n)))
    data = with_clusters(FitData("seeds", {"N": n, "D": d, "C": 6 * n * d}, loss, compute=Compute(SIX_ND)))
    assert len(set(data.clusters.tolist())) == 18  # two seeds per configuration
    noise = seed_noise(data)
    assert noise["n_configs"] == 18 and noise["n_runs"] == 36 and 0.001 < noise["sd_log"] < 0.01
    fitted = fit(data, "chinchilla", 40, 0, backtests=False)
    assert fitted["bootstrap_clusters"] == 18 and fitted["seed_noise"]["n_configs"] == 18


def test_the_data_constrained_law_predicts_with_unique_tokens() -> None:
    law = laws.data_constrained()
    theta = np.array([*CHINCHILLA_THETA, math.log(15.0), math.log(5.0)])
    n = np.repeat(np.geomspace(1e7, 3e8, 5), 6)
    d = n * np.tile([10.0, 20.0, 40.0], 10)
    u = np.tile(np.repeat([3e8, 3e10], 3), 5)
    loss = law.predict(theta, {"N": n, "D": d, "U": u})
    data = with_clusters(FitData("dc", {"N": n, "D": d, "U": u, "C": 6 * n * d}, loss, compute=Compute(SIX_ND)))
    fitted = fit(data, "data_constrained", 0, 0, backtests=False)
    scarce, plenty = predict(fitted, [1e8, 1e8], d=[1e10, 1e10], unique=[1e8, 1e11])["points"]
    assert scarce["loss"] > plenty["loss"]  # 100 epochs of a small pool cost loss
    assert plenty["loss"] == pytest.approx(law.predict(theta, {"N": 1e8, "D": 1e10, "U": 1e11}), rel=1e-3)
    with pytest.raises(PredictError, match="give unique COL"):
        predict(fitted, [1e8], d=[1e10])
