"""Which law `--law auto` keeps and how its intervals are made (scaler/fitting/choose.py,
scaler/fitting/predict.py), pinned on synthetic truths; rankings of groups whose curves cross."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scaler.fitting import laws
from scaler.fitting.backtest import order_stability
from scaler.fitting.choose import choose, ensemble, identification_problem
from scaler.fitting.compute import SIX_ND, Compute
from scaler.fitting.inputs import FitData, with_clusters
from scaler.fitting.pipeline import fit, fit_sweep
from scaler.fitting.predict import Backtests, ranking_lines
from scaler.fitting.result import predict
from scaler.fitting.stats import order_probability

CHINCHILLA_THETA = np.array([math.log(406.4), math.log(410.7), math.log(1.69), 0.34, 0.28])


def _chinchilla_runs(seed: int, noise: float = 0.004, sizes: int = 8) -> FitData:
    rng = np.random.default_rng(seed)
    n = np.repeat(np.geomspace(3e6, 3e8, sizes), 4)
    d = n * np.tile(np.geomspace(5, 80, 4), sizes)
    loss = laws.chinchilla().predict(CHINCHILLA_THETA, {"N": n, "D": d}) * np.exp(rng.normal(0, noise, len(n)))
    return with_clusters(FitData("synthetic", {"N": n, "D": d, "C": 6 * n * d}, loss, compute=Compute(SIX_ND)))


@pytest.fixture(scope="module")
def chinchilla_auto():
    data = _chinchilla_runs(seed=0)
    return data, fit(data, "auto", 40, 0)


def test_broken_fits_the_small_runs_best_extrapolates_worst_and_is_not_chosen(chinchilla_auto) -> None:
    data, chosen = chinchilla_auto
    n_far = np.geomspace(1e9, 3e9, 6)
    truth = laws.chinchilla().predict(CHINCHILLA_THETA, {"N": n_far, "D": 20 * n_far})
    errors, objectives = {}, {}
    for name in ("chinchilla", "broken"):
        entry = fit(data, name, 0, 0, backtests=False)
        objectives[name] = entry["objective"]
        far = laws.law_from_spec(entry["spec"]).predict(np.asarray(entry["theta"]), {"N": n_far, "D": 20 * n_far})
        errors[name] = float(np.mean(np.abs(far / truth - 1)))
    assert objectives["broken"] < objectives["chinchilla"]  # the small runs: broken fits them best
    assert errors["broken"] > 5 * errors["chinchilla"]  # ... and extrapolates worst
    rows = {c["law"]: c for c in chosen["candidates"]}
    assert chosen["law"] != "broken"
    assert rows["broken"]["score_pct"] < rows["chinchilla"]["score_pct"]  # even its backtests favour it
    assert "refused" in rows["broken"]  # but the runs do not identify it, and it says why
    assert chosen["chosen_by"].startswith(chosen["law"])
    assert {c["law"] for c in chosen["candidates"]} == {"chinchilla", "kaplan", "overtrain", "broken"}
    assert all(m["law"] != "broken" for m in chosen["ensemble"])


def test_intervals_are_sharp_and_cover_on_the_true_form(chinchilla_auto) -> None:
    _, chosen = chinchilla_auto
    rng = np.random.default_rng(5)
    c_max = chosen["largest_run_flops"]
    c = np.repeat(c_max * np.geomspace(3, 30, 6), 4)
    tpp = np.tile(np.geomspace(5, 80, 4), 6)
    n = np.sqrt(c / (6 * tpp))
    observed = laws.chinchilla().predict(CHINCHILLA_THETA, {"N": n, "D": tpp * n}) * np.exp(rng.normal(0, 0.004, len(n)))
    points = predict(chosen, n, d=tpp * n)["points"]
    loss = np.array([p["loss"] for p in points])
    lo, hi = np.array([p["interval"] for p in points]).T
    assert np.mean((observed >= lo) & (observed <= hi)) >= 0.85
    assert np.median((hi - lo) / 2 / loss) < 0.05  # sharp: not a shrug
    model = chosen["error_model"]
    assert model["calibrated"] and model["residuals"]["reach"]
    for p in points:  # every point says what its width is made of
        assert sum(p["width"]["shares"].values()) == pytest.approx(1.0)
        assert p["width"]["dominant"] in p["width"]["shares"] and p["width"]["shrink"]


def test_recommend_and_predict_give_one_interval_for_one_run(chinchilla_auto) -> None:
    """An auto fit's interval holds the candidate laws' disagreement in `recommend` as in `predict`."""
    from scaler.decision import recommend_from_fit

    _, chosen = chinchilla_auto
    if len(chosen.get("ensemble") or []) < 2:
        pytest.skip("this table's choice kept no ensemble")
    option = recommend_from_fit(chosen, budget_flops=30 * chosen["largest_run_flops"], raw_tokens=1e15,
                                crossover_budgets=0).options[0]
    [point] = predict(chosen, option.n_params, d=option.tokens)["points"]
    assert option.loss_prediction_interval == pytest.approx(tuple(point["interval"]), rel=1e-9)
    assert option.interval_width["shares"]["law_disagreement"] > 0


def _backtests(abs_errors: np.ndarray, cuts: int = 6) -> Backtests:
    """Fake backtests: the same held-out runs of `cuts` cuts for every law, residual sign alternating."""
    k = len(abs_errors)
    cut = np.repeat(np.arange(cuts), k // cuts)
    summaries = [{"axis": "compute", "cut": float(i)} for i in range(cuts)]
    sign = np.where(np.arange(k) % 2, 1.0, -1.0)
    return Backtests(summaries, sign * abs_errors, np.full(k, 3.0), cut, np.arange(k), np.ones(k), np.full(k, 0.5))


def _entry(name: str, n_params: int, bt: Backtests, **derived: float) -> dict:
    return {"law": name, "params": {f"p{i}": 0.0 for i in range(n_params)}, "derived": derived, "converged": True,
            "stopped": "converged", "objective": 0.0, "flat_directions": [], "spec": {"family": name},
            "theta": [0.0] * n_params,
            "error_model": {"backtests": bt.summaries, "residuals": bt.to_json()}}


def test_a_law_with_more_parameters_wins_only_beyond_one_standard_error() -> None:
    rng = np.random.default_rng(0)
    data = _chinchilla_runs(seed=1, sizes=4)
    base = np.abs(rng.normal(0.01, 0.004, 60))
    simple = _entry("chinchilla", 5, _backtests(base), alpha=0.3, beta=0.3)
    within_noise = _entry("overtrain", 5 + 2, _backtests(np.abs(base + rng.normal(-0.0005, 0.004, 60))), c=0.2)
    chosen, rows, reason = choose({"chinchilla": simple, "overtrain": within_noise}, data)
    assert chosen == "chinchilla", rows  # slightly better on average, but not by more than its noise
    assert "within one standard error" in reason or "lowest error" in reason
    clearly = _entry("overtrain", 7, _backtests(base * 0.4), c=0.2)
    chosen, rows, reason = choose({"chinchilla": simple, "overtrain": clearly}, data)
    assert chosen == "overtrain" and "more than one standard error" in reason
    gap = next(r for r in rows if r["law"] == "chinchilla")
    assert gap["gap_to_best_pct"] > gap["gap_se_pct"] > 0
    members = ensemble(rows, {"chinchilla": simple, "overtrain": clearly})  # 2.5x worse: outside Occam's window
    assert [m["law"] for m in members] == ["overtrain"]


def test_fits_the_runs_do_not_identify_are_refused_with_the_reason() -> None:
    data = _chinchilla_runs(seed=1, sizes=4)  # N from 3e6 to 3e8
    bt = _backtests(np.full(60, 0.01))
    outside = _entry("broken", 7, bt, alpha=0.3, beta=0.3, alpha_large_N=0.2, N_b=1e11)
    assert "outside the fitted sizes" in identification_problem(outside, data)
    assert identification_problem(_entry("broken", 7, bt, alpha=0.3, beta=0.3, alpha_large_N=0.2, N_b=1e7), data) is None
    assert "edge" in identification_problem(_entry("kaplan", 4, bt, alpha_N=1e-4, alpha_D=0.1), data)
    flat = {**_entry("overtrain", 5, bt, c=0.2), "flat_directions": ["0.7*log_a +0.7*log_b"]}
    assert "flat direction" in identification_problem(flat, data)
    at_edge = _entry("chinchilla", 5, bt, alpha=5.0, beta=0.3)  # the fallback is kept, with a warning
    chosen, rows, _ = choose({"chinchilla": at_edge, "broken": outside}, data)
    assert chosen == "chinchilla" and "warning" in rows[0] and "refused" in rows[1]


def test_a_small_table_gets_a_wide_interval_and_says_why() -> None:
    data = _chinchilla_runs(seed=2, sizes=4).subset(np.arange(16) < 14)
    entry = fit(data, "chinchilla", 20, 0)
    model = entry["error_model"]
    assert not model["calibrated"] and "small table" in model["reason"]
    assert model["multiplier"] >= 3.0


# -- rankings ---------------------------------------------------------------------------------


def _crossing(seed: int, noise: float) -> tuple[FitData, dict]:
    """Two datasets: "early" better at small N, "late" (lower E, larger A) better past N ~ 3e7."""
    truths = {"early": lambda n, d: 1.95 + 200.0 / n**0.4 + 410.7 / d**0.28,
              "late": lambda n, d: 1.75 + 400.0 / n**0.4 + 410.7 / d**0.28}
    rng = np.random.default_rng(seed)
    n = np.repeat(np.geomspace(1e6, 1e8, 6), 3)
    d = n * np.tile([10.0, 20.0, 40.0], 6)
    cols = {"N": np.r_[n, n], "D": np.r_[d, d]}
    cols["C"] = 6 * cols["N"] * cols["D"]
    loss = np.r_[truths["early"](n, d), truths["late"](n, d)] * np.exp(rng.normal(0, noise, 2 * len(n)))
    groups = np.array(["early"] * len(n) + ["late"] * len(n))
    return with_clusters(FitData("crossing", cols, loss, groups, compute=Compute(SIX_ND))), truths


def test_rankings_of_crossing_groups_are_right_where_the_gap_exceeds_twice_the_noise() -> None:
    noise = 0.004
    data, truths = _crossing(seed=0, noise=noise)
    fitted = fit_sweep(data, "chinchilla", 60, 0)
    checked = 0
    for n in (3e6, 1e9, 3e9):  # before the crossing, and 3x-30x beyond the largest fitted run's N
        d = 20 * n
        result = predict(fitted, [n, n], d=[d, d], groups=["early", "late"])
        (ranking,) = result["rankings"]
        true = {g: float(truths[g](n, d)) for g in truths}
        if abs(true["early"] - true["late"]) > 2 * noise * min(true.values()):
            assert ranking["order"] == sorted(true, key=true.get), (n, ranking)
            checked += 1
        assert 0.0 <= ranking["probability"] <= 1.0 and ranking["n_samples"] == 60
        assert ranking["pairs"][0]["probability"] == pytest.approx(ranking["probability"])
    assert checked >= 2
    order = fitted["order"]  # the observed order changed: early won the small budgets
    assert order["order"] == ["late", "early"] and order["changed_below"] is not None and order["ratio"] > 1
    assert any("held over the last" in line for line in ranking_lines(result["rankings"]))


def test_order_stability_reads_the_budget_where_the_order_stopped_changing() -> None:
    flops = np.array([1e18, 1e18, 1e19, 1e19, 1e20, 1e20, 1e21, 1e21])
    loss = np.array([3.0, 3.1, 2.8, 2.7, 2.5, 2.4, 2.2, 2.1])  # a wins at 1e18, b from 1e19 on
    groups = np.array(["a", "b"] * 4)
    out = order_stability(flops, loss, groups)
    assert out["order"] == ["b", "a"] and out["stable_from_flops"] == 1e19 and out["ratio"] == pytest.approx(100)
    assert out["changed_below"] == 1e18
    assert order_stability(flops[:2], loss[:2], groups[:2]) is None  # one shared budget: nothing to say


def test_order_probability_counts_samples_that_keep_the_whole_order() -> None:
    samples = np.array([[1.0, 2.0, 3.0], [1.0, 3.0, 2.0], [2.0, 1.0, 3.0], [1.0, 2.0, 3.0]])
    order, p, pairs = order_probability([1.0, 2.0, 3.0], samples)
    assert order == [0, 1, 2] and p == 0.5 and pairs == [0.75, 0.75]
