"""The OLMo ladder's second step: a user's (task loss, pass@k) table to a sigmoid, checked on
curves whose truth is known, and through `scaler predict` and `scaler recommend`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from scaler.cli import app
from scaler.errors import ParameterError
from scaler.fitting.task import fit_task_curve, sigmoid

TRUE = np.array([0.6, 0.02, 9.0, 0.9])  # a, b, k, L0: pass@1 from 0.62 at low loss to 0.02


def _table(seed: int, n: int = 14, noise: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    loss = np.sort(rng.uniform(0.5, 1.4, n))
    return loss, np.clip(sigmoid(TRUE, loss) + rng.normal(0, noise, n), 0, 1)


def test_the_curve_is_recovered_and_its_interval_covers_the_truth_without_being_wide() -> None:
    covered, widths = 0, []
    for seed in range(30):
        curve = fit_task_curve(*_table(seed), metric="pass@1", n_bootstrap=100, seed=seed)
        at = 0.85  # inside the table's losses, on the steep part
        p = curve.predict(at)
        truth = float(sigmoid(TRUE, at))
        covered += p["interval"][0] <= truth <= p["interval"][1]
        widths.append(p["interval"][1] - p["interval"][0])
        assert abs(p["value"] - truth) < 0.1 and not p["outside_table"]
    assert covered >= 26  # 95% intervals: measured 90-93% on 40 tables at three losses
    assert np.median(widths) < 0.1  # and not everything-covers wide (measured about 0.05)
    far = curve.predict(2.5, [2.4, 2.6])
    assert far["outside_table"] and "extrapolates" in far["note"] and far["value"] < 0.05


def test_a_loss_interval_widens_the_pass_at_k_interval() -> None:
    curve = fit_task_curve(*_table(0), n_bootstrap=60)
    point, spread = curve.predict(0.9), curve.predict(0.9, [0.8, 1.0])
    assert spread["interval"][0] < point["interval"][0] and spread["interval"][1] > point["interval"][1]


@pytest.mark.parametrize(("loss", "score", "message"), [
    ([1.0, 1.1, 1.2], [0.1, 0.2, 0.3], "3 pairs"),
    ([1.0, 1.1, 1.2, 1.3, 1.4], [0.1, 0.2, 1.3, 0.3, 0.2], "fraction in [0, 1]"),
    ([1.0] * 6, [0.1] * 6, "losses that differ"),
])
def test_bad_tables_are_one_line_errors(loss: list, score: list, message: str) -> None:
    with pytest.raises(ParameterError, match=message.replace("[", r"\[")):
        fit_task_curve(loss, score, source="pairs.csv")


def test_predict_and_recommend_map_predicted_loss_to_pass_at_k(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for dataset, kappa in {"web": 1.0, "web-clean": 1.5}.items():
        for budget in (1e16, 1e17, 1e18):
            for n in np.geomspace(3e6, 1e8, 4) * (budget / 1e17) ** 0.5:
                d = budget / (6 * n)
                loss = (0.6 + 400.0 / n**0.34 + 410.0 / (kappa * d) ** 0.28) * np.exp(rng.normal(0, 0.002))
                rows.append({"params": n, "tokens": d, "loss": loss, "dataset": dataset})
    runs = tmp_path / "runs.csv"
    pl.DataFrame(rows).write_csv(runs)
    fit = tmp_path / "fit.json"
    made = CliRunner().invoke(app, ["fit", "--table", str(runs), "--n", "params", "--d", "tokens", "--loss", "loss",
                                    "--group", "dataset", "--reference", "web", "--bootstrap", "40", "--out", str(fit)])
    assert made.exit_code == 0, made.output
    losses = np.linspace(0.7, 1.3, 10)
    pairs = tmp_path / "pairs.csv"
    pl.DataFrame({"nats": losses, "pass@1": sigmoid(np.array([0.5, 0.0, 12.0, 1.0]), losses)}).write_csv(pairs)
    args = ["--task-table", str(pairs), "--task-loss", "nats", "--task-loss-unit", "nats"]
    shown = CliRunner().invoke(app, ["predict", str(fit), "--params", "3e7", "--tokens", "6e8", "--tier", "web",
                                     "--json", *args])
    assert shown.exit_code == 0, shown.output
    point = json.loads(shown.stdout)["points"][0]
    assert point["task"]["value"] == pytest.approx(float(sigmoid(np.array([0.5, 0.0, 12.0, 1.0]), point["loss"])), abs=0.02)
    assert point["task"]["interval"][0] <= point["task"]["value"] <= point["task"]["interval"][1]
    rec = CliRunner().invoke(app, ["recommend", "--fit", str(fit), "--budget", "1e19", "--raw-tokens", "1e12", *args])
    assert rec.exit_code == 0, rec.output
    assert "task curve: pass@1 = " in rec.stdout and "web-clean: pass@1 " in rec.stdout
    in_bpb = CliRunner().invoke(app, ["predict", str(fit), "--params", "3e7", "--tokens", "6e8", "--tier", "web",
                                      "--task-table", str(pairs), "--task-loss", "nats"])
    assert in_bpb.exit_code == 2 and "--task-loss-unit nats" in in_bpb.stderr and in_bpb.stderr.count("\n") == 1
    missing = CliRunner().invoke(app, ["predict", str(fit), "--params", "3e7", "--tokens", "6e8", "--tier", "web",
                                       "--task-table", str(pairs)])
    assert missing.exit_code == 2 and "--task-loss 'bpb': no such column" in missing.stderr
