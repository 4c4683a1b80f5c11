"""`scaler advance` on a synthetic law: predictions are recorded before the runs train, and scored after.

The runs are not trained here: a synthetic truth (a data-constrained quality law with a known
kappa and R_D*) gives each run's loss, with seed-sized noise. What is tested is the loop: the
choice of runs, the predictions written before training, the scoring, the resume of an unfinished
step, and the next step fitting the previous step's runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scaler.advance_step import Candidate, advance_step, choose, read_steps, score, table_lines
from scaler.config import ConfigError, RunConfig
from scaler.fitting import laws
from scaler.fitting.inputs import FitData
from scaler.fitting.pipeline import fit
from scaler.model.family import Family, count_params
from scaler.decision import recommend_from_fit
from scaler.config import run_id_of
from scaler.store import Store
from scaler.sweep.spec import SweepRun

TIERS = ["clean", "raw"]
LAW = laws.quality(TIERS, reference="raw", pools=True)
# a, b, e, alpha, beta, log kappa_clean, log R_D*: a CPU-scale law (losses ~1.5-2.5 nats/token)
TRUTH = np.array([math.log(40.0), math.log(300.0), math.log(1.2), 0.35, 0.32, math.log(1.4), math.log(6.0)])
POOLS = {"raw": 4e6, "clean": 2.4e6}
FAMILY = Family(vocab_size=257, seq_len=128)
NOISE = 0.003  # relative, about the seed noise measured on the demo


def true_loss(n: float, d: float, tier: str) -> float:
    cols = {"N": [n], "D": [d], "w_raw": [float(tier == "raw")], "w_clean": [float(tier == "clean")],
            **{f"U_{t}": [u] for t, u in POOLS.items()}}
    return float(LAW.predict(TRUTH, cols)[0])


def make_run(n: float, flops: float, tier: str) -> SweepRun:
    shape = FAMILY.shape_for_params(int(round(n)))
    tokens = max(1024, int(round(flops / (6 * count_params(shape)) / 1024)) * 1024)
    config = RunConfig.model_validate({
        "name": f"synthetic/advance/N={count_params(shape)}/{tier}", "model": shape.model_dump(),
        "train": {"tokens": tokens, "batch_size": 8},
        "data": {"dir": "data/synthetic", "mix": {tier: 1.0}, "unique_tokens": {tier: int(POOLS[tier])}}})
    return SweepRun(run_id_of(config.identity()), config, None, {tier: 1.0}, 1.0)


class World:
    """The runs so far (id -> N, D, tier, loss) and a store that holds the advance steps."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.runs: dict[str, tuple[float, float, str, float]] = {}
        self.rng = np.random.default_rng(0)
        self.trained: list[list[str]] = []
        for i, c in enumerate((2e10, 8e10, 3.2e11, 1.28e12)):  # IsoFLOP profiles over 64x, both tiers, 2 seeds
            for n in np.geomspace(0.25, 4.0, 5) * math.sqrt(c / 120):
                for tier in TIERS:
                    for seed in (0, 1):
                        d = c / (6 * n)
                        self.runs[f"sweep-{i}-{n:.0f}-{tier}-{seed}"] = (n, d, tier, self.observe(n, d, tier))

    def observe(self, n: float, d: float, tier: str) -> float:
        return true_loss(n, d, tier) * math.exp(self.rng.normal(0, NOISE))

    def fit(self, ids: set[str]) -> dict:
        rows = [self.runs[i] for i in sorted(ids)]
        n, d = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
        columns = {"N": n, "D": d, "C": 6 * n * d,
                   **{f"w_{t}": np.array([float(r[2] == t) for r in rows]) for t in TIERS},
                   **{f"U_{t}": np.full(len(rows), u) for t, u in POOLS.items()}}
        data = FitData("synthetic", columns, np.array([r[3] for r in rows]), np.array([r[2] for r in rows]),
                       run_ids=np.array(sorted(ids)))
        entry = fit(data, "quality", n_bootstrap=40, seed=0)  # the law behind the verdict, as a sweep fit holds it
        return {"quality": entry, "largest_run_flops": entry["largest_run_flops"]}

    def recommend(self, fit_json: dict, budget: float, experiment_flops):
        return recommend_from_fit(fit_json, None, budget, raw_tokens=POOLS["raw"],
                                  yields={"clean": POOLS["clean"] / POOLS["raw"]}, experiment_flops=experiment_flops)

    def train(self, runs: list[SweepRun]) -> None:
        step = read_steps(self.store)[-1]
        assert [p["run_id"] for p in step["runs"]] == [r.run_id for r in runs]  # predicted and written first
        assert step["scores"] is None and all(r.run_id not in self.runs for r in runs)
        self.trained.append([r.run_id for r in runs])
        for r in runs:
            tier = next(iter(r.config.data.mix))
            n, d = count_params(r.config.model), r.config.train.tokens
            loss = self.observe(n, d, tier)
            self.runs[r.run_id] = (n, d, tier, loss)
            self.store.write_status(r.run_id, "done", final={"eval_heldout_loss": loss})

    def step(self, **options) -> dict:
        sweep = {i for i in self.runs if i.startswith("sweep-")}
        return advance_step(self.store, sweep, fit=self.fit, recommend=self.recommend, train=self.train,
                            make_run=make_run, pools=POOLS, target_flops=1e14, **options)


def test_predictions_are_recorded_before_the_runs_and_scored_after(tmp_path) -> None:
    world = World(Store(str(tmp_path / "store")))
    first = world.step()
    assert len(first["runs"]) == 2 and {p["tier"] for p in first["runs"]} == {"raw", "clean"}
    assert all(3.5 < p["extrapolation"] < 8.5 for p in first["runs"])  # at 4-8x the largest fitted run
    for p, s in zip(first["runs"], first["scores"], strict=True):
        truth = true_loss(p["n_params"], p["tokens"], p["tier"])
        assert p["interval"][0] < p["predicted_loss"] < p["interval"][1]
        assert abs(p["predicted_loss"] / truth - 1) < 0.02  # the law extrapolates the truth
        assert s["observed_loss"] == world.runs[p["run_id"]][3] and s["inside"] is not None
        assert s["error_nats"] == pytest.approx(s["observed_loss"] - p["predicted_loss"])
    assert sum(s["inside"] for s in first["scores"]) >= 1
    # the gap's sd after the pair, predicted to first order before it trained, against the refit's bootstrap
    # (first order: here 0.0140 -> 0.0056 expected, 0.0063 measured)
    assert first["expected_gap_sd_after"] < first["before"]["gap_sd"]
    assert abs(first["expected_gap_sd_after"] / first["after"]["gap_sd"] - 1) < 0.3
    assert first["before"]["verdict"] in ("size", "cleaning") and first["after"]["probability"] > 0
    text = "\n".join(table_lines(first))
    assert "predicted before they trained" in text and "inside their 95% prediction intervals" in text

    second = world.step()  # the next step fits the first step's runs too
    assert second["step"] == 2 and set(world.trained[0]) <= set(second["fitted_run_ids"])
    assert second["largest_run_flops"] > first["largest_run_flops"]
    assert [s["step"] for s in read_steps(world.store)] == [1, 2]


def test_an_unfinished_step_is_trained_with_the_predictions_it_holds(tmp_path) -> None:
    world = World(Store(str(tmp_path / "store")))
    real_train = world.train

    def killed(runs):
        raise KeyboardInterrupt

    world.train = killed
    with pytest.raises(KeyboardInterrupt):
        world.step()
    recorded = read_steps(world.store)[0]
    assert recorded["scores"] is None and len(recorded["runs"]) == 2
    world.train = real_train
    resumed = world.step()
    assert resumed["step"] == 1 and resumed["created"] == recorded["created"]
    assert resumed["runs"] == recorded["runs"] and resumed["scores"] is not None


def test_choice_fits_the_budget_and_scores_name_misses() -> None:
    cands = [Candidate(None, t, rank, s) for rank, s in ((1, 3000.0), (2, 600.0), (3, 100.0)) for t in ("raw", "clean")]
    assert [c.rank for c in choose(cands, 1, budget_hours=0.5, workers=2)] == [2, 2]  # rank 1 needs 3000 s > 1800
    assert [c.rank for c in choose(cands, 2, budget_hours=None)] == [1, 1, 2, 2]
    with pytest.raises(ConfigError, match="budget_hours: no time estimate"):
        choose([Candidate(None, "raw", 1, None)], 1, budget_hours=1.0)
    rows = score([{"run_id": "a", "tier": "raw", "predicted_loss": 2.0, "interval": [1.9, 2.1]},
                  {"run_id": "b", "tier": "raw", "predicted_loss": 2.0, "interval": [1.9, 2.1]},
                  {"run_id": "c", "tier": "raw", "predicted_loss": 2.0, "interval": [1.9, 2.1]}],
                 {"a": 2.05, "b": 2.3, "c": None})
    assert [r["inside"] for r in rows] == [True, False, None]
    assert rows[1]["error_pct"] == pytest.approx(15.0) and rows[1]["z"] > 1.96
