"""Laws written once: NumPy and JAX agree, the recommendation and the report evaluate the same
law, the quality law's reference tier is explicit, one percentile interval; the group-E, Kaplan,
over-training and broken laws match their papers' formulas and recover themselves in a fit."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaler.fitting import laws
from scaler.fitting.compute import SIX_ND, Compute
from scaler.fitting.fitter import FitResult, estimate
from scaler.fitting.stats import percentile_interval
from scaler.decision import LawSamples, TierOption
from scaler.decision.search import _loss

BASE = (math.log(482.01), math.log(2085.43), math.log(1.8172), 0.3478, 0.3658)
TIERS = ("clean", "raw", "best")  # the reference tier "raw" is not listed first on purpose


@pytest.fixture
def x64() -> Iterator[None]:
    """float64 in JAX for this test only, as the fitter does (jax.enable_x64 context)."""
    with jax.enable_x64(True):
        yield


def every_law() -> list[laws.Law]:
    out = [laws.chinchilla(), laws.data_constrained(), laws.data_constrained(base=BASE), laws.mixing(("web", "code"))]
    for pools in (False, True):
        for e_shift in (False, True):
            out.append(laws.quality(TIERS, reference="raw", pools=pools, e_shift=e_shift))
    out.append(laws.quality(TIERS, reference="raw", pools=True, e_shift=True, base=BASE))
    out += [laws.chinchilla_group_e(("web", "code", "math")), laws.kaplan(), laws.overtrain(), laws.broken()]
    return out


def random_theta(law: laws.Law, rng: np.random.Generator) -> np.ndarray:
    """Valid parameters: each name drawn from a range where the law is finite."""
    ranges = {"a": (4.0, 8.0), "b": (4.0, 8.0), "e": (0.0, 1.0), "alpha": (0.2, 0.6), "beta": (0.2, 0.6),
              "log_R": (0.0, 4.0), "log_kappa": (-0.5, 1.0), "de": (-0.1, 0.1), "log_c": (-1.0, 1.0),
              "log_k": (-2.0, 0.0), "t": (-2.0, 2.0), "log_N_c": (28.0, 34.0), "log_D_c": (28.0, 34.0),
              "alpha_N": (0.05, 0.1), "alpha_D": (0.08, 0.12), "log_a": (4.0, 8.0), "log_b": (4.0, 8.0),
              "log_E": (0.0, 1.0), "eta": (0.05, 0.2), "c": (0.1, 0.2), "log_N_b": (16.0, 21.0),
              "delta_alpha": (-0.2, 0.2)}
    theta = []
    for name in law.param_names:
        key = next(k for k in sorted(ranges, key=len, reverse=True) if name == k or name.startswith(k + "_"))
        theta.append(rng.uniform(*ranges[key]))
    return np.array(theta)


def random_data(law: laws.Law, rng: np.random.Generator, rows: int = 64) -> dict[str, np.ndarray]:
    """Rows that repeat data and rows that do not (U below and above D), mixes summing to 1."""
    data: dict[str, np.ndarray] = {}
    weight_columns = [c for c in law.columns if c.startswith("w_")]
    if weight_columns:
        weights = rng.dirichlet(np.ones(len(weight_columns)), size=rows)
        weights[:4] = np.eye(len(weight_columns))[np.arange(4) % len(weight_columns)]  # pure tiers too
        data.update({c: weights[:, j] for j, c in enumerate(weight_columns)})
    for c in law.columns:
        if c == "N":
            data[c] = 10 ** rng.uniform(6, 10, rows)
        elif c == "D":
            data[c] = 10 ** rng.uniform(8, 12, rows)
        elif c == "U" or c.startswith("U_"):
            data[c] = 10 ** rng.uniform(7, 11, rows)
    return data


@pytest.mark.parametrize("law", every_law(), ids=lambda law: f"{law.name}:{law.n_params}")
def test_numpy_and_jax_agree(law: laws.Law, x64: None) -> None:
    rng = np.random.default_rng(len(law.param_names))
    for _ in range(5):
        theta, data = random_theta(law, rng), random_data(law, rng)
        with_numpy = law.predict_log(theta, data, np)
        with_jax = law.predict_log(jnp.asarray(theta), {k: jnp.asarray(v) for k, v in data.items()}, jnp)
        assert isinstance(with_numpy, np.ndarray) and with_jax.dtype == jnp.float64
        assert np.all(np.isfinite(with_numpy))
        np.testing.assert_allclose(np.exp(np.asarray(with_jax)), law.predict(theta, data), rtol=1e-12, atol=0)
        np.testing.assert_allclose(np.asarray(with_jax), with_numpy, rtol=1e-12, atol=0)


def test_the_default_namespace_is_jax_for_the_fitter(x64: None) -> None:
    law = laws.chinchilla()
    data = {"N": jnp.array([1e8, 1e9]), "D": jnp.array([1e10, 1e11])}
    grad = jax.grad(lambda theta: jnp.sum(law.predict_log(theta, data)))(jnp.asarray(BASE))
    assert grad.shape == (5,) and bool(jnp.all(jnp.isfinite(grad)))


def test_predict_in_numpy_never_imports_jax() -> None:
    code = ("import sys, numpy as np; from scaler.fitting import laws; "
            "law = laws.quality(['clean', 'raw'], reference='raw', pools=True); "
            "data = {'N': np.array([1e8]), 'D': np.array([1e10]), 'w_clean': np.array([0.5]), "
            "'w_raw': np.array([0.5]), 'U_clean': np.array([1e9]), 'U_raw': np.array([1e9])}; "
            "p = law.predict(np.array([5.0, 6.0, 0.5, 0.3, 0.3, 0.2, 1.0]), data); "
            "assert np.isfinite(p).all(); sys.exit(1 if 'jax' in sys.modules else 0)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_repeated_tokens_is_muennighoff_eq5() -> None:
    u, r_star = 1e9, 15.4
    d = np.array([0.5e9, 1e9, 4e9, 1e12])
    expected = np.where(d <= u, d, u + u * r_star * (1 - np.exp(-(d / u - 1) / r_star)))
    np.testing.assert_allclose(laws.repeated_tokens(d, u, r_star, xp=np), expected, rtol=1e-14)
    assert laws.repeated_tokens(1e11, u, r_star, xp=np) < u * (1 + r_star)  # saturates at U (1 + R*)
    assert laws.repeated_tokens(1e15, u, r_star, xp=np) == pytest.approx(u * (1 + r_star))


def test_chinchilla_log_loss_and_allocation() -> None:
    a, b, e, alpha, beta = BASE
    n, d = np.array([1e8, 3e9]), np.array([2e10, 6e10])
    direct = math.exp(e) + math.exp(a) / n**alpha + math.exp(b) / d**beta
    np.testing.assert_allclose(np.exp(laws.chinchilla_log_loss(a, b, e, alpha, beta, np.log(n), np.log(d), xp=np)),
                               direct, rtol=1e-14)
    flops = np.array([1e20, 1e22])
    n_opt, d_opt = laws.chinchilla_allocation(a, b, alpha, beta, flops)
    np.testing.assert_allclose(6 * n_opt * d_opt, flops, rtol=1e-12)
    assert laws.chinchilla_allocation(a, b, alpha, beta, 1e22) == (n_opt[1], d_opt[1])
    # the optimum: the loss along 6 N D = C is smallest at N_opt
    ns = n_opt[1] * np.array([0.9, 1.0, 1.1])
    along = laws.chinchilla_log_loss(a, b, e, alpha, beta, np.log(ns), np.log(1e22 / (6 * ns)), xp=np)
    assert np.argmin(along) == 1
    assert laws.chinchilla_allocation(a, b, -0.1, beta, 1e22) is None
    assert laws.allocation_exponents(alpha, beta) == pytest.approx((beta / (alpha + beta), alpha / (alpha + beta)))


def test_quality_reference_is_explicit() -> None:
    law = laws.quality(["web-clean", "web"], reference="web")
    assert law.param_names[5:] == ("log_kappa_web-clean",)
    theta = np.array([*BASE, math.log(2.0)])
    assert law.derived(theta)["kappa_web"] == 1.0 and law.derived(theta)["kappa_web-clean"] == pytest.approx(2.0)
    assert law.spec["reference"] == "web" and "kappa_web = 1" in law.description
    # the order of the tiers does not matter, only the reference does
    swapped = laws.quality(["web", "web-clean"], reference="web")
    assert swapped.param_names == law.param_names
    rng = np.random.default_rng(0)
    w = rng.uniform(0, 1, 16)
    data = {"N": 10 ** rng.uniform(7, 9, 16), "D": 10 ** rng.uniform(9, 11, 16), "w_web": w, "w_web-clean": 1 - w}
    np.testing.assert_allclose(swapped.predict(theta, data), law.predict(theta, data), rtol=1e-14)
    # a run on the reference tier alone is the Chinchilla law
    pure = dict(data, **{"w_web": np.ones(16), "w_web-clean": np.zeros(16)})
    np.testing.assert_allclose(law.predict(theta, pure), laws.chinchilla().predict(np.array(BASE), data), rtol=1e-14)
    with pytest.raises(ValueError, match=r"reference tier 'raw' is not among the tiers \['web-clean', 'web'\]"):
        laws.quality(["web-clean", "web"])


def test_spec_rebuilds_the_law_from_fit_json() -> None:
    for law in every_law():
        spec = json.loads(json.dumps(law.spec))
        assert laws.law_from_spec(spec) is law
    with pytest.raises(ValueError, match="unknown family"):
        laws.law_from_spec({"family": "kaplan2020"})
    with pytest.raises(ValueError, match="reference"):
        laws.law_from_spec({"family": "quality", "tiers": ["a", "b"], "reference": "c"})
    law = laws.quality(TIERS, reference="raw", pools=True)
    result = FitResult(law=law.name, theta=np.zeros(law.n_params), params={}, derived={}, objective=0.0,
                       n_points=10, converged=True, grad_norm=0.0, iterations=1, stopped="converged", spec=dict(law.spec))
    saved = json.loads(json.dumps(result.to_json()))
    assert saved["spec"]["reference"] == "raw" and saved["spec"]["tiers"] == list(TIERS)


def test_recommend_loss_is_the_law() -> None:
    """recommend's loss of a run on one tier, over bootstrap samples (S,) against a grid (S, K),
    is the quality law's `predict` of that run (pools, E shift), and the Chinchilla law's where
    nothing repeats."""
    rng = np.random.default_rng(3)
    law = laws.quality(["raw", "clean"], reference="raw", pools=True, e_shift=True)
    theta = np.array([*BASE, 0.2, math.log(8.0), 0.02])
    thetas = theta + 0.02 * rng.normal(size=(32, theta.size))
    tiers = [TierOption("raw"), TierOption("clean")]
    p = LawSamples.of(law, thetas, tiers)
    flops, pool = 1e21, 3e9
    log_n = np.log(np.geomspace(1e7, 1e11, 40))[None, :] + np.zeros((32, 1))
    n = np.exp(log_n)
    for tier in ("raw", "clean"):
        data = {"N": n, "D": flops / (6 * n), "U_raw": np.full_like(n, pool), "U_clean": np.full_like(n, pool),
                "w_raw": np.full_like(n, float(tier == "raw")), "w_clean": np.full_like(n, float(tier == "clean"))}
        expected = law.predict(thetas.T[:, :, None], data)  # (P, S, 1) against (S, K)
        assert (data["D"] > pool).any() and (data["D"] < pool).any()  # repeated and fresh runs
        np.testing.assert_allclose(_loss(log_n, flops, pool, p, tier, Compute(SIX_ND)), expected, rtol=1e-12)
    chin = laws.chinchilla()
    p = LawSamples.of(chin, thetas[:, :5], [TierOption("raw")])
    data = {"N": n, "D": flops / (6 * n)}
    np.testing.assert_allclose(_loss(log_n, flops, 1e30, p, "raw", Compute(SIX_ND)), chin.predict(thetas[:, :5].T[:, :, None], data),
                               rtol=1e-12)


def test_percentile_interval() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(500, 3))
    lo, hi = percentile_interval(x, 0.9)
    np.testing.assert_allclose(lo, np.percentile(x, 5, axis=0), rtol=1e-12)
    np.testing.assert_allclose(hi, np.percentile(x, 95, axis=0), rtol=1e-12)
    col = np.append(x[:, 0], [np.nan, np.inf, -np.inf])
    assert percentile_interval(col) == pytest.approx((np.percentile(x[:, 0], 2.5), np.percentile(x[:, 0], 97.5)))
    assert all(math.isnan(v) for v in percentile_interval(np.array([np.nan])))
    assert all(math.isnan(v) for v in percentile_interval(np.array([])))
    with pytest.raises(ValueError, match="level"):
        percentile_interval(x, 95)


def test_kaplan_is_eq_1_5() -> None:
    """Kaplan et al. 2020 eq. (1.5) at their published constants, evaluated directly."""
    law = laws.kaplan()
    n_c, d_c, alpha_n, alpha_d = 6.4e13, 1.8e13, 0.076, 0.103
    theta = np.array([math.log(n_c), math.log(d_c), alpha_n, alpha_d])
    n, d = np.array([1e6, 1e8, 1.5e9, 1e11]), np.array([1e7, 3e9, 3e10, 1e12])
    direct = ((n_c / n) ** (alpha_n / alpha_d) + d_c / d) ** alpha_d
    np.testing.assert_allclose(law.predict(theta, {"N": n, "D": d}), direct, rtol=1e-12)
    assert 2.0 < direct[2] < 3.5  # a GPT-2-sized model: a loss of a few nats, as in their Fig. 1
    assert law.derived(theta)["N_c"] == pytest.approx(n_c) and law.allocation(theta, 1e21) is None


def test_overtrain_is_gadre_eq() -> None:
    """L(C, M) = E + (a M^eta + b M^-eta) C^-c with C = 6 N D, M = D / N; c = eta is the paper's
    special case, a Chinchilla law with alpha = beta = 2 eta."""
    law = laws.overtrain()
    a, b, e, eta, c = 900.0, 400.0, 1.7, 0.12, 0.16
    theta = np.array([math.log(a), math.log(b), math.log(e), eta, c])
    n, d = np.array([1e6, 3e7, 1e9]), np.array([2e7, 6e8, 2e11])
    flops, m = 6 * n * d, d / n
    direct = e + (a * m**eta + b * m**-eta) * flops**-c
    np.testing.assert_allclose(law.predict(theta, {"N": n, "D": d}), direct, rtol=1e-12)
    tied = np.array([math.log(a), math.log(b), math.log(e), eta, eta])
    chin = np.array([math.log(a * 6**-eta), math.log(b * 6**-eta), math.log(e), 2 * eta, 2 * eta])
    np.testing.assert_allclose(law.predict(tied, {"N": n, "D": d}),
                               laws.chinchilla().predict(chin, {"N": n, "D": d}), rtol=1e-12)
    # at fixed C the loss is smallest at M_opt tokens per parameter, whichever sign eta has
    m_opt = law.derived(theta)["M_opt"]
    mirror = np.array([math.log(b), math.log(a), math.log(e), -eta, c])
    assert law.derived(mirror)["M_opt"] == pytest.approx(m_opt, rel=1e-12)
    np.testing.assert_allclose(law.predict(mirror, {"N": n, "D": d}), direct, rtol=1e-12)
    ms = m_opt * np.array([0.8, 1.0, 1.25])
    ns = np.sqrt(1e20 / (6 * ms))
    assert np.argmin(law.predict(theta, {"N": ns, "D": ms * ns})) == 1


def test_broken_and_group_e_reduce_to_chinchilla() -> None:
    rng = np.random.default_rng(8)
    a, b, e, alpha, beta = BASE
    data = {"N": 10 ** rng.uniform(6, 9, 20), "D": 10 ** rng.uniform(7, 11, 20)}
    chin = laws.chinchilla().predict(np.array(BASE), data)
    far = np.array([*BASE, math.log(1e40), 0.3])  # N_b -> inf
    np.testing.assert_allclose(laws.broken().predict(far, data), chin, rtol=1e-12)
    # past the break the N exponent is alpha + delta_alpha: the N term's log-slope
    n = np.array([1e14, 1e15])
    log_term = laws.broken().predict_log(np.array([a, -50.0, -50.0, alpha, beta, math.log(1e8), 0.2]),
                                         {"N": n, "D": np.full(2, 1e10)}, np)
    assert -np.diff(log_term)[0] / math.log(10) == pytest.approx(alpha + 0.2, rel=1e-6)
    law = laws.chinchilla_group_e(("web", "code"))
    assert law.param_names == ("a", "b", "alpha", "beta", "e_web", "e_code")
    theta = np.array([a, b, alpha, beta, e, e - 0.1])
    web = dict(data, w_web=np.ones(20), w_code=np.zeros(20))
    np.testing.assert_allclose(law.predict(theta, web), chin, rtol=1e-12)
    derived = law.derived(theta)
    assert derived["E_code"] == pytest.approx(math.exp(e - 0.1)) and "E" not in derived
    assert {"A", "B", "alpha", "beta", "a_exponent", "b_exponent"} <= set(derived)
    with pytest.raises(ValueError, match="distinct group names"):
        laws.chinchilla_group_e(["web", "web"])


GROUPS = ("web", "code", "math")
RECOVERY = {
    "chinchilla_group_e": (np.array([math.log(400.0), math.log(2000.0), 0.34, 0.37,
                                     math.log(1.8), math.log(1.5), math.log(2.1)]), ("alpha", "beta")),
    "kaplan": (np.array([math.log(6.4e13), math.log(1.8e13), 0.076, 0.103]), ("alpha_N", "alpha_D")),
    "overtrain": (np.array([7.0, 6.5, math.log(1.8), 0.12, 0.16]), ("eta", "c")),
    "broken": (np.array([math.log(400.0), math.log(2000.0), math.log(1.8), 0.3, 0.37, math.log(1e8), 0.15]),
               ("alpha", "beta", "delta_alpha")),
}


@pytest.mark.parametrize("name", sorted(RECOVERY))
def test_new_laws_recover_themselves(name: str) -> None:
    """120 noise-free rows of the law's own form (N 1e6..1e9, 2..200 tokens per parameter), the
    full start grid: the predictions come back to < 0.1%, the exponents roughly."""
    law = laws.chinchilla_group_e(GROUPS) if name == "chinchilla_group_e" else laws.LAWS[name]()
    truth, exponents = RECOVERY[name]
    rng = np.random.default_rng(12)
    rows = 120
    n = 10 ** rng.uniform(6, 9, rows)
    data = {"N": n, "D": n * 10 ** rng.uniform(math.log10(2), math.log10(200), rows)}
    group = rng.integers(0, len(GROUPS), rows)
    data.update({f"w_{g}": (group == j).astype(float) for j, g in enumerate(GROUPS)})
    loss = law.predict(truth, data)
    r = estimate(law, data, loss)
    assert r.converged, r.stopped
    assert np.max(np.abs(law.predict(r.theta, data) / loss - 1)) < 1e-3
    for k in exponents:  # overtrain: (eta, a, b) and (-eta, b, a) are the same law
        fitted = abs(r.params[k]) if k == "eta" else r.params[k]
        assert abs(fitted - truth[law.param_names.index(k)]) < 0.02, (k, r.params)
    if name == "overtrain":
        assert r.derived["M_opt"] == pytest.approx(law.derived(truth)["M_opt"], rel=1e-3)
    spec = json.loads(json.dumps(law.spec))
    assert laws.law_from_spec(spec) is law and law.allocation(r.theta, 1e21) is None
