"""Scaling-law fitter: published anchors (docs/design.md §8), synthetic recovery, coverage, errors,
the asymmetric (lower-envelope) objective and the cluster bootstrap."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from scaler.fitting.fitter import _cluster_counts, asymmetric_huber, bootstrap, estimate, huber, objective
from scaler.fitting.laws import LAWS, chinchilla, chinchilla_allocation, data_constrained, mixing, quality

ANCHORS = Path(__file__).resolve().parents[1] / "anchors"  # the repository's copy of the public data
CHIN = ANCHORS / "chinchilla" / "svg_extracted_data.csv"
DATABL = ANCHORS / "datablations" / "muennighoff2023_fit182.csv"

BASE = (6.255414, 7.3049974, 0.6254804, 0.3526596, 0.3526596)  # Muennighoff et al. 2023, cell 29


def chinchilla_rows() -> tuple[dict[str, np.ndarray], np.ndarray]:
    df = pl.read_csv(CHIN).sort("loss").head(240)  # Epoch drops the 5 highest-loss rows
    n = df["Model Size"].to_numpy()
    return {"N": n, "D": df["Training FLOP"].to_numpy() / (6 * n)}, df["loss"].to_numpy()


def datablations_rows() -> tuple[dict[str, np.ndarray], np.ndarray]:
    df = pl.read_csv(DATABL)
    cols = {"N": df["N_params"].to_numpy(), "D": df["D_tokens"].to_numpy(), "U": df["U_unique_tokens"].to_numpy()}
    return {k: v.astype(np.float64) for k, v in cols.items()}, df["val_loss"].to_numpy()


@pytest.fixture(scope="module")
def chin_fit():
    data, loss = chinchilla_rows()
    return data, loss, estimate(chinchilla(), data, loss)


def test_chinchilla_refit_matches_epoch(chin_fit):
    _, _, r = chin_fit
    assert r.n_points == 240
    assert abs(r.objective - 1.01827e-3) < 1e-7
    assert abs(r.derived["E"] - 1.8172) < 1e-3
    assert abs(r.derived["alpha"] - 0.3473) < 1e-3
    assert abs(r.derived["beta"] - 0.3672) < 1e-3
    assert abs(r.derived["A"] - 477.8) / 477.8 < 2e-3
    assert abs(r.derived["B"] - 2143) / 2143 < 2e-3
    assert r.converged and r.grad_norm < 1e-6, (r.stopped, r.grad_norm)
    json.dumps(r.to_json())


def test_chinchilla_bootstrap_standard_errors(chin_fit):
    data, loss, r = chin_fit
    # 1,000 resamples: the SE of an SE from n resamples is ~SE/sqrt(2n) (2% here), so a 10%
    # tolerance holds; with a few hundred it would not for alpha (ours sits ~5% below Epoch's).
    rb = bootstrap(chinchilla(), data, loss, r, n=1000, seed=0, budgets=[1e21, 1e24])
    epoch = {"alpha": 0.0154, "beta": 0.0206, "E": 0.0257}
    for k, v in epoch.items():
        assert abs(rb.standard_errors[k] - v) / v < 0.10, (k, rb.standard_errors[k], v)
    assert rb.bootstrap_theta.shape == (1000, 5)
    for k in ("a", "b", "e", "alpha", "beta", "E", "A", "B", "a_exponent", "b_exponent", "N_opt@1e+21", "D_opt@1e+24"):
        lo, hi = rb.intervals[k]
        assert lo < hi
    lo, hi = rb.intervals["alpha"]
    assert lo < r.params["alpha"] < hi
    assert rb.bootstrap_converged > 0.95
    json.dumps(rb.to_json())


def test_allocation_closed_form():
    rng = np.random.default_rng(1)
    for _ in range(50):
        a, b = rng.uniform(2, 10, 2)
        al, be = rng.uniform(0.1, 0.8, 2)
        C = 10 ** rng.uniform(15, 26)
        n_opt, d_opt = chinchilla_allocation(a, b, al, be, C)
        assert math.isclose(6 * n_opt * d_opt, C, rel_tol=1e-12)
        # it is the minimum of the loss along C = 6 N D
        law = chinchilla()
        th = np.array([a, b, 0.5, al, be])
        ns = n_opt * np.array([0.9, 1.0, 1.1])
        pred = law.predict(th, {"N": ns, "D": C / (6 * ns)})
        assert pred[1] <= pred[0] and pred[1] <= pred[2]
    assert chinchilla().allocation(np.array([5, 5, 0, 0.0, 0.3]), 1e20) is None


def test_datablations_objective_and_flat_rstar():
    data, loss = datablations_rows()
    law = data_constrained(base=BASE)
    assert law is data_constrained(base=BASE)  # cached: one compiled solver
    theta = np.log([15.387756, 5.309743])
    assert abs(objective(law, theta, data, loss) - 0.0158259) < 1e-7
    r = estimate(law, data, loss)
    assert r.objective <= 0.0158259 + 1e-7
    assert r.converged
    rb = bootstrap(law, data, loss, r, n=200, seed=0)
    lo, hi = rb.intervals["R_N_star"]
    # The R* surface is flat (docs/design.md §8): the fitted R_N* is poorly pinned down.
    assert hi / lo > 1.5 or r.flat_directions, (rb.intervals, r.flat_directions)


def synthetic_chinchilla(rng: np.random.Generator, sigma: float = 0.01):
    theta = np.array([math.log(400.0), math.log(2000.0), math.log(1.8), 0.34, 0.37])
    n = np.repeat(np.logspace(7, 9.5, 8), 8)
    d = np.tile(np.logspace(8.5, 11, 8), 8)
    data = {"N": n, "D": d}
    loss = chinchilla().predict(theta, data) * np.exp(rng.normal(0, sigma, n.size))
    return theta, data, loss


def test_synthetic_recovery():
    rng = np.random.default_rng(3)
    theta, data, loss = synthetic_chinchilla(rng, sigma=0.003)
    r = estimate(chinchilla(), data, loss)
    assert r.converged
    assert abs(r.params["alpha"] - 0.34) < 0.02 and abs(r.params["beta"] - 0.37) < 0.02
    assert abs(r.derived["E"] - 1.8) < 0.03


def test_bootstrap_interval_coverage():
    """40 synthetic draws x 200 resamples: the 95% percentile interval covers the truth ~95%."""
    rng = np.random.default_rng(7)
    law = chinchilla()
    starts = law.start_grid()[::150]  # 30 grid starts; the full grid is tested above
    hits = {"alpha": 0, "beta": 0}
    draws = 40
    for i in range(draws):
        theta, data, loss = synthetic_chinchilla(rng, sigma=0.01)
        truth = dict(zip(law.param_names, theta))
        r = estimate(law, data, loss, starts=np.vstack([starts, theta + 0.05]))
        rb = bootstrap(law, data, loss, r, n=200, seed=i, near_starts=0)
        for k in hits:
            lo, hi = rb.intervals[k]
            hits[k] += lo <= truth[k] <= hi
    for k, h in hits.items():
        assert 0.85 * draws <= h <= draws, (k, h)


def test_quality_recovers_multipliers():
    rng = np.random.default_rng(11)
    tiers = ("raw", "clean", "best")
    law = quality(tiers, reference="raw")
    assert law.param_names == ("a", "b", "e", "alpha", "beta", "log_kappa_clean", "log_kappa_best")
    truth = np.array([math.log(400.0), math.log(2000.0), math.log(1.8), 0.34, 0.37, math.log(2.0), math.log(4.0)])
    m = 120
    w = rng.dirichlet(np.ones(3), size=m)
    w[:20] = np.eye(3)[rng.integers(0, 3, 20)]
    data = {"N": 10 ** rng.uniform(7, 9.5, m), "D": 10 ** rng.uniform(8.5, 11, m)}
    data.update({f"w_{t}": w[:, j] for j, t in enumerate(tiers)})
    loss = law.predict(truth, data) * np.exp(rng.normal(0, 0.002, m))
    r = estimate(law, data, loss)
    assert r.converged, r.stopped
    assert abs(r.derived["kappa_clean"] - 2.0) / 2.0 < 0.1, r.derived
    assert abs(r.derived["kappa_best"] - 4.0) / 4.0 < 0.1, r.derived
    # the E-shift variant fits the same data (no shift in the truth)
    lawe = quality(tiers, reference="raw", e_shift=True)
    r2 = estimate(lawe, data, loss, starts=np.hstack([np.vstack([r.theta, truth]), np.zeros((2, 2))]))
    assert abs(r2.params["de_clean"]) < 0.05 and abs(r2.params["de_best"]) < 0.05
    # pools: a shared R_D*, repeated tiers
    lawp = quality(tiers, reference="raw", pools=True)
    truth_p = np.append(truth, math.log(10.0))
    data_p = dict(data, **{f"U_{t}": np.full(m, 2e9) for t in tiers})
    loss_p = lawp.predict(truth_p, data_p) * np.exp(rng.normal(0, 0.002, m))
    rp = estimate(lawp, data_p, loss_p, starts=np.vstack([np.append(r.theta, math.log(5.0)), np.append(truth, math.log(20.0))]))
    assert abs(rp.derived["kappa_best"] - 4.0) / 4.0 < 0.15, rp.derived


def test_mixing_law_recovery():
    rng = np.random.default_rng(5)
    law = mixing(("web", "code"))
    truth = np.array([math.log(1.5), math.log(0.8), -1.0, 0.5])
    w1 = rng.uniform(0, 1, 40)
    data = {"w_web": w1, "w_code": 1 - w1}
    loss = law.predict(truth, data) * np.exp(rng.normal(0, 0.001, 40))
    r = estimate(law, data, loss)
    pred = law.predict(r.theta, data)
    assert np.max(np.abs(np.log(pred / law.predict(truth, data)))) < 0.01
    assert set(LAWS) >= {"chinchilla", "data_constrained", "quality", "mixing"}


def test_errors():
    law = chinchilla()
    data = {"N": np.logspace(7, 9, 5), "D": np.logspace(9, 11, 5)}
    with pytest.raises(ValueError, match="too few points"):
        estimate(law, data, np.full(5, 3.0))
    data = {"N": np.logspace(7, 9, 10), "D": np.logspace(9, 11, 10)}
    bad = np.full(10, 3.0)
    bad[2] = 0.0
    with pytest.raises(ValueError, match="positive"):
        estimate(law, data, bad)
    bad[2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        estimate(law, data, bad)
    nan_d = dict(data, D=np.where(np.arange(10) == 3, np.nan, data["D"]))
    with pytest.raises(ValueError, match="NaN"):
        estimate(law, nan_d, np.full(10, 3.0))
    with pytest.raises(ValueError, match="missing"):
        estimate(law, {"N": data["N"]}, np.full(10, 3.0))


def test_huber_and_x64_stays_local():
    import jax.numpy as jnp

    r = jnp.array([0.0, 5e-4, -2e-3])
    np.testing.assert_allclose(np.asarray(huber(r)), [0.0, 1.25e-7, 1e-3 * (2e-3 - 5e-4)], rtol=1e-5)
    before = jnp.zeros(1).dtype
    data = {"N": np.logspace(7, 9, 10), "D": np.logspace(9, 11, 10)}
    estimate(chinchilla(), data, np.linspace(3, 2.5, 10), starts=chinchilla().start_grid()[:4])
    assert jnp.zeros(1).dtype == before


def test_asymmetric_objective_fits_the_lower_envelope():
    """The `chinchilla` toolkit's estimator (asymmetric MAE, w = 10, raw losses), Huber-smoothed:
    on the Chinchilla anchor it converges and lies below most observations. Our numbers:
    alpha 0.2935, beta 0.3756 (the toolkit reports ~0.295 / 0.379; Epoch's Huber 0.347 / 0.367)."""
    data, loss = chinchilla_rows()
    law = chinchilla()
    r = estimate(law, data, loss, objective="asymmetric")
    assert r.converged, (r.stopped, r.grad_norm)
    assert r.objective_name == "asymmetric" and r.asymmetry == 10.0
    residual = loss - law.predict(r.theta, data)  # L_obs - L_pred
    assert np.mean(residual >= 0) > 0.8
    assert abs(r.derived["alpha"] - 0.2935) < 5e-3 and abs(r.derived["beta"] - 0.3756) < 5e-3, r.derived
    assert objective(law, r.theta, data, loss, objective="asymmetric") == pytest.approx(r.objective, rel=1e-12)
    # a symmetric weight puts the law through the middle of the cloud instead
    symmetric = estimate(law, data, loss, objective="asymmetric", asymmetry=1.0)
    assert np.mean(loss - law.predict(symmetric.theta, data) >= 0) < 0.7
    saved = json.loads(json.dumps(r.to_json()))
    assert saved["objective_name"] == "asymmetric" and saved["asymmetry"] == 10.0 and "delta" in saved
    # the bootstrap refits under the result's own objective; another one is refused
    rb = bootstrap(law, data, loss, r, n=16, seed=0)
    assert rb.objective_name == "asymmetric" and rb.bootstrap_converged > 0.9
    assert rb.intervals["alpha"][0] < r.params["alpha"] < rb.intervals["alpha"][1]
    same = bootstrap(law, data, loss, r, n=16, seed=0, objective="asymmetric", asymmetry=10.0)
    np.testing.assert_array_equal(same.bootstrap_theta, rb.bootstrap_theta)
    with pytest.raises(ValueError, match="differs from the fit's"):
        bootstrap(law, data, loss, r, n=16, objective="huber")
    with pytest.raises(ValueError, match="differs from the fit's"):
        bootstrap(law, data, loss, r, n=16, asymmetry=2.0)
    with pytest.raises(ValueError, match="unknown objective"):
        estimate(law, data, loss, objective="mae")
    with pytest.raises(ValueError, match="asymmetry"):
        estimate(law, data, loss, objective="asymmetric", asymmetry=0.0)


def test_asymmetric_huber_weights():
    import jax.numpy as jnp

    r = jnp.array([2e-3, -2e-3, 5e-4, -5e-4])  # L_obs - L_pred
    expected = [1e-3 * 1.5e-3, 10 * 1e-3 * 1.5e-3, 1.25e-7, 10 * 1.25e-7]
    np.testing.assert_allclose(np.asarray(asymmetric_huber(r, 1e-3, 10.0)), expected, rtol=1e-5)


def test_huber_fit_records_its_objective(chin_fit):
    _, _, r = chin_fit
    assert r.objective_name == "huber" and r.asymmetry == 1.0 and r.bootstrap_clusters == 0
    saved = r.to_json()
    assert saved["objective_name"] == "huber" and saved["bootstrap_clusters"] == 0


def test_cluster_bootstrap_keeps_clusters_together():
    rng = np.random.default_rng(21)
    labels = np.repeat([f"cfg{i}" for i in range(32)], 2)  # two seeds per configuration
    rng.shuffle(labels)
    counts, k = _cluster_counts(labels, labels.size, 50, np.random.default_rng(0))
    assert k == 32 and counts.shape == (50, 64)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        np.testing.assert_array_equal(counts[:, rows[0]], counts[:, rows[1]])
    np.testing.assert_array_equal(counts.sum(axis=1), np.full(50, 64.0))  # 32 draws x 2 rows
    # a bootstrap over them: seed pairs of one configuration share N and D
    law = chinchilla()
    theta, grid, _ = synthetic_chinchilla(rng)
    pairs = np.arange(64) // 2
    data = {k: np.repeat(v[::2], 2) for k, v in grid.items()}
    loss = law.predict(theta, data) * np.exp(rng.normal(0, 0.01, 64))
    r = estimate(law, data, loss, starts=np.vstack([law.start_grid()[::150], theta]))
    rb = bootstrap(law, data, loss, r, n=100, seed=0, clusters=pairs)
    assert rb.bootstrap_clusters == 32 and rb.bootstrap_theta.shape[0] == 100
    for key in ("alpha", "beta", "E"):
        lo, hi = rb.intervals[key]
        assert lo < hi and math.isfinite(rb.standard_errors[key])
    same = bootstrap(law, data, loss, r, n=20, seed=4)
    again = bootstrap(law, data, loss, r, n=20, seed=4, clusters=None)
    assert np.array_equal(same.bootstrap_theta, again.bootstrap_theta)
    with pytest.raises(ValueError, match="one label per row"):
        bootstrap(law, data, loss, r, n=4, clusters=pairs[:10])
    with pytest.raises(ValueError, match="at least 2 clusters"):
        bootstrap(law, data, loss, r, n=4, clusters=np.zeros(64))
