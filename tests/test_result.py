"""Fit results read once (scaler/fitting/result.py): one law's entry and a sweep's fit.json answer
through the law's own formula, older entries still read, and what a fit cannot answer is one
PredictError that says why."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from scaler.fitting import laws
from scaler.fitting.compute import SIX_ND, Compute, allocate
from scaler.fitting.inputs import FitData, with_clusters
from scaler.fitting.pipeline import fit, fit_sweep
from scaler.fitting.result import LawFit, PredictError, SweepFit

THETA = np.array([math.log(406.4), math.log(410.7), math.log(1.69), 0.34, 0.28])


def _table(groups: bool = False) -> FitData:
    rng = np.random.default_rng(0)
    n = np.repeat(np.geomspace(1e6, 1e8, 6), 4)
    d = n * np.tile(np.geomspace(5, 80, 4), 6)
    loss = laws.chinchilla().predict(THETA, {"N": n, "D": d}) * np.exp(rng.normal(0, 0.002, len(n)))
    labels = None
    if groups:
        n, d, loss = np.tile(n, 2), np.tile(d, 2), np.concatenate([loss, 1.02 * loss])
        labels = np.repeat(["a", "b"], len(loss) // 2)
    return with_clusters(FitData("t", {"N": n, "D": d, "C": 6 * n * d}, loss, labels, compute=Compute(SIX_ND)))


def test_one_law_round_trips_and_answers_through_its_formula() -> None:
    fitted = fit(_table(), "chinchilla", 20, 0)
    assert isinstance(fitted, LawFit) and fitted["theta"] == fitted.theta.tolist()  # a mapping over its JSON
    assert fitted.name == "chinchilla" and list(fitted.params) == list(laws.chinchilla().param_names)
    entry = json.loads(json.dumps(fitted.to_json()))  # as a file holds it
    law_fit = LawFit.from_json(entry)
    assert LawFit.from_json(law_fit.to_json()).to_json() == entry and law_fit == fitted
    n, d = np.array([3e8, 1e9]), np.array([6e9, 2e10])
    np.testing.assert_allclose(law_fit.loss(n, d), laws.chinchilla().predict(law_fit.theta, {"N": n, "D": d}))
    sweep = SweepFit.from_json(entry)
    np.testing.assert_allclose(sweep.loss(n, d), law_fit.loss(n, d))
    points = sweep.predict(n, d=d)["points"]
    assert [p["loss"] for p in points] == pytest.approx(law_fit.loss(n, d).tolist())
    assert all(p["interval"][0] < p["loss"] < p["interval"][1] for p in points)
    n_opt, d_opt, best = law_fit.allocate(1e20)
    want = allocate(law_fit.law, np.vstack([law_fit.theta, law_fit.samples]), 1e20, Compute(SIX_ND))
    np.testing.assert_allclose(n_opt, want[0]) and np.testing.assert_allclose(best, want[2])
    assert len(n_opt) == 1 + len(law_fit.samples)


def test_a_sweep_fit_gives_each_group_its_law_and_says_what_it_cannot() -> None:
    fitted = fit_sweep(_table(groups=True), "chinchilla", 0, 0)
    sweep = SweepFit.from_json(json.loads(json.dumps(fitted.to_json())))
    assert isinstance(fitted, SweepFit) and fitted.group_names == sweep.group_names == ["a", "b"]
    assert fitted.group("a") == sweep.group("a") and sweep.quality is None  # no "raw" tier: its quality law failed
    a, b = (sweep.law_for(g)[0] for g in ("a", "b"))
    inside = ([3e7], [6e8])  # within the fitted runs, where b is 2% worse by construction
    assert sweep.loss(*inside, "b")[0] == pytest.approx(1.02 * sweep.loss(*inside, "a")[0], rel=0.005)
    assert a.entry is not b.entry and sweep.compute() == Compute(SIX_ND)
    with pytest.raises(PredictError, match="several groups"):
        sweep.law_for(None)
    with pytest.raises(PredictError, match="not in the fit"):
        sweep.law_for("c")
    with pytest.raises(PredictError, match="not a fit"):
        SweepFit.from_json({"groups": {"a": {}}})
    with pytest.raises(PredictError, match="the fit failed"):
        LawFit.from_json({"spec": {"family": "chinchilla"}, "error": "too few points"})


def test_an_entry_written_before_specs_and_conventions_still_reads() -> None:
    old = {"law": "chinchilla", "theta": THETA.tolist(), "largest_run_flops": 6e16}
    law_fit = LawFit.from_json(old)
    assert law_fit.law.name == "chinchilla" and law_fit.compute == Compute(SIX_ND) and len(law_fit.samples) == 0
    assert law_fit.loss([1e9], [2e10])[0] == pytest.approx(float(laws.chinchilla().predict(THETA, {"N": [1e9], "D": [2e10]})[0]))
    with pytest.raises(PredictError, match="usable parameters"):
        LawFit.from_json({**old, "theta": THETA[:3].tolist()})


def test_the_bootstrap_does_not_depend_on_the_rows_order() -> None:
    """A store lists its runs by id and ids change with a data build; a CSV may be exported in any
    order: the same runs must give the same draws and the same intervals."""
    data = _table()
    flip = np.random.default_rng(1).permutation(data.n_points)
    shuffled = with_clusters(FitData("t", {k: v[flip] for k, v in data.columns.items()}, data.loss[flip],
                                     compute=Compute(SIX_ND)))
    a, b = fit(data, "chinchilla", 12, 0), fit(shuffled, "chinchilla", 12, 0)
    np.testing.assert_allclose(a["bootstrap_theta"], b["bootstrap_theta"], rtol=1e-6, atol=1e-9)
    assert a["intervals"]["alpha"] == pytest.approx(b["intervals"]["alpha"], rel=1e-6)


def test_library_errors_name_parameters_and_the_cli_names_its_flags(tmp_path) -> None:
    import polars as pl
    from typer.testing import CliRunner

    from scaler.cli import app
    from scaler.errors import ParameterError

    data = _table()
    with pytest.raises(ParameterError, match="^n_bootstrap 1: expected 0 .none. or 2 or more resamples$"):
        fit(data, "chinchilla", 1, 0)
    table = tmp_path / "runs.csv"
    pl.DataFrame({"N": data.columns["N"], "D": data.columns["D"], "loss": data.loss}).write_csv(table)
    result = CliRunner().invoke(app, ["fit", "--table", str(table), "--n", "N", "--d", "D", "--loss", "loss",
                                      "--bootstrap", "1"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --bootstrap 1: expected 0 (none) or 2 or more resamples"
