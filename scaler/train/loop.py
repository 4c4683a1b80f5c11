"""Train runs into the store: resume from checkpoints, log, evaluate, stop on divergence.

`train_run(config, store)` is the whole life of a run, and `train_stack(configs, store)` that of
K runs of one shape trained by one vmapped step (scaler/train/stacked.py); a run is a stack of one.
The store is the caller's, any `scaler.train.folders.RunFolders` (a `scaler.store.Store`). A run:

1. resolve defaults; the run id is the hash of the resolved config; write config.json;
2. a run already `done` or `diverged` is returned as it is (finished runs are never redone);
3. restore the latest orbax checkpoint if there is one (parameters, optimizer state, step; the
   data position is the step, since batch i is a pure function of (seed, i));
4. step with a jitted pure function; every `log_every` steps append a metrics row (mean train
   loss of the window, lr, grad norm, tokens/s), every `eval_every_steps` and at the end evaluate
   every eval set, every `checkpoint_every_steps` write the metrics, then save a checkpoint;
5. a non-finite loss, or one above `max_loss`, marks the run `diverged` and stops it (in a stack:
   its slot trains on at learning rate 0, unlogged, and the other runs go on);
6. `train.trackers` (TensorBoard, W&B, JSON lines) get the config, every row and the final
   evaluation as well (scaler/train/trackers.py); they never fail a run."""

from __future__ import annotations

import math
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import polars as pl
from flax import nnx

from scaler.config import ConfigError, DataConfig, RunConfig, parse_run_config, run_id_of
from scaler.data.source import EvalWindows, TokenSource, stdlib_source
from scaler.errors import StoreError
from scaler.model.family import count_params, count_params_nonembed, flops_per_token, training_flops
from scaler.model.transformer import init_model
from scaler.train import stack_groups, stacked
from scaler.train import step as step_lib
from scaler.train.checkpoint import CheckpointCorrupt, Checkpointer
from scaler.train.defaults import resolve, step_tokens
from scaler.train.folders import OpenFolders, RunFolders
from scaler.train.schedule import lr_at
from scaler.train.trackers import RunTrackers, open_trackers

HEARTBEAT_EVERY_S = 10.0


@dataclass
class RunResult:
    run_id: str
    run_dir: str
    state: str  # done | diverged
    final: dict[str, Any] = field(default_factory=dict)


ProgressFn = Callable[[dict[str, Any]], None]
SavedFn = Callable[[str, int], None]  # (run id, step) after a checkpoint of the run is saved


def open_source(data: DataConfig) -> TokenSource:
    if data.dir is None:
        return stdlib_source(data.heldout_fraction)
    from scaler.data.mix import MixError, MixSource

    from scaler.data.folder import data_content

    source = MixSource(data.dir, data.mix, data.tokenizer, data.unique_tokens)
    if data.content:
        now = data_content(data.dir, data.tokenizer, sorted(data.mix), dict(data.unique_tokens), data.eval_sets)
        changed = sorted(k for k in set(now) | set(data.content) if now.get(k) != data.content.get(k))
        if changed:
            raise MixError(f"data.dir {data.dir} (build {source.build_id}) was rebuilt with other contents since "
                           f"this run was configured on build {data.build_id}: {', '.join(changed)} changed")
    elif data.build_id is not None and data.build_id != source.build_id:
        raise MixError(f"data.dir {data.dir} holds build {source.build_id}, but this run was configured on build "
                       f"{data.build_id}: the data was rebuilt since")
    return source


def load_trained(run_dir: str | Path, open_store: OpenFolders) -> tuple[RunConfig, nnx.GraphDef, Any]:
    """A finished run's config, graph definition and parameters at its last checkpoint; the
    store the folder is in is opened with `open_store(root)` (`scaler.store.Store`)."""
    run_dir = Path(run_dir).resolve()
    if not (run_dir / "config.json").exists() or run_dir.parent.name != "runs":
        raise ConfigError(f"{run_dir}: not a run folder (STORE/runs/RUN_ID with a config.json)")
    store = open_store(str(run_dir.parent.parent))
    config = parse_run_config(store.read_config(run_dir.name), source=str(run_dir / "config.json"))
    if store.read_status(run_dir.name).get("state") != "done":
        raise ConfigError(f"{run_dir}: the run is not done")
    ckpt = Checkpointer(store.ckpt_dir(run_dir.name))
    step = ckpt.latest_step()
    if step is None:
        raise FileNotFoundError(f"{run_dir}: no checkpoint to load (is it a finished scaler run?)")
    graphdef, params = nnx.split(init_model(config.model, config.train.seed))
    opt_state = step_lib.make_optimizer(config.train).init(params)
    restored, _ = ckpt.restore(step, {"params": params, "opt_state": opt_state})
    ckpt.close()
    return config, graphdef, restored["params"]


def run_info(config: RunConfig) -> dict[str, Any]:
    """Derived numbers recorded with a resolved run (run_info.json)."""
    shape, train = config.model, config.train
    per_step = step_tokens(config)
    steps = train.tokens // per_step
    return {
        "n_params": count_params(shape),
        "n_params_nonembed": count_params_nonembed(shape),
        "flops_per_token": flops_per_token(shape, config.flops_convention),
        "flops_convention": config.flops_convention,
        "flops": training_flops(shape, train.tokens, config.flops_convention),
        "steps": steps,
        "step_tokens": per_step,
        "warmup_steps": min(steps, math.ceil((train.warmup_tokens or 0) / per_step)),
    }


def evaluate(eval_step: Callable, params: Any, members: list[Member], batch_size: int, final: bool = False
             ) -> list[dict[str, float]]:
    """Each member's mean loss (nats per scored token) and bits per byte on every eval set (`final`:
    the final evaluation's sets); `params` stacked over the members (a stack of one: the run's own)."""
    size, out = len(members), [{} for _ in members]
    sets = [m.final_eval_sets if final and m.final_eval_sets else m.eval_sets for m in members]
    for name in sets[0]:
        tokens = stacked.stack_arrays([s[name].tokens_NT1 for s in sets])  # (n, T+1), or (K, n, T+1)
        weights = stacked.stack_arrays([s[name].weights_NT for s in sets])
        sums_K, counts_K = np.zeros(size), np.zeros(size)
        for i in range(0, sets[0][name].n_windows, batch_size):
            loss_sum, weight_sum = eval_step(params, tokens[..., i : i + batch_size, :], weights[..., i : i + batch_size, :])
            sums_K += stacked.per_member(loss_sum, size).astype(np.float64)
            counts_K += stacked.per_member(weight_sum, size).astype(np.float64)
        for k, m in enumerate(members):
            loss = float(sums_K[k] / counts_K[k])
            out[k][f"eval_{name}_loss"] = loss
            out[k][f"eval_{name}_bpb"] = loss / math.log(2) / m.source.eval_bytes_per_token(name)
    return out


def load_eval_sets(source: TokenSource, config: RunConfig, final: bool = False) -> dict[str, EvalWindows]:
    """Each eval set padded to whole batches (unscored windows) so one compiled eval step serves
    all: eval_tokens of it, or for the `final` evaluation final_eval_tokens ("all": windows spread
    evenly over the whole set, at most seq_len apart, so every token is scored and a few twice; an
    answer set: every answer token once)."""
    seq_len, batch = config.model.seq_len, config.train.batch_size
    wanted = config.train.final_eval_tokens if final and config.train.final_eval_tokens else config.train.eval_tokens
    out = {}
    for name in config.data.eval_sets:
        n_tokens = source.eval_set_tokens(name) if wanted == "all" else wanted
        windows = source.eval_set(name, math.ceil(n_tokens / (seq_len * batch)) * seq_len * batch, seq_len)
        out[name] = windows.padded(batch, source.eos_id)
    return out


def _finished(store: RunFolders, run_id: str, state: str) -> RunResult:
    status = store.read_status(run_id)
    return RunResult(run_id, store.run_dir(run_id), state, status.get("final", {}))


def train_run(
    config: RunConfig,
    store: RunFolders,
    source: TokenSource | None = None,
    progress: ProgressFn | None = None,
    save_at: frozenset[int] = frozenset(),
    on_saved: SavedFn | None = None,
) -> RunResult:
    """Train one run (a stack of one). `save_at`: steps to checkpoint besides the run's cadence;
    `on_saved(run_id, step)` is called after each checkpoint is saved (WSD branches fork there)."""
    return train_stack([config], store, [source], progress, save_at, on_saved)[0]


def train_stack(
    configs: list[RunConfig],
    store: RunFolders,
    sources: list[TokenSource | None] | None = None,
    progress: ProgressFn | None = None,
    save_at: frozenset[int] = frozenset(),
    on_saved: SavedFn | None = None,
) -> list[RunResult]:
    """Train runs of one stack (`stack_groups.stack_key` equal) together, each into its own folder of
    the store; their results in input order. Runs already done or diverged are returned as they
    are. Each run records its own attempts and time; an interruption leaves every unfinished run
    `pending`, an error every unfinished run `failed` (and is raised)."""
    configs = [resolve(c) for c in configs]
    sources = sources or [None] * len(configs)
    keys = {stack_groups.stack_key(c) for c in configs}
    if len(keys) > 1:
        raise ValueError("train_stack: the runs differ in more than seed, data and learning-rate schedule")
    results: dict[str, RunResult] = {}
    todo: list[tuple[RunConfig, str, TokenSource | None]] = []
    elapsed_before: dict[str, float] = {}  # seconds of earlier attempts, per run
    started = time.time()
    for config, source in zip(configs, sources):
        run_id = run_id_of(config.identity())
        store.write_config(run_id, config.identity())
        status = store.read_status(run_id)
        if status["state"] in ("done", "diverged"):
            results[run_id] = _finished(store, run_id, status["state"])
            continue
        store.write_status(run_id, "running", attempts=status.get("attempts", 0) + 1, started_at=started,
                           heartbeat=started)
        todo.append((config, run_id, source))
        elapsed_before[run_id] = status.get("elapsed_s", 0.0)

    def spent(run_id: str) -> float:
        return elapsed_before[run_id] + time.time() - started  # over all attempts

    try:
        for result in _train(todo, store, progress, save_at, on_saved):
            results[result.run_id] = result
            store.write_status(result.run_id, result.state, elapsed_s=spent(result.run_id))
    except KeyboardInterrupt:
        for run_id in elapsed_before.keys() - results.keys():
            _record(store, run_id, "pending", interrupted_at=time.time(), elapsed_s=spent(run_id))
        raise  # the runs resume from their checkpoints
    except BaseException as err:
        last = traceback.format_exception_only(type(err), err)[-1].strip()
        for run_id in elapsed_before.keys() - results.keys():
            _record(store, run_id, "failed", error=last or type(err).__name__, elapsed_s=spent(run_id))
        raise
    return [results[run_id_of(c.identity())] for c in configs]


def _record(store: RunFolders, run_id: str, state: str, **fields: Any) -> None:
    """The run's state after an error; when the store cannot take even that (a full disk), the
    error that stopped the run is the one that is raised."""
    try:
        store.write_status(run_id, state, **fields)
    except StoreError:
        pass


@dataclass
class Member:
    """One run of a stack while it trains."""

    config: RunConfig
    run_id: str
    info: dict[str, Any]
    source: TokenSource
    eval_sets: dict[str, EvalWindows]
    final_eval_sets: dict[str, EvalWindows] | None  # None: the final evaluation reads eval_sets
    ckpt: Checkpointer
    start: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    last_metrics: dict[str, Any] = field(default_factory=dict)
    active: bool = True  # False once it diverged: its slot trains on at lr 0, unlogged
    trackers: RunTrackers | None = None  # opened once the start step is known (train.trackers)

    def track(self, row: dict[str, Any]) -> None:
        if self.trackers:
            self.trackers.log(row)

    def end_tracking(self, state: str, final: dict[str, Any]) -> None:
        if self.trackers:
            self.trackers.finish(state, final)
            self.trackers = None


def _open_member(config: RunConfig, run_id: str, store: RunFolders, source: TokenSource | None, platform: str,
                 dtype: jnp.dtype, sources: dict[str, TokenSource]) -> Member:
    """Open the run's data (shared between members with the same data) and write run_info.json."""
    if source is None:
        key = config.data.model_dump_json()
        source = sources[key] if key in sources else sources.setdefault(key, open_source(config.data))
    shape, train = config.model, config.train
    if source.vocab_size > shape.vocab_size:
        raise ConfigError(f"the data has {source.vocab_size} token ids but model.vocab_size is {shape.vocab_size}")
    info = run_info(config)
    usage = source.usage(train.seed, info["steps"], train.batch_size, shape.seq_len)  # tokens drawn per pool, epochs
    build = {"data_build_id": source.build_id} if getattr(source, "build_id", None) else {}  # not in the run id
    store.write_json(run_id, "run_info.json", {**info, "platform": platform, "compute_dtype": jnp.dtype(dtype).name,
                                               **usage, **build, "data": source.describe()})
    final = load_eval_sets(source, config, final=True) if config.train.final_eval_tokens else None
    return Member(config, run_id, info, source, load_eval_sets(source, config), final, Checkpointer(store.ckpt_dir(run_id)))


def _restore(m: Member, store: RunFolders, like: dict[str, Any]) -> dict[str, Any]:
    """The member's state at the latest sound checkpoint whose rows are on disk (`like`, its fresh
    state, when there is none); sets m.start and m.rows."""
    m.start, m.rows = resume_point(m.ckpt, store, m.run_id)
    while m.start:
        try:
            restored, position = m.ckpt.restore(m.start, like)
            break
        except CheckpointCorrupt as err:
            moved = m.ckpt.set_aside(m.start)
            m.start, m.rows = resume_point(m.ckpt, store, m.run_id)
            print(f"warning: run {m.run_id}: {err}; moved to {moved}; resuming from "
                  f"{'step ' + str(m.start) if m.start else 'the start'}", file=sys.stderr)
    if not m.start:
        return like
    if (position["seed"], position["next_batch"]) != (m.config.train.seed, m.start):
        raise ValueError(f"checkpoint {m.start} of run {m.run_id} holds data position {position}")
    return restored


def _train(todo: list[tuple[RunConfig, str, TokenSource | None]], store: RunFolders,
           progress: ProgressFn | None, save_at: frozenset[int] = frozenset(),
           on_saved: SavedFn | None = None) -> Iterator[RunResult]:
    """Open, restore and train the members; members whose checkpoints stand at different steps
    (a stack killed between two members' saves) train as separate stacks, one after the other."""
    if not todo:
        return
    first = todo[0][0]
    platform = jax.default_backend()
    dtype = step_lib.compute_dtype_for(first.train.compute_dtype, platform)
    sources: dict[str, TokenSource] = {}
    members = [_open_member(c, run_id, store, source, platform, dtype, sources) for c, run_id, source in todo]
    optimizer = step_lib.make_optimizer(first.train)
    states = []
    for m in members:
        graphdef, params = nnx.split(init_model(m.config.model, m.config.train.seed))  # one graph: one shape
        states.append(_restore(m, store, {"params": params, "opt_state": optimizer.init(params)}))
        m.trackers = open_trackers(m.config.train.trackers, store.tracker_dir(m.run_id), m.run_id, m.config.name,
                                   {**m.config.identity(), "run_info": m.info}, m.start)
    try:
        for start in sorted({m.start for m in members}):
            group = [k for k, m in enumerate(members) if m.start == start]
            yield from _train_members([members[k] for k in group], [states[k] for k in group], graphdef, optimizer,
                                      dtype, store, progress, save_at, on_saved)
    finally:  # an interruption or an error: the trackers keep what they were sent
        for m in members:
            m.end_tracking("interrupted", m.last_metrics)


def _train_members(members: list[Member], states: list[dict[str, Any]], graphdef: nnx.GraphDef,
                   optimizer: optax.GradientTransformation, dtype: jnp.dtype, store: RunFolders,
                   progress: ProgressFn | None, save_at: frozenset[int] = frozenset(),
                   on_saved: SavedFn | None = None) -> Iterator[RunResult]:
    """The loop: one (vmapped) step for all members from their common start; rows, evaluations,
    checkpoints and divergence per member. Yields each member's result as it ends."""
    size, train, shape = len(members), members[0].config.train, members[0].config.model
    train_step = stacked.make_train_step(graphdef, optimizer, dtype, train.batch_size, size)
    eval_step = stacked.make_eval_step(graphdef, dtype, train.batch_size, size)
    state = step_lib.replicate(stacked.join(states), train.batch_size)
    params, opt_state = state["params"], state["opt_state"]

    steps, start = members[0].info["steps"], members[0].start
    eval_every, ckpt_every = train.eval_every_steps, train.checkpoint_every_steps
    log_every = max(1, min(10, eval_every))
    window: list[jax.Array] = []
    window_t0, last_beat = time.perf_counter(), time.time()

    for step in range(start, steps):
        batch = stacked.stack_arrays([m.source.train_batch(m.config.train.seed, step, train.batch_size, shape.seq_len)
                                      for m in members])
        lrs = [lr_at(m.config.train, step, steps, m.info["warmup_steps"]) if m.active else 0.0 for m in members]
        lr = jnp.float32(lrs[0]) if size == 1 else jnp.asarray(lrs, jnp.float32)
        params, opt_state, metrics = train_step(params, opt_state, batch, lr)
        window.append(metrics["loss"])
        done_steps = step + 1
        is_eval = done_steps % eval_every == 0 or done_steps == steps
        is_ckpt = done_steps % ckpt_every == 0 or done_steps == steps or done_steps in save_at
        if not (done_steps % log_every == 0 or is_eval or is_ckpt):
            continue

        rows, diverged = _window_rows(members, done_steps, window, window_t0, lrs, metrics["grad_norm"])
        for m, row, losses, first_bad_step in diverged:
            m.track(row)
            result = _diverge(store, m.run_id, m.rows + [row], losses, first_bad_step)
            m.end_tracking("diverged", result.final)
            yield result
        if is_eval and rows:
            for k, scores in enumerate(evaluate(eval_step, params, members, train.batch_size, final=done_steps == steps)):
                if k in rows:
                    rows[k].update(scores)
        for k, row in rows.items():
            members[k].rows.append(row)
            members[k].last_metrics = row
            members[k].track(row)
        if is_ckpt:
            _save(members, rows, done_steps, {"params": params, "opt_state": opt_state}, store, on_saved)
        if time.time() - last_beat > HEARTBEAT_EVERY_S:
            for k in rows:
                store.heartbeat(members[k].run_id)
            last_beat = time.time()
        if progress:
            for k, row in rows.items():
                progress({**row, "steps": steps, "run_id": members[k].run_id})
        window, window_t0 = [], time.perf_counter()
        if not any(m.active for m in members):
            return
    yield from _finish(members, store)


# a member that diverged in a window: the member, its row, its losses in the window, its first bad step
Diverged = tuple[Member, dict[str, Any], np.ndarray, int]


def _window_rows(members: list[Member], done_steps: int, window: list[jax.Array], window_t0: float,
                 lrs: list[float], grad_norm: jax.Array) -> tuple[dict[int, dict[str, Any]], list[Diverged]]:
    """The metrics row of each active member for the logging window that ends at `done_steps`, by
    member index; a member whose window holds a non-finite loss, or one above max_loss, is set
    inactive and returned apart, in member order."""
    size, per_step = len(members), members[0].info["step_tokens"]
    losses_WK = np.asarray(jnp.stack(window)).reshape(len(window), size)
    grad_norms = stacked.per_member(grad_norm, size)
    elapsed = time.perf_counter() - window_t0  # after the losses reached the host: the window's steps ran
    rows: dict[int, dict[str, Any]] = {}
    diverged: list[Diverged] = []
    for k, m in enumerate(members):
        if not m.active:
            continue
        row = {
            "step": done_steps,
            "tokens": done_steps * per_step,
            "flops": float(m.info["flops_per_token"]) * done_steps * per_step,
            "train_loss": float(losses_WK[:, k].mean()),
            "lr": lrs[k],
            "grad_norm": float(grad_norms[k]),
            "tokens_per_s": len(window) * per_step / max(elapsed, 1e-9),
        }
        bad = ~np.isfinite(losses_WK[:, k]) | (losses_WK[:, k] > m.config.train.max_loss)
        if bad.any():
            m.active = False
            diverged.append((m, row, losses_WK[:, k], done_steps - len(window) + int(np.argmax(bad)) + 1))
        else:
            rows[k] = row
    return rows, diverged


def _save(members: list[Member], rows: dict[int, dict[str, Any]], done_steps: int, state: dict[str, Any],
          store: RunFolders, on_saved: SavedFn | None) -> None:
    """Checkpoint the members that logged a row at `done_steps` (`state` stacked over all members):
    their rows first, since a checkpoint counts only once the metrics up to it are durable."""
    for k in rows:
        store.write_metrics(members[k].run_id, pl.DataFrame(members[k].rows, infer_schema_length=None))
    for k in rows:
        position = {"seed": members[k].config.train.seed, "next_batch": done_steps}  # batch i = f(seed, i)
        members[k].ckpt.save(done_steps, stacked.member(state, k, len(members)), position)
        if on_saved:
            on_saved(members[k].run_id, done_steps)


def _finish(members: list[Member], store: RunFolders) -> Iterator[RunResult]:
    """Mark the members still active `done`, with their last metrics (lr aside) as final."""
    for m in members:
        if m.active:
            m.ckpt.close()
            final = {k: v for k, v in (m.last_metrics or (m.rows[-1] if m.rows else {})).items() if k != "lr"}
            store.write_status(m.run_id, "done", final=final, finished_at=time.time())
            m.end_tracking("done", final)
            yield RunResult(m.run_id, store.run_dir(m.run_id), "done", final)


def resume_point(ckpt: Checkpointer, store: RunFolders, run_id: str) -> tuple[int, list[dict[str, Any]]]:
    """Where a run resumes: the latest checkpoint whose metrics rows are all on disk, and those rows.

    The loop writes rows before the checkpoint they lead to, so normally that is the latest
    checkpoint. A checkpoint without its rows (a store written by an older scaler, killed between
    the two writes) is not used: the run falls back to the previous one, or starts afresh, and the
    later checkpoints are deleted, so no row is lost and no stale row becomes the final one. Rows
    past the resume point are dropped: the run writes them again, identically.
    """
    metrics = store.read_metrics(run_id)
    covered = int(metrics["step"].max()) if "step" in metrics.columns and metrics.height else 0
    saved = ckpt.all_steps()
    start = max((s for s in saved if s <= covered), default=0)
    if saved and start < saved[-1]:
        print(f"warning: run {run_id}: checkpoint {saved[-1]} has no metrics rows after step {covered} on disk; "
              f"resuming from {'step ' + str(start) if start else 'the start'}", file=sys.stderr)
        ckpt.discard_after(start)
    rows = metrics.filter(pl.col("step") <= start).to_dicts() if start else []
    return start, rows


def _diverge(
    store: RunFolders, run_id: str, rows: list[dict[str, Any]], losses: np.ndarray, first_bad_step: int
) -> RunResult:
    store.write_metrics(run_id, pl.DataFrame(rows, infer_schema_length=None))
    finite = losses[np.isfinite(losses)]
    reason = "non-finite loss" if len(finite) < len(losses) else "loss above max_loss"
    store.write_status(
        run_id,
        "diverged",
        reason=reason,
        diverged_at_step=first_bad_step,
        max_finite_loss=float(finite.max()) if len(finite) else None,
    )
    return RunResult(run_id, store.run_dir(run_id), "diverged", {"step": first_bad_step, "reason": reason})
