"""Sweep specs, expansion, plans, the claim protocol and the local engine, with real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from scaler.cli import app
from scaler.config import ConfigError
from scaler.model.family import count_params, flops_per_token, training_flops
from scaler.store import Store
from scaler.sweep.plan import make_plan, over_budget
from scaler.sweep.spec import FitSettings, expand, load_sweep_spec, parse_sweep_spec

GRID = {
    "name": "grid",
    "model": {"seq_len": 32},
    "train": {"batch_size": 8, "lr": 1e-2, "eval_tokens": 512},
    "data": {"dir": "data/somewhere"},
    "design": {"grid": {"sizes": [20_000, 80_000], "tokens": [10_240, 20_480]},
               "mixes": [{"clean": 1.0}, {"clean": 0.5, "raw": 0.5}], "seeds": [0, 1]},
}


def with_design(**design: object) -> dict:
    return {**GRID, "design": {**GRID["design"], **design}}


def fake_build(folder: Path, tier_tokens: dict[str, int], eval_sets: tuple[str, ...] = ("heldout",),
               build_id: str = "b") -> Path:
    """A build folder's build.json and tokens/bytes/meta.json, as `scaler data build` writes them."""
    from scaler.data.folder import BuildInfo, TokenCount, TokenMeta, meta_path, write_record

    count = lambda tokens: TokenCount(tokens=tokens, bytes=tokens, documents=1, bytes_per_token=1.0)  # noqa: E731
    write_record(folder / "build.json", BuildInfo(
        build_id=build_id, format="data_v1", spec={}, tiers=list(tier_tokens), tokenizers=["bytes"],
        eval_tier=list(tier_tokens)[-1], versions={}, created=0.0))
    write_record(meta_path(folder, "bytes"), TokenMeta(
        vocab_size=257, eos_id=256, tiers={t: count(n) for t, n in tier_tokens.items()},
        eval={name: count(4_096) for name in eval_sets}))
    tokens = folder / "tokens" / "bytes"
    for name, n in [*((f"train/{t}", n) for t, n in tier_tokens.items()), *((f"eval/{e}", 4_096) for e in eval_sets)]:
        (tokens / name).parent.mkdir(parents=True, exist_ok=True)
        np.save(tokens / f"{name}.npy", (np.arange(n) % 256).astype(np.uint16))
    return folder


def test_grid_expansion_counts_and_stable_ids() -> None:
    spec = parse_sweep_spec(GRID, "grid.toml")
    runs = expand(spec, build_id="b1")
    assert len(runs) == 2 * 2 * 2 * 2 and len({r.run_id for r in runs}) == 16
    assert [r.run_id for r in expand(spec, build_id="b1")] == [r.run_id for r in runs]
    more = expand(parse_sweep_spec(with_design(seeds=[0, 1, 2]), "x"), build_id="b1")
    assert {r.run_id for r in runs} < {r.run_id for r in more} and len(more) == 24
    multiplied = expand(parse_sweep_spec(with_design(lr_multipliers=[1.0, 2.0]), "x"), build_id="b1")
    assert {r.run_id for r in runs} < {r.run_id for r in multiplied}
    assert {r.config.train.lr for r in multiplied} == {1e-2, 2e-2}
    ratio = parse_sweep_spec(with_design(grid={"sizes": [20_000], "tokens_per_param": [10, 20]}), "x")
    tokens = [r.config.train.tokens / count_params(r.config.model) for r in expand(ratio, build_id="b1")]
    assert min(tokens) == pytest.approx(10, rel=0.05) and max(tokens) == pytest.approx(20, rel=0.05)


def test_runs_are_keyed_on_their_tiers_contents_and_status_names_the_runs_a_changed_build_leaves(
        tmp_path: Path) -> None:
    from scaler.store import Store
    from scaler.sweep.status import sweep_status

    data = fake_build(tmp_path / "data", {"raw": 10_000, "clean": 10_000}, build_id="first")
    spec = parse_sweep_spec({**GRID, "data": {"dir": str(data)}, "store": str(tmp_path / "store")}, "x")
    runs = expand(spec)
    assert all(set(r.config.data.content) == {"vocab", "eval:heldout", *(f"tier:{t}" for t in r.mix)} for r in runs)
    store = Store(spec.store_root)
    for r in runs:  # as if trained
        store.write_config(r.run_id, r.config.identity())
        store.write_status(r.run_id, "done")
    fake_build(data, {"raw": 10_000, "clean": 10_000}, build_id="second")  # the same contents, rebuilt
    assert [r.run_id for r in expand(spec)] == [r.run_id for r in runs]  # every run still counts
    np.save(data / "tokens" / "bytes" / "train" / "raw.npy", np.zeros(10_000, np.uint16))  # raw's contents change
    changed = expand(spec)
    kept = {r.run_id for r in runs if "raw" not in r.mix}
    assert {r.run_id for r in changed} & {r.run_id for r in runs} == kept  # only the runs that read raw move
    status = sweep_status(spec, changed)
    assert len(status.left_behind) == len(runs) - len(kept)
    assert {b["changed"][0] for b in status.left_behind} == {"tier:raw"}
    assert {b["now"] for b in status.left_behind} == {r.run_id for r in changed} - kept
    assert status.counts["pending"] == len(runs) - len(kept)


def test_isoflop_runs_hit_their_budget_and_span_sizes_around_the_optimum() -> None:
    raw = with_design(grid=None, isoflop={"budgets": [1e12, 1e13], "points": 4, "span": 16}, mixes=[{"clean": 1}],
                      seeds=[0])
    runs = expand(parse_sweep_spec(raw, "iso.toml"), build_id="b")
    assert len(runs) == 8
    for run in runs:
        flops = flops_per_token(run.config.model) * run.config.train.tokens
        assert flops == pytest.approx(run.point.budget_flops, rel=0.01)
    sizes = sorted(count_params(r.config.model) for r in runs if r.point.budget_flops == 1e13)
    assert sizes[-1] / sizes[0] > 4 and len(set(sizes)) == 4


def test_random_mixes_are_seeded_dirichlet_draws() -> None:
    raw = with_design(mixes=[], random_mixes={"count": 5, "tiers": ["raw", "dedup", "clean"], "seed": 3})
    mixes = parse_sweep_spec(raw, "x").all_mixes()
    assert len(mixes) == 5 and mixes == parse_sweep_spec(raw, "x").all_mixes()
    assert all(abs(sum(m.values()) - 1) < 1e-5 and set(m) == {"raw", "dedup", "clean"} for m in mixes)
    other = parse_sweep_spec(with_design(mixes=[], random_mixes={"count": 5, "tiers": ["raw", "clean"], "seed": 4}), "x")
    assert other.all_mixes() != mixes


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"design": {"mixes": [{"clean": 1}]}}, "exactly one of [design.grid] or [design.isoflop]"),
        ({"train": {"tokens": 5}}, "train.tokens: set by the design"),
        ({"train": {"batch_size": 8, "warmpu_tokens": 5}}, "warmpu_tokens"),
        ({"colour": "red"}, "colour: unknown key"),
        ({"data": {}}, "mixes need data.dir"),
        ({"design": {**GRID["design"], "mixes": [{"clean": -1.0}]}}, "design.mixes.0"),
        ({"design": {**GRID["design"], "grid": {"sizes": [20_000], "tokens": [1], "tokens_per_param": [2]}}},
         "exactly one of tokens or tokens_per_param"),
        ({"design": {"isoflop": {"budgets": [1e8]}, "mixes": [{"clean": 1}]}}, "design.isoflop.budgets.0"),
        ({"design": {**GRID["design"], "grid": {"sizes": [20_000, 21_000], "tokens": [10_240]}}}, "same run"),
    ],
)
def test_spec_errors_name_the_key(change: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        spec = parse_sweep_spec({**GRID, **change}, "bad.toml")
        expand(spec, build_id="b")
    assert message in str(err.value)


def test_plan_totals_epochs_and_budget(tmp_path: Path) -> None:
    fake_build(tmp_path / "data", {"clean": 40_960, "raw": 81_920})
    raw = {**GRID, "data": {"dir": str(tmp_path / "data")}, "max_flops": 1e9}
    spec = parse_sweep_spec(raw, "x")
    runs = expand(spec, build_id="b")
    plan = make_plan(spec, runs, peak_flops=1e9, mfu=0.5, usd_per_hour=3.6)
    assert plan.total_flops == pytest.approx(sum(r.flops for r in plan.rows))
    assert [r.flops for r in plan.rows] == [training_flops(r.config.model, r.config.train.tokens) for r in runs]
    assert plan.total_seconds == pytest.approx(plan.total_flops / 5e8)
    assert plan.total_usd == pytest.approx(plan.total_seconds / 1000)
    half = next(r for r in plan.rows if r.mix == "clean:0.50+raw:0.50" and r.tokens == 20_480)
    assert half.epochs == pytest.approx({"clean": 0.25, "raw": 0.125})
    assert over_budget(spec, plan) and "max_flops" in over_budget(spec, plan)[0]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"peak_flops": -1.0}, "peak_flops"),
        ({"peak_flops": 0.0}, "peak_flops"),
        ({"peak_flops": float("nan")}, "peak_flops"),
        ({"peak_flops": 1e12, "mfu": 2.0}, "mfu"),
        ({"peak_flops": 1e12, "mfu": 0.0}, "mfu"),
        ({"peak_flops": 1e12, "mfu": -0.4}, "mfu"),
        ({"peak_flops": 1e12, "usd_per_hour": -1.0}, "usd_per_hour"),
        ({"usd_per_hour": float("inf")}, "usd_per_hour"),
    ],
)
def test_plan_refuses_impossible_hardware_figures(options: dict, named: str) -> None:
    spec = parse_sweep_spec({**GRID, "data": {}, "design": {**GRID["design"], "mixes": []}}, "x")
    with pytest.raises(ConfigError, match=named):
        make_plan(spec, expand(spec), **options)


# --- strict specs, checked against the data, the machine and the fit ---------------------------

SPEC = """
name = "t"
[data]
dir = "{data}"
[model]
seq_len = 32
[train]
batch_size = 8
[design.grid]
sizes = [20_000, 80_000]
tokens = [10_240]
[design]
mixes = [{{clean = 1.0}}, {{raw = 1.0}}]
seeds = [0]
"""
GRID_TABLE = "[design.grid]\nsizes = [20_000, 80_000]\ntokens = [10_240]"


def spec_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(text.format(data=tmp_path / "data"))
    with pytest.raises(ConfigError) as err:
        load_sweep_spec(path)
    assert str(path) in str(err.value), err.value
    return str(err.value)


@pytest.mark.parametrize(
    ("old", "new", "key", "expected"),
    [
        (GRID_TABLE, '[design.isoflop]\nbudgets = ["1e11"]', "design.isoflop.budgets.0", "valid number"),
        (GRID_TABLE, "[design.isoflop]\nbudgets = [true]", "design.isoflop.budgets.0", "valid number"),
        (GRID_TABLE, "[design.isoflop]\nbudgets = [inf]", "design.isoflop.budgets.0", "finite number"),
        (GRID_TABLE, "[design.isoflop]\nbudgets = [1e12]\npoints = 5.0", "design.isoflop.points", "valid integer"),
        (GRID_TABLE, '[design.isoflop]\nbudgets = [1e12]\nspan = "8"', "design.isoflop.span", "valid number"),
        (GRID_TABLE, "[design.isoflop]\nbudgets = [1e12]\nsizes = [2e4]", "design.isoflop.sizes.0", "valid integer"),
        ("seeds = [0]", "seeds = [true]", "design.seeds.0", "valid integer"),
        ("seeds = [0]", "seeds = [-1]", "design.seeds.0", "greater than or equal to 0"),
        ("seeds = [0]", "seeds = [0]\nlr_multipliers = [true]", "design.lr_multipliers.0", "valid number"),
        ("sizes = [20_000, 80_000]", "sizes = [20_000, true]", "design.grid.sizes.1", "valid integer"),
        ("tokens = [10_240]", "tokens = [1.024e4]", "design.grid.tokens.0", "valid integer"),
        ("tokens = [10_240]", 'tokens_per_param = ["20"]', "design.grid.tokens_per_param.0", "valid number"),
        ("{{clean = 1.0}}", "{{clean = true}}", "design.mixes.0.clean", "valid number"),
        ("seeds = [0]", 'seeds = [0]\n[design.random_mixes]\ncount = true\ntiers = ["raw", "clean"]',
         "design.random_mixes.count", "valid integer"),
        ("seeds = [0]", 'seeds = [0]\n[design.random_mixes]\ncount = 2\ntiers = ["raw", "clean"]\nseed = -1',
         "design.random_mixes.seed", "greater than or equal to 0"),
        ('name = "t"', 'name = "t"\nretries = true', "retries", "valid integer"),
        ('name = "t"', 'name = "t"\nmax_flops = "1e12"', "max_flops", "valid number"),
        ('name = "t"', 'name = "t"\nmax_hours = true', "max_hours", "valid number"),
        ("seq_len = 32", "seq_len = 32.0", "model.seq_len", "valid integer"),
        ("seq_len = 32", "seq_len = 1", "model.seq_len", "greater than 1"),
        ("seq_len = 32", "seq_len = 32\nhead_dim = 15", "model.head_dim", "must be even"),
        ("seq_len = 32", 'seq_len = 32\nffn_ratio = "3"', "model.ffn_ratio", "valid number"),
        ("[model]", '[data.unique_tokens]\nclean = 1e5\n[model]', "data.unique_tokens.clean", "valid integer"),
        ('dir = "{data}"', 'dir = "{data}"\nheldout_fraction = true', "data.heldout_fraction", "valid number"),
        ('dir = "{data}"', 'dir = "{data}"\ntokenizer = "bpe-x"', "data.tokenizer", "unknown tokenizer"),
        ("batch_size = 8", "batch_size = true", "train.batch_size", "valid integer"),
        ("batch_size = 8", 'batch_size = 8\nlr = "1e-3"', "train.lr", "valid number"),
        ("seeds = [0]", "seeds = [0]\n[resources]\ncpus = 1.5", "resources.cpus", "valid integer"),
        ("seeds = [0]", 'seeds = [0]\n[resources]\nmemory_gb = "4"', "resources.memory_gb", "valid number"),
        ("seeds = [0]", "seeds = [0]\n[fit]\nbootstrap = true", "fit.bootstrap", "valid integer"),
        ("seeds = [0]", "seeds = [0]\n[fit]\nbootstrap = -1", "fit.bootstrap", "greater than or equal to 0"),
        ("seeds = [0]", "seeds = [0]\n[fit]\nseed = 1.0", "fit.seed", "valid integer"),
        ("seeds = [0]", 'seeds = [0]\n[fit]\nlaw = "kaplan2020"', "fit.law", "'chinchilla'"),
        ("seeds = [0]", "seeds = [0]\n[fit]\nalpha = 0.5", "fit.alpha", "unknown key"),
        ("seeds = [0]", 'seeds = [0]\n[fit]\nreference = "dedup"', "fit.reference", "['clean', 'raw']"),
        ("seeds = [0]", 'seeds = [0]\n[fit]\neval_set = "humaneval"', "fit.eval_set", "data.eval_sets"),
    ],
)
def test_bad_spec_values_name_the_file_and_key(tmp_path: Path, old: str, new: str, key: str, expected: str) -> None:
    assert old in SPEC
    message = spec_error(tmp_path, SPEC.replace(old, new))
    assert f"{key}: " in message and expected in message, message


def test_integers_are_floats_in_specs(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    budgets = [(b, tmp_path / f"{i}") for i, b in enumerate(["[1e12]", "[1000000000000]"])]
    specs = []
    for budget, folder in budgets:
        path.write_text(SPEC.format(data=folder).replace(GRID_TABLE, f"[design.isoflop]\nbudgets = {budget}"))
        specs.append(load_sweep_spec(path))
    assert specs[0].design.isoflop.budgets == specs[1].design.isoflop.budgets == [1e12]


def test_sizes_far_beyond_memory_are_refused_at_validation(tmp_path: Path) -> None:
    message = spec_error(tmp_path, SPEC.replace("80_000]", "1_000_000_000_000_000]"))
    assert "design.grid.sizes.1: 1e+15 parameters" in message and "bytes" in message, message
    assert "Adam state" in message and "activations of 1 x 32 tokens" in message
    iso = SPEC.replace(GRID_TABLE, "[design.isoflop]\nbudgets = [1e12, 1e40]")
    assert "design.isoflop.budgets.1: " in spec_error(tmp_path, iso)
    for path in ("sweeps/demo.toml", "sweeps/gpu-isoflop.toml"):  # planned here, trained here or on a GPU
        load_sweep_spec(Path(__file__).parent.parent / path)


BUILD = """
[data.build]
sources = ["stdlib"]
tokenizers = ["bytes"]
tiers = [{{name = "raw"}}, {{name = "clean", steps = ["min-size"]}}]
"""


@pytest.mark.parametrize(
    ("old", "new", "key", "expected"),
    [
        ("{{clean = 1.0}}", "{{dedup = 1.0}}", "design.mixes.0", "unknown tier 'dedup'; data.build (not built yet)"),
        ("seeds = [0]", 'seeds = [0]\n[design.random_mixes]\ncount = 2\ntiers = ["raw", "filtered"]',
         "design.random_mixes.tiers", "unknown tier 'filtered'"),
        ('dir = "{data}"', 'dir = "{data}"\neval_sets = ["heldout", "train"]', "data.eval_sets",
         "unknown eval set 'train'; data.build (not built yet) declares ['heldout', 'humaneval', 'humaneval_solution']"),
        ('dir = "{data}"', 'dir = "{data}"\ntokenizer = "bpe-1024"', "data.tokenizer",
         "'bpe-1024' is not among data.build.tokenizers"),
    ],
)
def test_an_unbuilt_spec_is_checked_against_its_build_table(tmp_path: Path, old: str, new: str, key: str,
                                                              expected: str) -> None:
    good = tmp_path / "good.toml"
    good.write_text((SPEC + BUILD).format(data=tmp_path / "data"))
    assert load_sweep_spec(good).data.build is not None
    message = spec_error(tmp_path, (SPEC + BUILD).replace(old, new))
    assert f"{key}: " in message and expected in message, message


def test_a_built_folder_is_the_truth_for_tiers_and_eval_sets(tmp_path: Path) -> None:
    fake_build(tmp_path / "data", {"raw": 10_000, "clean": 10_000})
    humaneval = SPEC.replace('dir = "{data}"', 'dir = "{data}"\neval_sets = ["heldout", "humaneval"]')
    message = spec_error(tmp_path, humaneval)  # no build table: the folder is the truth
    assert "data.eval_sets: unknown eval set 'humaneval'" in message and "has ['heldout']" in message, message
    declared = tmp_path / "declared.toml"  # a build table declares it: `scaler run` rebuilds the older folder
    declared.write_text((humaneval + BUILD).format(data=tmp_path / "data"))
    assert load_sweep_spec(declared).data.eval_sets == ["heldout", "humaneval"]
    message = spec_error(tmp_path, SPEC.replace("{{clean = 1.0}}", "{{claen = 1.0}}"))
    assert "design.mixes.0: unknown tier 'claen'" in message, message
    message = spec_error(tmp_path, SPEC.replace('dir = "{data}"', 'dir = "{data}"\ntokenizer = "bpe-1024"'))
    assert "data.tokenizer: 'bpe-1024' was not built" in message, message


def test_run_refuses_a_spec_its_build_lacks_before_building_or_writing(tmp_path: Path) -> None:
    path = tmp_path / "sweep.toml"
    text = (SPEC + BUILD).replace("{{clean = 1.0}}", "{{dedup = 1.0}}")
    path.write_text(f'store = "{tmp_path / "store"}"\n' + text.format(data=tmp_path / "data"))
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 2 and "unknown tier 'dedup'" in result.output, result.output
    assert not (tmp_path / "data").exists() and not (tmp_path / "store").exists()


def test_fit_settings_defaults_checks_and_run_ids(tmp_path: Path) -> None:
    from scaler.fitting.laws import LAWS
    from scaler.fitting.pipeline import LAW_NAMES

    assert set(FitSettings.model_fields["law"].annotation.__args__) == set(LAWS) | {"auto"} == set(LAW_NAMES)
    spec = parse_sweep_spec(GRID, "x")
    assert spec.fit == FitSettings(law="chinchilla", reference="raw", eval_set="heldout", bootstrap=1000, seed=0)
    fitted = parse_sweep_spec({**GRID, "fit": {"law": "quality", "reference": "clean", "bootstrap": 0, "seed": 3}}, "x")
    assert fitted.fit.reference == "clean" and fitted.fit.bootstrap == 0
    assert [r.run_id for r in expand(fitted, build_id="b")] == [r.run_id for r in expand(spec, build_id="b")]
    one_tier = with_design(mixes=[{"clean": 1.0}])
    assert parse_sweep_spec({**one_tier, "fit": {"reference": "anything"}}, "x").fit.reference == "anything"
    stdlib = {**GRID, "data": {}, "design": {**GRID["design"], "mixes": []}}
    assert parse_sweep_spec(stdlib, "x").fit.reference == "raw"  # no tiers: nothing to check
    with pytest.raises(ConfigError) as err:
        parse_sweep_spec(with_design(mixes=[{"clean": 1.0}, {"dedup": 1.0}]), "x")
    assert "fit.reference: 'raw' is not a tier of the design's mixes ['clean', 'dedup']" in str(err.value)


# --- the claim protocol -------------------------------------------------------------------------


def test_claims_are_exclusive_and_stale_ones_are_taken_over(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    assert store.claim("r1", "a") and not store.claim("r1", "b")
    assert store.refresh_claim("r1", "a") and not store.refresh_claim("r1", "b")
    store.release("r1", "b")  # not b's to release
    assert store.read_claim("r1")["owner"] == "a"
    assert store.claim("r1", "b", stale_after_s=0.0)  # a's heartbeat is "old": taken over
    assert store.read_claim("r1")["owner"] == "b"
    store.release("r1", "b")
    assert store.read_claim("r1") is None
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = Path(store.run_dir("r2"))
    path.mkdir(parents=True)
    (path / "claim.json").write_text(json.dumps({"owner": "x", "host": os.uname().nodename, "pid": dead.pid,
                                                 "heartbeat": time.time()}))
    assert store.claim("r2", "c")  # same host, process gone: stale at once


def test_dead_claims_of_finished_runs_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    """A worker killed after its run finished, before it released the claim, leaves a claim
    nobody takes (finished runs are skipped); `remove_dead_claim` deletes it, never a live one."""
    store = Store(str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for run_id, pid, heartbeat in (("dead", dead.pid, time.time()), ("old", os.getpid(), 0.0),
                                   ("live", os.getpid(), time.time())):
        Path(store.run_dir(run_id)).mkdir(parents=True)
        (Path(store.run_dir(run_id)) / "claim.json").write_text(json.dumps(
            {"owner": "x", "host": os.uname().nodename, "pid": pid, "heartbeat": heartbeat}))
        store.remove_dead_claim(run_id)
    assert [store.read_claim(r) is None for r in ("dead", "old", "live")] == [True, True, False]


def test_a_stale_claim_is_taken_over_once_and_a_torn_one_only_when_old(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    path = Path(store.run_dir("r")) / "claim.json"
    path.parent.mkdir(parents=True)
    stale = json.dumps({"owner": "dead", "host": "elsewhere", "pid": 1, "heartbeat": 0.0})
    path.write_text(stale)
    assert store.claim("r", "a", stale_after_s=60)
    path.write_text(stale)  # what a slower taker still sees: the same stale claim
    assert not store.claim("r", "b", stale_after_s=60)  # its takeover lock is taken
    path.write_text("")  # a claim torn by a crash between create and write
    assert not store.claim("r", "c", stale_after_s=60)  # young: maybe being written
    os.utime(path, (time.time() - 120, time.time() - 120))
    assert store.claim("r", "c", stale_after_s=60)
    store.release("r", "c")
    assert not list(path.parent.glob("claim.json*"))


def test_ids_from_expand_match_what_a_worker_computes(tmp_path: Path) -> None:
    from scaler.sweep.cluster import run_id_for

    fake_build(tmp_path / "data", {t: 10_000 for t in ("raw", "dedup", "clean")}, build_id="abc")
    raw = {**GRID, "data": {"dir": str(tmp_path / "data")},
           "design": {**GRID["design"], "mixes": [{"raw": 0.1, "dedup": 0.2, "clean": 0.7}],
                      "random_mixes": {"count": 6, "tiers": ["raw", "dedup", "clean"]}}}
    runs = expand(parse_sweep_spec(raw, "x"))
    assert [run_id_for(r.config.model_dump(mode="json")) for r in runs] == [r.run_id for r in runs]
    with pytest.raises(ConfigError, match="unknown tier 'claen'"):
        expand(parse_sweep_spec({**raw, "design": {**raw["design"], "mixes": [{"claen": 1.0}]}}, "x"))
    with pytest.raises(ConfigError, match="design.seeds: repeated"):
        parse_sweep_spec({**raw, "design": {**raw["design"], "seeds": [0, 0]}}, "x")
    with pytest.raises(ConfigError, match="data.unique_tokens: 'filtered'"):
        parse_sweep_spec({**raw, "data": {**raw["data"], "unique_tokens": {"filtered": 100}}}, "x")


# --- the local engine, with real processes ------------------------------------------------------


def sweep_file(tmp_path: Path, sizes: list[int], tokens: int = 16_384) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(f"""
name = "t"
store = "{tmp_path / 'store'}"
[model]
seq_len = 32
[train]
batch_size = 8
lr = 1e-2
eval_tokens = 256
checkpoint_every_steps = 8
[design.grid]
sizes = {sizes}
tokens = [{tokens}]
[design]
seeds = [0, 1]
""")
    return path


def states_and_attempts(spec_path: Path) -> list[tuple[str, int]]:
    from scaler.sweep.spec import load_sweep_spec

    spec = load_sweep_spec(spec_path)
    store = Store(spec.store_root)
    return [(store.read_status(r.run_id)["state"], store.read_status(r.run_id).get("attempts", 0))
            for r in expand(spec)]


def scaler(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "SCALER_CPU_DEVICES": "1"}
    return subprocess.Popen([sys.executable, "-m", "scaler.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def test_two_submitters_at_once_train_each_run_exactly_once(tmp_path: Path) -> None:
    spec = sweep_file(tmp_path, [20_000, 80_000])
    first, second = scaler("run", str(spec)), scaler("run", str(spec))
    outputs = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert first.returncode == second.returncode == 0, outputs
    assert states_and_attempts(spec) == [("done", 1)] * 4
    assert not list((tmp_path / "store").rglob("claim.json"))


def test_a_killed_sweep_resumes_without_retraining_finished_runs(tmp_path: Path) -> None:
    spec = sweep_file(tmp_path, [20_000, 80_000], tokens=32_768)
    proc = scaler("run", str(spec))
    store = Store(str(tmp_path / "store"))
    deadline = time.time() + 200
    while time.time() < deadline:  # wait for one run done and the next one under way
        states = [s for s, _ in states_and_attempts(spec)]
        if states.count("done") >= 1 and "running" in states:
            break
        time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = states_and_attempts(spec)
    done_before = [i for i, (s, _) in enumerate(before) if s == "done"]
    assert done_before and any(s == "running" for s, _ in before)
    result = CliRunner().invoke(app, ["run", str(spec)])
    assert result.exit_code == 0, result.output
    after = states_and_attempts(spec)
    assert all(s == "done" for s, _ in after)
    assert all(after[i][1] == 1 for i in done_before)  # finished runs were not redone
    assert max(a for _, a in after) == 2  # the killed run was resumed, once
    shown = CliRunner().invoke(app, ["status", str(spec)])
    assert shown.exit_code == 0 and "done" in shown.output
    assert not list(Path(store.root).rglob("claim.json"))


def test_plan_cli_refuses_a_spec_over_its_budget(tmp_path: Path) -> None:
    spec = sweep_file(tmp_path, [20_000])
    spec.write_text("max_flops = 1e6\n" + spec.read_text())
    result = CliRunner().invoke(app, ["plan", str(spec), "--peak-flops", "1e12"])
    assert result.exit_code == 3 and "max_flops" in result.output
    forced = CliRunner().invoke(app, ["plan", str(spec), "--json", "--force", "--peak-flops", "1e12", "--mfu", "0.5"])
    assert forced.exit_code == 0
    plan = json.loads(forced.output)
    assert len(plan["runs"]) == 2 and plan["total_seconds"] == pytest.approx(plan["total_flops"] / 5e11)
    refused = CliRunner().invoke(app, ["run", str(spec)])
    assert refused.exit_code == 2 and "max_flops" in refused.output


def test_the_slurm_path_runs_a_sweep_through_submitits_local_executor(tmp_path: Path) -> None:
    spec = sweep_file(tmp_path, [20_000], tokens=4_096)
    for _ in range(2):  # the second time there is nothing to run
        proc = scaler("run", str(spec), "--runner", "slurm", "--slurm-cluster", "local")
        output = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, output
    assert "0 to run now" in output
    assert states_and_attempts(spec) == [("done", 1)] * 2


def test_report_and_recommend_commands_refuse_clearly(tmp_path: Path) -> None:
    spec = sweep_file(tmp_path, [20_000])
    empty = CliRunner().invoke(app, ["report", str(spec)])
    assert empty.exit_code == 2 and "in the store" in empty.output
    units = CliRunner().invoke(app, ["recommend", str(spec), "--budget", "10", "--unit", "gpu-hours"])
    assert units.exit_code == 2 and "peak" in units.output
