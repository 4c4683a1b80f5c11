"""Plans: what a sweep costs before it runs (FLOPs, epochs per tier, seconds, dollars).

Seconds come from one of:
- a throughput calibration measured on this machine (`scaler calibrate SPEC`): a few timed steps
  of every distinct (shape, batch) of the spec, plus its compile time (twice: the train and the
  eval step), cached per machine in
  `~/.cache/scaler/calibration.json` (SCALER_CACHE overrides the folder). A shape that was not
  calibrated is estimated at the median FLOP rate of the shapes that were;
- or, for other hardware, `peak_flops x mfu` (e.g. an H100's 989e12 bf16 dense at 40% MFU).
Dollars are hours x `usd_per_hour`.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scaler.config import FLOPS_CONVENTION, ConfigError, mix_label
from scaler.errors import ParameterError
from scaler.model.family import count_params, flops_per_token, training_flops
from scaler.sweep.spec import SweepRun, SweepSpec
from scaler.train.stack_groups import StackSize


@dataclass
class PlanRow:
    run_id: str
    name: str
    point: str
    mix: str
    seed: int
    d_model: int
    n_layers: int
    n_params: int
    tokens: int
    flops: float
    epochs: dict[str, float | None] = field(default_factory=dict)
    est_seconds: float | None = None  # a stacked run: its share of its stack's time
    state: str = "pending"
    stack: int = 0  # runs with one number train together, as one task (a stack, or families of WSD branches)
    stack_size: int = 1  # runs in each vmapped step of the task (for WSD branches: families)
    trained_flops: float = 0.0  # what the run itself trains: a WSD branch only its cooldown


@dataclass
class Plan:
    rows: list[PlanRow]
    total_flops: float
    total_seconds: float | None
    total_usd: float | None
    estimate: str  # how seconds were estimated
    provisional_ids: bool  # the data is not built yet: ids change once it is
    trained_flops: float = 0.0  # total_flops less what WSD branches share with their trunks

    def to_json(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k != "rows"}, "flops_convention": FLOPS_CONVENTION,
                "runs": [asdict(r) for r in self.rows]}


def machine_key() -> str:
    """This machine, as the calibration cache knows it: host name, architecture and core count
    (no JAX import: planning stays fast)."""
    return f"{platform.node()}|{platform.machine()}|{os.cpu_count()}cpu"


def shape_key(run: SweepRun, stack_size: int = 1) -> str:
    """The calibration's key: shape and batch, and the stack size when runs are stacked."""
    s, b = run.config.model, run.config.train.batch_size
    key = f"d{s.d_model}-l{s.n_layers}-h{s.n_heads}-f{s.d_ff}-v{s.vocab_size}-t{s.seq_len}-b{b}"
    return key if stack_size == 1 else f"{key}-k{stack_size}"


def sweep_stacks(spec: SweepSpec, runs: list[SweepRun], stack: StackSize | None = None, runner: str = "local",
                 workers: int = 1) -> list[list[int]]:
    """The runs' indices grouped into tasks: stacks (`stack`, default the spec's), or, when the
    design says so, families of WSD branches, `stack` families a task (their trunks stacked, then
    their branches). "auto" fills half the memory of one worker: this machine's RAM shared by
    `workers` local processes, or resources.memory_gb on a cluster."""
    from scaler.train.stack_groups import group_branch_stacks, group_stacks, host_memory_bytes

    memory = host_memory_bytes() // workers if runner == "local" else int(spec.resources.memory_gb * 2**30)
    group = group_branch_stacks if spec.branches() else group_stacks
    return group([r.config for r in runs], spec.stack if stack is None else stack, memory)


def stacked_together(spec: SweepSpec, runs: list[SweepRun], tasks: list[list[int]]) -> list[list[int]]:
    """Per task, the runs whose steps one vmapped step trains: the whole stack, or for WSD
    branches one run of each family (the trunks; the branches stack alike)."""
    from scaler.train.stack_groups import group_branches

    if not spec.branches():
        return tasks
    return [[task[family[0]] for family in group_branches([runs[i].config for i in task])] for task in tasks]


def cache_path() -> Path:
    return Path(os.environ.get("SCALER_CACHE", Path.home() / ".cache" / "scaler")) / "calibration.json"


def load_calibration() -> dict[str, dict[str, float]]:
    """{shape key: {"tokens_per_s", "flops_per_s"}} measured on this machine."""
    path = cache_path()
    if not path.exists():
        return {}
    return json.loads(path.read_text()).get(machine_key(), {})


def save_calibration(entries: dict[str, dict[str, float]]) -> None:
    path = cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    everything = json.loads(path.read_text()) if path.exists() else {}
    everything[machine_key()] = {**everything.get(machine_key(), {}), **entries}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(everything, indent=1, sort_keys=True))
    tmp.replace(path)


def calibrate(runs: list[SweepRun], steps: int = 8, progress=None,
              stacks: list[list[int]] | None = None) -> dict[str, dict[str, float]]:
    """Time `steps` training steps (after compiling) of every distinct shape, and of every distinct
    (shape, stack size) of `stacks` (tokens/s of the whole stack); cache the rates."""
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from scaler.model.transformer import init_model
    from scaler.train import stacked
    from scaler.train import step as step_lib

    cases = {shape_key(r): (r, 1) for r in runs}
    for group in stacks or []:
        cases[shape_key(runs[group[0]], len(group))] = (runs[group[0]], len(group))
    measured = {}
    for i, (key, (run, size)) in enumerate(sorted(cases.items())):
        shape, train = run.config.model, run.config.train
        graphdef, params = nnx.split(init_model(shape, 0))
        optimizer = step_lib.make_optimizer(train)
        state = stacked.join([{"params": params, "opt_state": optimizer.init(params)}] * size)
        state = step_lib.replicate(state, train.batch_size)
        params, opt_state = state["params"], state["opt_state"]
        dtype = jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16
        step = stacked.make_train_step(graphdef, optimizer, dtype, train.batch_size, size)
        batch = np.random.default_rng(0).integers(0, shape.vocab_size, (train.batch_size, shape.seq_len + 1), np.int32)
        batch = stacked.stack_arrays([batch] * size)
        lr = jnp.float32(1e-3) if size == 1 else jnp.full((size,), 1e-3, jnp.float32)
        t_compile = time.perf_counter()
        params, opt_state, metrics = step(params, opt_state, batch, lr)  # compile
        jax.block_until_ready(metrics["loss"])
        compile_s = time.perf_counter() - t_compile
        t0 = time.perf_counter()
        for _ in range(steps):
            params, opt_state, metrics = step(params, opt_state, batch, lr)
        jax.block_until_ready(metrics["loss"])
        tokens_per_s = size * steps * train.batch_size * shape.seq_len / (time.perf_counter() - t0)
        measured[key] = {"tokens_per_s": tokens_per_s, "flops_per_s": tokens_per_s * flops_per_token(shape),
                         "startup_s": 2 * compile_s, "backend": jax.default_backend()}  # train and eval steps
        if progress:
            progress(i + 1, len(cases))
    save_calibration(measured)
    return measured


def tier_epochs(run: SweepRun, tier_tokens: dict[str, int]) -> dict[str, float]:
    """Epochs of each tier's pool the run reads (tokens x weight / pool), from the build's sizes."""
    data = run.config.data
    out = {}
    for tier, weight in data.mix.items():
        pool = min(tier_tokens.get(tier, 0), data.unique_tokens.get(tier, tier_tokens.get(tier, 0)))
        out[tier] = run.config.train.tokens * weight / pool if pool else None
    return out


def check_rates(peak_flops: float | None, mfu: float | None, usd_per_hour: float | None) -> None:
    """Refuse hardware figures no machine has: each error names the option."""
    if peak_flops is not None and not (math.isfinite(peak_flops) and peak_flops > 0):
        raise ParameterError(f"{{peak_flops}}: expected a positive number of FLOP/s, e.g. 989e12 (got {peak_flops:g})",
                             "peak_flops")
    if mfu is not None and not (math.isfinite(mfu) and 0 < mfu <= 1):
        raise ParameterError(f"{{mfu}}: expected a fraction of peak in (0, 1], e.g. 0.4 (got {mfu:g})", "mfu")
    if usd_per_hour is not None and not (math.isfinite(usd_per_hour) and usd_per_hour >= 0):
        raise ParameterError(f"{{usd_per_hour}}: expected a price >= 0 (got {usd_per_hour:g})", "usd_per_hour")


def make_plan(
    spec: SweepSpec,
    runs: list[SweepRun],
    peak_flops: float | None = None,
    mfu: float | None = None,
    usd_per_hour: float | None = None,
    states: dict[str, str] | None = None,
    stacks: list[list[int]] | None = None,
) -> Plan:
    """The plan of `runs`, trained in `stacks` (default: one run each). A stack's time comes from
    the calibration of its (shape, size) when there is one, else from its runs' solo times (an
    upper bound: stacking is faster on small shapes)."""
    check_rates(peak_flops, mfu, usd_per_hour)
    calibration = {} if peak_flops else load_calibration()
    solo = {k: v for k, v in calibration.items() if "-k" not in k}
    rate_s = statistics.median(v["flops_per_s"] for v in solo.values()) if solo else None
    startup_s = statistics.median(v.get("startup_s", 0.0) for v in solo.values()) if solo else 0.0
    tier_tokens = _tier_tokens(spec)
    stacks = stacks or [[i] for i in range(len(runs))]
    sizes = [len(group) for group in stacked_together(spec, runs, stacks)]  # members of each vmapped step
    stack_of = {i: (j, sizes[j]) for j, group in enumerate(stacks) for i in group}
    trained_tokens = _trained_tokens(spec, runs, stacks)
    rows = []
    for i, run in enumerate(runs):
        shape, train = run.config.model, run.config.train
        flops = training_flops(shape, train.tokens, run.config.flops_convention)
        trained = flops * trained_tokens[i] / train.tokens
        stack, size = stack_of[i]
        if peak_flops:
            seconds = trained / (peak_flops * (mfu or 0.4))
        elif shape_key(run, size) in calibration:
            entry = calibration[shape_key(run, size)]  # a stack's rate counts all its runs' tokens
            seconds = entry.get("startup_s", 0.0) / size + trained_tokens[i] / entry["tokens_per_s"]
        elif shape_key(run) in calibration:
            entry = calibration[shape_key(run)]
            seconds = entry.get("startup_s", 0.0) + trained_tokens[i] / entry["tokens_per_s"]
        else:
            seconds = trained / rate_s + startup_s if rate_s else None
        rows.append(PlanRow(
            run_id=run.run_id, name=run.config.name, point=run.point.label, mix=mix_label(run.mix), seed=train.seed,
            d_model=shape.d_model, n_layers=shape.n_layers, n_params=count_params(shape), tokens=train.tokens,
            flops=flops, epochs=tier_epochs(run, tier_tokens), est_seconds=seconds,
            state=(states or {}).get(run.run_id, "pending"), stack=stack, stack_size=size,
            trained_flops=trained,
        ))
    seconds = [r.est_seconds for r in rows]
    total_s = sum(seconds) if rows and None not in seconds else None
    uncalibrated = {shape_key(runs[g[0]], k) for g, k in zip(stacks, sizes) if k > 1} - set(calibration)
    estimate = (f"peak {peak_flops:.3g} FLOP/s x MFU {mfu or 0.4:g}" if peak_flops
                else f"calibration on this machine ({len(calibration)} shapes and stacks)" if calibration
                else "none: run `scaler calibrate SPEC`, or give --peak-flops and --mfu")
    if calibration and uncalibrated:
        estimate += f"; {len(uncalibrated)} stack sizes not calibrated: timed as solo runs (an upper bound)"
    return Plan(rows, sum(r.flops for r in rows), total_s,
                total_s / 3600 * usd_per_hour if total_s is not None and usd_per_hour else None,
                estimate, spec.data.dir is not None and not tier_tokens, sum(r.trained_flops for r in rows))


def _trained_tokens(spec: SweepSpec, runs: list[SweepRun], groups: list[list[int]]) -> list[int]:
    """Tokens each run trains itself: all of them, except a WSD branch, which is forked from its
    trunk (the longest run of its family) at its cooldown start and trains its cooldown only."""
    from scaler.train.defaults import step_tokens
    from scaler.train.stack_groups import branch_point, group_branches, trunk_of

    tokens = [r.config.train.tokens for r in runs]
    if not spec.branches():
        return tokens
    for task in groups:
        configs = [runs[i].config for i in task]
        for family in group_branches(configs):
            trunk = trunk_of(configs, family)
            for j in family:
                if j != trunk:
                    tokens[task[j]] -= branch_point(configs[j]) * step_tokens(configs[j])
    return tokens


def _tier_tokens(spec: SweepSpec) -> dict[str, int]:
    from scaler.data.folder import is_built, read_token_meta

    if spec.data.dir is None or not is_built(spec.data.dir):
        return {}
    return read_token_meta(spec.data.dir, spec.data.tokenizer).tier_tokens()


def over_budget(spec: SweepSpec, plan: Plan) -> list[str]:
    """Why the plan exceeds the budgets the spec declares (empty: within them)."""
    problems = []
    if spec.max_flops is not None and plan.total_flops > spec.max_flops:
        problems.append(f"total {plan.total_flops:.3g} FLOPs > max_flops {spec.max_flops:.3g}")
    if spec.max_hours is not None and plan.total_seconds is not None and plan.total_seconds / 3600 > spec.max_hours:
        problems.append(f"estimated {plan.total_seconds / 3600:.2f} h > max_hours {spec.max_hours:g}")
    return problems


def unchecked_budgets(spec: SweepSpec, plan: Plan) -> list[str]:
    """Budgets the plan cannot check (no time estimate)."""
    problems = []
    if spec.max_hours is not None and plan.total_seconds is None:
        problems.append(f"max_hours {spec.max_hours:g} cannot be checked without a time estimate "
                        "(`scaler calibrate SPEC`, or --peak-flops and --mfu)")
    return problems
