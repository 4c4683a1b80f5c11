"""Train one run into the store: resume from its checkpoint, log, evaluate, stop on divergence.

`train_run(config, store)` is the whole life of a run:

1. resolve defaults; the run id is the hash of the resolved config; write config.json;
2. a run already `done` or `diverged` is returned as it is (finished runs are never redone);
3. restore the latest orbax checkpoint if there is one (parameters, optimizer state, step; the
   data position is the step, since batch i is a pure function of (seed, i));
4. step with a jitted pure function; every `log_every` steps append a metrics row (mean train
   loss of the window, lr, grad norm, tokens/s), every `eval_every_steps` and at the end evaluate
   every eval set, every `checkpoint_every_steps` save a checkpoint and the metrics;
5. a non-finite loss, or one above `max_loss`, marks the run `diverged` and stops it.
"""

from __future__ import annotations

import math
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl
from flax import nnx

from scaler.config import ConfigError, DataConfig, RunConfig, parse_run_config
from scaler.data.source import TokenSource, stdlib_source
from scaler.model.family import count_params, count_params_nonembed, flops_per_token, training_flops
from scaler.model.transformer import init_model
from scaler.store import Store, StoreError, run_id_of
from scaler.train import step as step_lib
from scaler.train.checkpoint import CheckpointCorrupt, Checkpointer
from scaler.train.defaults import resolve, step_tokens
from scaler.train.schedule import lr_at

HEARTBEAT_EVERY_S = 10.0


@dataclass
class RunResult:
    run_id: str
    run_dir: str
    state: str  # done | diverged
    final: dict[str, Any] = field(default_factory=dict)


ProgressFn = Callable[[dict[str, Any]], None]


def open_source(data: DataConfig) -> TokenSource:
    if data.dir is None:
        return stdlib_source(data.heldout_fraction)
    from scaler.data.mix import MixError, MixSource

    source = MixSource(data.dir, data.mix, data.tokenizer, data.unique_tokens)
    if data.build_id is not None and data.build_id != source.build_id:
        raise MixError(
            f"data.dir {data.dir} holds build {source.build_id}, but this run was configured on build "
            f"{data.build_id}: the data was rebuilt since"
        )
    return source


def load_trained(run_dir: str | Path) -> tuple[RunConfig, nnx.GraphDef, Any]:
    """A finished run's config, graph definition and parameters at its last checkpoint."""
    run_dir = Path(run_dir).resolve()
    if not (run_dir / "config.json").exists() or run_dir.parent.name != "runs":
        raise ConfigError(f"{run_dir}: not a run folder (STORE/runs/RUN_ID with a config.json)")
    store = Store(str(run_dir.parent.parent))
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


def evaluate(eval_step, params, eval_sets: dict[str, np.ndarray], batch_size: int, source: TokenSource):
    """Mean loss (nats/token) and bits per byte on every eval set."""
    out: dict[str, float] = {}
    for name, tokens in eval_sets.items():
        losses = [float(eval_step(params, tokens[i : i + batch_size])) for i in range(0, len(tokens), batch_size)]
        loss = float(np.mean(losses))
        out[f"eval_{name}_loss"] = loss
        out[f"eval_{name}_bpb"] = loss / math.log(2) / source.eval_bytes_per_token(name)
    return out


def load_eval_sets(source: TokenSource, config: RunConfig) -> dict[str, np.ndarray]:
    """Each eval set rounded up to whole batches so one compiled eval step serves all."""
    seq_len, batch = config.model.seq_len, config.train.batch_size
    n_tokens = math.ceil(config.train.eval_tokens / (seq_len * batch)) * seq_len * batch
    return {name: source.eval_set(name, n_tokens, seq_len) for name in config.data.eval_sets}


def _finished(store: Store, run_id: str, state: str) -> RunResult:
    status = store.read_status(run_id)
    return RunResult(run_id, store.run_dir(run_id), state, status.get("final", {}))


def train_run(
    config: RunConfig,
    store: Store,
    source: TokenSource | None = None,
    progress: ProgressFn | None = None,
) -> RunResult:
    config = resolve(config)
    run_id = run_id_of(config.identity())
    store.write_config(run_id, config.identity())
    state = store.read_status(run_id)["state"]
    if state in ("done", "diverged"):
        return _finished(store, run_id, state)

    info = run_info(config)
    status = store.read_status(run_id)
    attempts, spent, started = status.get("attempts", 0) + 1, status.get("elapsed_s", 0.0), time.time()
    store.write_status(run_id, "running", attempts=attempts, started_at=started, heartbeat=started)
    try:
        result = _train(config, run_id, info, store, source or open_source(config.data), progress)
        store.write_status(run_id, result.state, elapsed_s=spent + time.time() - started)  # over all attempts
        return result
    except KeyboardInterrupt:
        _record(store, run_id, "pending", interrupted_at=time.time(), elapsed_s=spent + time.time() - started)
        raise  # the run resumes from its checkpoint
    except BaseException as err:
        last = traceback.format_exception_only(type(err), err)[-1].strip()
        _record(store, run_id, "failed", error=last or type(err).__name__, elapsed_s=spent + time.time() - started)
        raise


def _record(store: Store, run_id: str, state: str, **fields: Any) -> None:
    """The run's state after an error; when the store cannot take even that (a full disk), the
    error that stopped the run is the one that is raised."""
    try:
        store.write_status(run_id, state, **fields)
    except StoreError:
        pass


def _train(
    config: RunConfig, run_id: str, info: dict[str, Any], store: Store, source: TokenSource, progress: ProgressFn | None
) -> RunResult:
    shape, train = config.model, config.train
    if source.vocab_size > shape.vocab_size:
        raise ConfigError(f"the data has {source.vocab_size} token ids but model.vocab_size is {shape.vocab_size}")
    platform = jax.default_backend()
    dtype = step_lib.compute_dtype_for(train.compute_dtype, platform)
    usage = source.usage(train.seed, info["steps"], train.batch_size, shape.seq_len)  # tokens drawn per pool, epochs
    store.write_json(run_id, "run_info.json", {**info, "platform": platform, "compute_dtype": jnp.dtype(dtype).name,
                                               **usage, "data": source.describe()})

    graphdef, params = nnx.split(init_model(shape, train.seed))
    optimizer = step_lib.make_optimizer(train)
    opt_state = optimizer.init(params)
    train_step = step_lib.make_train_step(graphdef, optimizer, dtype, train.batch_size)
    eval_step = step_lib.make_eval_step(graphdef, dtype, train.batch_size)
    eval_sets = load_eval_sets(source, config)

    ckpt = Checkpointer(store.ckpt_dir(run_id))
    start, rows = resume_point(ckpt, store, run_id)
    while start:  # the latest sound checkpoint whose rows are on disk; none: a fresh start
        try:
            restored, position = ckpt.restore(start, {"params": params, "opt_state": opt_state})
            break
        except CheckpointCorrupt as err:
            moved = ckpt.set_aside(start)
            start, rows = resume_point(ckpt, store, run_id)
            print(f"warning: run {run_id}: {err}; moved to {moved}; resuming from "
                  f"{'step ' + str(start) if start else 'the start'}", file=sys.stderr)
    if start:
        params, opt_state = restored["params"], restored["opt_state"]
        if (position["seed"], position["next_batch"]) != (train.seed, start):
            raise ValueError(f"checkpoint {start} of run {run_id} holds data position {position}")
    params, opt_state = step_lib.replicate((params, opt_state), train.batch_size)

    steps, per_step, warmup = info["steps"], info["step_tokens"], info["warmup_steps"]
    eval_every, ckpt_every = train.eval_every_steps, train.checkpoint_every_steps
    log_every = max(1, min(10, eval_every))
    window: list[jax.Array] = []
    window_t0, last_beat = time.perf_counter(), time.time()
    last_metrics: dict[str, Any] = {}

    for step in range(start, steps):
        batch = source.train_batch(train.seed, step, train.batch_size, shape.seq_len)
        lr = lr_at(train, step, steps, warmup)
        params, opt_state, metrics = train_step(params, opt_state, batch, jnp.float32(lr))
        window.append(metrics["loss"])
        done_steps = step + 1
        is_eval = done_steps % eval_every == 0 or done_steps == steps
        is_ckpt = done_steps % ckpt_every == 0 or done_steps == steps
        if not (done_steps % log_every == 0 or is_eval or is_ckpt):
            continue

        losses = np.asarray(jnp.stack(window))
        elapsed = time.perf_counter() - window_t0
        row = {
            "step": done_steps,
            "tokens": done_steps * per_step,
            "flops": float(info["flops_per_token"]) * done_steps * per_step,
            "train_loss": float(losses.mean()),
            "lr": lr,
            "grad_norm": float(metrics["grad_norm"]),
            "tokens_per_s": len(losses) * per_step / max(elapsed, 1e-9),
        }
        bad = ~np.isfinite(losses) | (losses > train.max_loss)
        if bad.any():
            first_bad_step = done_steps - len(losses) + int(np.argmax(bad)) + 1
            return _diverge(store, run_id, rows + [row], losses, first_bad_step)
        if is_eval:
            row.update(evaluate(eval_step, params, eval_sets, train.batch_size, source))
        rows.append(row)
        last_metrics = row
        if is_ckpt:  # the rows first: a checkpoint counts only once the metrics up to it are durable
            store.write_metrics(run_id, pl.DataFrame(rows, infer_schema_length=None))
            position = {"seed": train.seed, "next_batch": done_steps}  # batch i = f(seed, i)
            ckpt.save(done_steps, {"params": params, "opt_state": opt_state}, position)
        if time.time() - last_beat > HEARTBEAT_EVERY_S:
            store.heartbeat(run_id)
            last_beat = time.time()
        if progress:
            progress({**row, "steps": steps, "run_id": run_id})
        window, window_t0 = [], time.perf_counter()

    ckpt.close()
    final = {k: v for k, v in (last_metrics or (rows[-1] if rows else {})).items() if k != "lr"}
    store.write_status(run_id, "done", final=final, finished_at=time.time())
    return RunResult(run_id, store.run_dir(run_id), "done", final)


def resume_point(ckpt: Checkpointer, store: Store, run_id: str) -> tuple[int, list[dict[str, Any]]]:
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
    store: Store, run_id: str, rows: list[dict[str, Any]], losses: np.ndarray, first_bad_step: int
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
