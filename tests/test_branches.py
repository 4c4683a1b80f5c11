"""WSD branches (scaler/train/branches.py): the longest run is the trunk, the shorter ones fork at
their cooldown starts; each branch's final loss equals the same WSD run trained alone, bit for bit
on the CPU, also when the branch is killed during its cooldown and resumed."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import tiny_config

from scaler.store import Store
from scaler.train import branches, loop

STEP_TOKENS = 8 * 32


def family():
    """Three WSD runs of 20, 30 and 40 steps; one warmup for all (the default depends on D)."""
    return [tiny_config(schedule="wsd", tokens=n * STEP_TOKENS, warmup_tokens=4 * STEP_TOKENS, cooldown_fraction=0.2)
            for n in (20, 40, 30)]


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    store = Store(str(tmp_path_factory.mktemp("standalone")))
    return {r.run_id: r.final["eval_heldout_loss"] for r in (loop.train_run(c, store) for c in family())}


class Killed(BaseException):
    """The process died here."""


def test_branches_equal_their_standalone_runs(standalone: dict[str, float], tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    first_step: dict[str, int] = {}

    def note(row: dict) -> None:
        first_step.setdefault(row["run_id"], row["step"])

    results = branches.train_branches(family(), store, progress=note)
    assert [r.state for r in results] == ["done"] * 3
    for result in results:
        assert result.final["eval_heldout_loss"] == standalone[result.run_id]  # bit for bit
    short, trunk, middle = results
    assert first_step[short.run_id] > 16 and first_step[middle.run_id] > 24  # forked at steps 16 and 24
    trunk_rows = store.read_metrics(trunk.run_id)
    assert store.read_metrics(short.run_id).filter(store.read_metrics(short.run_id)["step"] <= 16).equals(
        trunk_rows.filter(trunk_rows["step"] <= 16))


def test_a_branch_killed_in_its_cooldown_resumes_to_the_same_loss(standalone: dict[str, float],
                                                                  tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    configs = family()
    trunk = loop.train_run(configs[1], store, save_at=frozenset({16}),
                           on_saved=lambda run_id, step: step == 16 and branches.fork(store, run_id, configs[0], 16))

    def die_at_18(row: dict) -> None:
        if row["step"] >= 18:
            raise Killed

    with pytest.raises(Killed):
        loop.train_run(configs[0], store, progress=die_at_18)
    resumed = loop.train_run(configs[0], store)
    assert resumed.final["eval_heldout_loss"] == standalone[resumed.run_id]
    assert trunk.final["eval_heldout_loss"] == standalone[trunk.run_id]


def test_only_wsd_runs_that_differ_in_tokens_branch(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    with pytest.raises(ValueError, match="schedule"):
        branches.train_branches([tiny_config(), tiny_config(tokens=20 * STEP_TOKENS)], store)
    with pytest.raises(ValueError, match="differ in more"):
        branches.train_branches([family()[0], tiny_config(schedule="wsd", seed=5, tokens=40 * STEP_TOKENS,
                                                          warmup_tokens=4 * STEP_TOKENS, cooldown_fraction=0.2)], store)


SPEC = """name = "branches"
store = "{store}"
[model]
seq_len = 32
[train]
batch_size = 8
eval_tokens = 256
[design.grid]
sizes = [20_000]
tokens = [5_120, 10_240, 20_480]
schedule = "wsd-branches"
cooldown_fraction = 0.2
"""


def test_a_sweep_of_wsd_branches_plans_its_saving_and_trains_each_run_as_alone(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from scaler.cli import app
    from scaler.sweep.spec import expand, load_sweep_spec

    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(store=tmp_path / "store"))
    planned = CliRunner().invoke(app, ["plan", str(spec), "--json"])
    assert planned.exit_code == 0, planned.output
    plan = json.loads(planned.stdout)
    assert [r["stack"] for r in plan["runs"]] == [0, 0, 0]  # one family
    steps = [20, 40, 80]  # the branches train only their cooldowns: 20% of 20 and 40 steps
    trained = (80 + 0.2 * 20 + 0.2 * 40) / sum(steps)
    assert plan["trained_flops"] == pytest.approx(trained * plan["total_flops"])
    assert CliRunner().invoke(app, ["run", str(spec)]).exit_code == 0
    store, alone = Store(str(tmp_path / "store")), Store(str(tmp_path / "alone"))
    for run in expand(load_sweep_spec(spec)):
        assert run.config.train.schedule == "wsd" and run.config.train.warmup_tokens == 5_120 // 4
        status = store.read_status(run.run_id)
        assert status["state"] == "done" and status["attempts"] == 1
        assert status["final"]["eval_heldout_loss"] == loop.train_run(run.config, alone).final["eval_heldout_loss"]


def test_wsd_branches_refuse_a_schedule_of_their_own(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from scaler.cli import app

    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(store=tmp_path / "store").replace("[train]\n", "[train]\nschedule = \"cosine\"\n"))
    result = CliRunner().invoke(app, ["plan", str(spec)])
    assert result.exit_code == 2 and "train.schedule: set by the design" in result.stderr, result.output


def test_families_stack_their_trunks_and_their_branches(tmp_path: Path) -> None:
    """Two seeds' families in one task: the trunks train as a stack of 2, then the branches, a stack
    of 2 per token count; each equals the same two WSD runs stacked from the start, bit for bit."""
    import json

    from typer.testing import CliRunner

    from scaler.cli import app

    spec = tmp_path / "spec.toml"
    spec.write_text("stack = 2\n" + SPEC.format(store=tmp_path / "store") + "[design]\nseeds = [0, 1]\n")
    planned = CliRunner().invoke(app, ["plan", str(spec), "--json"])
    assert planned.exit_code == 0, planned.output
    plan = json.loads(planned.stdout)
    assert [(r["stack"], r["stack_size"]) for r in plan["runs"]] == [(0, 2)] * 6  # one task, families stacked by 2
    assert plan["trained_flops"] == pytest.approx((80 + 0.2 * 20 + 0.2 * 40) / 140 * plan["total_flops"])

    seeds = [[tiny_config(schedule="wsd", tokens=n * STEP_TOKENS, warmup_tokens=4 * STEP_TOKENS,
                          cooldown_fraction=0.2, seed=seed) for n in (20, 30)] for seed in (0, 1)]
    store, alone = Store(str(tmp_path / "families")), Store(str(tmp_path / "alone"))
    first_step: dict[str, int] = {}
    results = branches.train_task([c for family in seeds for c in family], store,
                                  progress=lambda row: first_step.setdefault(row["run_id"], row["step"]))
    assert [r.state for r in results] == ["done"] * 4
    short = [results[0].run_id, results[2].run_id]
    assert all(first_step[run_id] > 16 for run_id in short)  # forked from the stacked trunks at step 16
    together = {r.run_id: r.final["eval_heldout_loss"]
                for n in (0, 1) for r in loop.train_stack([seeds[0][n], seeds[1][n]], alone)}
    assert {r.run_id: r.final["eval_heldout_loss"] for r in results} == together  # bit for bit
