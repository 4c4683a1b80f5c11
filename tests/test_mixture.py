"""The recommended mixture (issue 22) against synthetic sweeps whose truth is known.

Each sweep is drawn from a known mixture law nested in N and D: three tiers with finite pools,
20 mixes (the three single tiers and 17 Dirichlet(1, 1, 1) draws), each mix at every size once and
every token count once (a Latin-square row over 4 sizes x 4 token counts: 80 runs, 16 (N, D)
points), 0.3% multiplicative noise, seeded. The true optimum at a budget 4x the largest run is
found by brute force on the true law (a dense simplex x log N grid, then a finer one around its
best point), independently of the recommender's own search. Two truths of different forms:
Ye et al.'s mixing law with every tier capped at 4 epochs (the clean tier's cap binds), and the
RegMix-style law with interactions, uncapped (an interior optimum charged by repetition alone).
"""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from scaler.cli import app
from scaler.decision.mixture import optimise_mix, recommend_mixture
from scaler.fitting.compute import SIX_ND, Compute
from scaler.fitting.inputs import FitData, FitDataError, with_clusters
from scaler.fitting.mixture import load_mixture_table, mix_folds, mix_labels, regmix, ye

TIERS = ("clean", "dedup", "raw")
POOLS = {"clean": 1.5e6, "dedup": 6e6, "raw": 4e7}  # unique tokens
SIZES = (1e4, 3e4, 1e5, 3e5)  # parameters
TOKENS = (3e5, 1e6, 3e6, 1e7)
BUDGET = 4 * 6 * SIZES[-1] * TOKENS[-1]  # FLOPs (6ND): 4x the largest run
CAPPED = {t: 4.0 for t in TIERS}
UNCAPPED = {t: None for t in TIERS}
N_BOOTSTRAP = 64

# theta = (a, b, alpha, beta, log_c, log_k, t_clean, t_dedup, log_R_D_star), t_raw = 0
YE_LAW = ye(TIERS, "raw")
YE_TRUTH = np.array([math.log(20), math.log(60), 0.35, 0.3, math.log(0.8), math.log(0.5), -1.0, -0.4, math.log(5)])
# theta = (a, b, alpha, beta, b_clean, b_dedup, b_raw, b_clean_dedup, b_clean_raw, b_dedup_raw, log_R_D_star)
REGMIX_LAW = regmix(TIERS)
REGMIX_TRUTH = np.array([math.log(20), math.log(60), 0.35, 0.3, math.log(1.0), math.log(1.05), math.log(1.15),
                         -0.5, -0.5, -0.5, math.log(5)])


def sweep(law, theta: np.ndarray, seed: int, n_mixes: int = 20, noise: float = 0.003) -> FitData:
    """A synthetic mixture sweep from the true law (module docstring)."""
    rng = np.random.default_rng(seed)
    mixes = np.vstack([np.eye(len(TIERS)), rng.dirichlet(np.ones(len(TIERS)), size=n_mixes - len(TIERS))])
    rows = [(SIZES[j], TOKENS[(i + j) % len(TOKENS)], w) for i, w in enumerate(mixes) for j in range(len(SIZES))]
    columns = {"N": np.array([r[0] for r in rows]), "D": np.array([r[1] for r in rows])}
    for j, t in enumerate(TIERS):
        columns[f"w_{t}"] = np.array([r[2][j] for r in rows])
        columns[f"U_{t}"] = np.full(len(rows), POOLS[t])
    columns["C"] = 6 * columns["N"] * columns["D"]
    loss = law.predict(theta, columns) * np.exp(noise * rng.standard_normal(len(rows)))
    return with_clusters(FitData("synthetic", columns, loss, compute=Compute(SIX_ND)))


def _grid_best(law, theta: np.ndarray, mixes: np.ndarray, caps, n_range: tuple[float, float], points: int
               ) -> tuple[np.ndarray, float, float]:
    """The best of `points` log-spaced sizes per mix in `n_range`, starting at the smallest N its caps
    allow where that is larger (D = C / 6N <= cap_t U_t / w_t: the boundary is a grid point): (mix, N, loss)."""
    max_tokens = np.full(len(mixes), np.inf)
    for j, t in enumerate(TIERS):
        if caps[t] is not None:
            with np.errstate(divide="ignore"):
                max_tokens = np.minimum(max_tokens, np.where(mixes[:, j] > 0, caps[t] * POOLS[t] / mixes[:, j], np.inf))
    n_min = np.maximum(BUDGET / (6 * max_tokens), n_range[0])
    n = n_min[:, None] * (n_range[1] / n_min[:, None]) ** np.linspace(0.0, 1.0, points)[None, :]
    columns = {"N": n, "D": BUDGET / (6 * n), **{f"w_{t}": mixes[:, j:j + 1] for j, t in enumerate(TIERS)},
               **{f"U_{t}": POOLS[t] for t in TIERS}}
    loss = np.where(n <= n_range[1], law.predict(theta, columns), np.inf)
    i, k = np.unravel_index(int(np.argmin(loss)), loss.shape)
    return mixes[i], float(n[i, k]), float(loss[i, k])


def true_optimum(law, theta: np.ndarray, caps) -> tuple[np.ndarray, float, float]:
    """Brute force: mixes in steps of 0.01 x 300 sizes from 1e3 to 1e8, then steps of 0.001 within
    0.02 of the best mix x 2,000 sizes within a factor 1.5 of its N: (mix, N, loss). Cached."""
    key = (law.name, tuple(theta.tolist()), tuple(caps.items()))
    if key not in _OPTIMA:
        _OPTIMA[key] = _brute_force(law, theta, caps)
    return _OPTIMA[key]


_OPTIMA: dict[tuple, tuple[np.ndarray, float, float]] = {}


def _brute_force(law, theta: np.ndarray, caps) -> tuple[np.ndarray, float, float]:
    k = 100
    coarse = np.array([(i, j, k - i - j) for i in range(k + 1) for j in range(k + 1 - i)], float) / k
    w, n, _ = _grid_best(law, theta, coarse, caps, (1e3, 1e8), 300)
    steps = np.arange(-20, 21) / 1000
    fine = np.array([(w[0] + a, w[1] + b, 1 - w[0] - a - w[1] - b) for a in steps for b in steps])
    return _grid_best(law, theta, fine[np.all(fine >= 0, axis=1)], caps, (n / 1.5, n * 1.5), 2000)


def true_loss(law, theta: np.ndarray, rec) -> float:
    return float(law.predict(theta, {"N": rec.n_params, "D": rec.tokens, **{f"w_{t}": rec.mix[t] for t in TIERS},
                                     **{f"U_{t}": POOLS[t] for t in TIERS}}))


def l1(mix: dict[str, float], w: np.ndarray) -> float:
    return float(sum(abs(mix[t] - w[j]) for j, t in enumerate(TIERS)))


@pytest.fixture(scope="module")
def ye_case():
    data = sweep(YE_LAW, YE_TRUTH, seed=0)
    return data, recommend_mixture(data, BUDGET, epoch_cap=CAPPED, n_bootstrap=N_BOOTSTRAP, seed=0)


@pytest.fixture(scope="module")
def regmix_case():
    data = sweep(REGMIX_LAW, REGMIX_TRUTH, seed=1)
    return data, recommend_mixture(data, BUDGET, epoch_cap=UNCAPPED, n_bootstrap=N_BOOTSTRAP, seed=0)


@pytest.mark.parametrize(("law", "theta", "caps"), [(YE_LAW, YE_TRUTH, CAPPED), (YE_LAW, YE_TRUTH, UNCAPPED),
                                                    (REGMIX_LAW, REGMIX_TRUTH, CAPPED), (REGMIX_LAW, REGMIX_TRUTH, UNCAPPED)])
def test_the_search_finds_the_brute_force_optimum_of_a_known_law(law, theta, caps) -> None:
    w_true, n_true, loss_true = true_optimum(law, theta, caps)
    w, n, loss = optimise_mix(law, theta, BUDGET, TIERS, POOLS, caps, Compute(SIX_ND))
    assert np.abs(w - w_true).sum() < 0.02 and abs(math.log(n / n_true)) < 0.02
    assert loss <= loss_true + 1e-5
    d = BUDGET / (6 * n)
    assert all(caps[t] is None or w[j] * d <= caps[t] * POOLS[t] * (1 + 1e-9) for j, t in enumerate(TIERS))


def test_capped_truth_ye_the_mix_is_near_the_true_optimum_and_the_interval_covers(ye_case) -> None:
    data, rec = ye_case
    w_true, _, loss_true = true_optimum(YE_LAW, YE_TRUTH, CAPPED)
    assert rec.epochs["clean"] == pytest.approx(4.0, rel=1e-3)  # the cap binds, as it does at the true optimum
    assert l1(rec.mix, w_true) <= 0.05
    assert sum(rec.mix.values()) == pytest.approx(1.0)
    assert all(rec.epochs[t] <= 4.0 * (1 + 1e-9) for t in TIERS)
    truth = true_loss(YE_LAW, YE_TRUTH, rec)
    assert truth - loss_true < 1e-3  # the recommended run's true loss is within 0.001 nats of the best possible
    assert rec.loss_interval_95[0] <= truth <= rec.loss_interval_95[1]
    assert rec.loss_interval_95[0] <= rec.loss_interval_80[0] < rec.loss_interval_80[1] <= rec.loss_interval_95[1]
    assert rec.extrapolation == pytest.approx(4.0)


def test_capped_truth_ye_the_choice_keeps_the_true_form_or_one_as_good(ye_case) -> None:
    _, rec = ye_case
    rows = {c["law"]: c for c in rec.candidates}
    assert set(rows) == {"ye", "regmix", "quality"}
    truth = rows["ye"]
    assert rec.law == "ye" or truth["gap_to_best_pct"] <= truth["gap_se_pct"]  # the true form is within noise of the best
    assert all(c["cv_error_pct"] > 0 for c in rows.values())


def test_uncapped_truth_regmix_is_chosen_and_its_interior_optimum_found(regmix_case) -> None:
    _, rec = regmix_case
    rows = {c["law"]: c for c in rec.candidates}
    assert rec.law == "regmix"  # the clear case: neither other form has the tiers' interactions
    assert all(r["gap_to_best_pct"] > r["gap_se_pct"] for name, r in rows.items() if name != "regmix")  # beyond the noise
    w_true, _, _ = true_optimum(REGMIX_LAW, REGMIX_TRUTH, UNCAPPED)
    assert min(w_true) > 0.2  # interior: every tier in the true optimum
    assert l1(rec.mix, w_true) <= 0.05
    assert rec.epochs["clean"] > 4  # uncapped: the clean pool is read many times, charged by R_D*
    truth = true_loss(REGMIX_LAW, REGMIX_TRUTH, rec)
    assert rec.loss_interval_95[0] <= truth <= rec.loss_interval_95[1]


def test_the_answer_beats_single_tiers_and_names_next_mixes(ye_case, regmix_case) -> None:
    for data, rec in (ye_case, regmix_case):
        singles = {s["tier"]: s["loss"] for s in rec.single_tiers}
        assert rec.best_single_tier == min(singles, key=singles.get)
        assert rec.loss < singles[rec.best_single_tier]
        assert rec.p_beats_best_single >= 0.9  # in both truths the best mix beats every tier by far more than the noise
        assert len(rec.next_mixes) == 3
        largest = int(np.argmax(data.columns["C"]))
        for m in rec.next_mixes:
            assert m["n_params"] == data.columns["N"][largest] and m["tokens"] == data.columns["D"][largest]
            assert sum(m["mix"].values()) == pytest.approx(1.0) and m["spread_95"] > 0 and m["reason"]
        mixes = [np.array(list(m["mix"].values())) for m in rec.next_mixes]
        assert all(np.abs(a - b).sum() >= 0.1 - 1e-9 for i, a in enumerate(mixes) for b in mixes[i + 1:])
        text = rec.text()
        assert "4x the largest fitted run" in text and "P(the mix beats the best single tier)" in text
        payload = json.loads(json.dumps(rec.to_json()))
        assert payload["mix"] == rec.mix and payload["extrapolation"] == pytest.approx(4.0)


def test_folds_hold_out_whole_mixes_and_are_seeded() -> None:
    data = sweep(YE_LAW, YE_TRUTH, seed=0)
    labels = mix_labels(data, TIERS)
    folds = mix_folds(labels, 5, seed=3)
    assert np.array_equal(folds, mix_folds(labels, 5, seed=3))
    assert not np.array_equal(folds, mix_folds(labels, 5, seed=4))
    for label in set(labels.tolist()):
        assert len(set(folds[labels == label].tolist())) == 1  # every run of a mix in one fold
    assert sorted(np.bincount(folds).tolist()) == [16, 16, 16, 16, 16]  # 20 mixes of 4 runs dealt to 5 folds


def _table(tmp_path) -> tuple[str, list[str]]:
    data = sweep(YE_LAW, YE_TRUTH, seed=2)
    path = tmp_path / "mix.csv"
    pl.DataFrame({"params": data.columns["N"], "tokens": data.columns["D"], "loss": data.loss,
                  **{f"share_{t}": data.columns[f"w_{t}"] for t in TIERS}}).write_csv(path)
    flags = ["--table", str(path), "--n", "params", "--d", "tokens", "--loss", "loss", "--budget", f"{BUDGET:g}"]
    flags += [f for t in TIERS for f in ("--weight", f"{t}=share_{t}", "--pool", f"{t}={POOLS[t]:g}")]
    return str(path), flags


def test_the_table_reader_refuses_weights_that_do_not_sum_to_one(tmp_path) -> None:
    path, _ = _table(tmp_path)
    with pytest.raises(FitDataError, match="sum to"):
        load_mixture_table(path, n="params", d="tokens", loss="loss", weight={"clean": "share_clean", "raw": "share_raw"},
                           pool={"clean": 1e6, "raw": 1e7})


def test_cli_table_json_and_one_line_errors(tmp_path) -> None:
    _, flags = _table(tmp_path)
    result = CliRunner().invoke(app, ["mix", *flags, "--law", "ye", "--folds", "2", "--bootstrap", "16", "--json"])
    assert result.exit_code == 0, (result.stderr, result.exception)
    out = json.loads(result.stdout)
    assert out["law"] == "ye" and set(out["mix"]) == set(TIERS) and out["extrapolation"] == pytest.approx(4.0)
    assert out["loss_interval_95"][0] < out["loss"] < out["loss_interval_95"][1]
    for bad, expected in ((["--weight", "raw"], "error: --weight 'raw': expected TIER=COLUMN"),
                          (["--weight", "raw=nope"], "--weight raw=nope: no such column"),
                          (["--pool", "raw=lots"], "error: --pool raw=lots: expected TIER=TOKENS"),
                          (["--epoch-cap", "gold=2"], "--epoch-cap gold: not a tier of the runs"),
                          (["--law", "best"], "error: --law best: expected one of")):
        result = CliRunner().invoke(app, ["mix", *_replaced(flags, bad)])
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and expected in lines[0], (bad, result.stderr, result.exception)


def _replaced(flags: list[str], bad: list[str]) -> list[str]:
    """`flags` with the value of bad[0] for bad[1]'s tier replaced by bad[1], or bad appended."""
    out, tier = list(flags), bad[1].partition("=")[0]
    for i, flag in enumerate(out[:-1]):
        if flag == bad[0] and out[i + 1].partition("=")[0] == tier:
            out[i + 1] = bad[1]
            return out
    return out + bad
