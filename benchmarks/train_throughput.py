"""Training throughput on this machine: scaler's jitted step against a PyTorch eager twin, and MFU.

What is measured, for each model size (default targets 130k, 1M and 5M parameters from scaler's
`Family`, seq_len 256, byte vocabulary 257):

- jax: scaler's own training step (`scaler.train.step.make_train_step`, fp32, the optax AdamW chain,
  the model of `scaler/model/transformer.py`), exactly as the trainer uses it;
- torch: the same architecture and optimiser in PyTorch eager (`benchmarks/torch_model.py`),
  started from the *same weights* (copied from the scaler model) and fed the *same batches*
  (`stdlib_source().train_batch(seed=0, i, B, T)`), with `torch.set_num_threads(os.cpu_count())`.

Compilation and warmup steps are excluded. The timed steps run in rounds that alternate between the
two frameworks (so a noisy neighbour hits both alike); tokens/s is the median over rounds. Each
step's loss is read back (as the trainer does every few steps), so the numbers are steady-state
training throughput, host overhead included. The script warns when other processes kept cores
busy while it was timing (the 1-minute load average beyond the cores this process used): both
rates are then low and noisy, and PyTorch's OpenMP threads suffer more from a busy machine than XLA's, so the ratio is
off too.

MFU = flops_per_token(shape) * tokens/s / matmul peak, where flops_per_token is scaler's `flops_v1`
(6 N + 12 L T D) and the peak is measured in this process: the best of several jitted fp32
2048x2048 `jnp.dot`s (2 n^3 / t).

Correctness checks (a failure prints CHECK FAILED and the exit status is 1): the two initial losses
on batch 0 agree to 1e-3 (same weights) and lie within 1 nat of ln(vocab); both losses fall over the
timed steps; the final losses of the two frameworks agree to 0.1 nats.

Output: a few header lines, then one line per size, exactly

    size=<n_params> jax_tok_s=<x> torch_tok_s=<y> ratio=<x/y> mfu=<m>

ratio > 1 means scaler's step is faster than PyTorch eager; mfu is a fraction (0.35 = 35%) of the
measured matmul peak. Without torch (`pip install -e '.[bench]'`) the script prints the jax numbers
with torch_tok_s=nan ratio=nan.

    python benchmarks/train_throughput.py                    # the three default sizes, ~1.5 min
    python benchmarks/train_throughput.py --sizes 1e6 --steps 20
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scaler.config import ModelShape, RunConfig, TrainConfig
from scaler.data.source import stdlib_source
from scaler.model.family import Family, count_params, flops_per_token
from scaler.model.transformer import init_model
from scaler.runtime import configure_cpu
from scaler.train import step as step_lib
from scaler.train.defaults import resolve

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import torch

    import torch_model
except ImportError:  # torch is an optional dependency (the `bench` extra)
    torch = None

SEQ_LEN = 256
VOCAB = 257
DEFAULT_SIZES = (130_000, 1_000_000, 5_000_000)
# timed steps per size: enough for a stable rate, small enough for ~1.5 minutes in all on 2 cores
DEFAULT_STEPS = {130_000: 45, 1_000_000: 21, 5_000_000: 9}
WARMUP_STEPS = 2
ROUNDS = 3


def matmul_peak_flops(n: int = 2048, repeats: int = 10) -> float:
    """Best fp32 FLOP/s of a jitted n x n x n jnp.dot in this process."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        dot(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def cpu_seconds() -> float:
    """CPU seconds this process has used so far (all its threads)."""
    own = os.times()
    return own.user + own.system


def warn_if_disturbed(before: float, after: float, wall: float) -> None:
    """Other processes taking CPU time make both rates low and noisy: say so. The machine's
    1-minute load average, less the cores this process kept busy, estimates the others' share."""
    own_cores = (after - before) / wall
    others = os.getloadavg()[0] - own_cores
    if others > 0.5:
        print(f"# warning: while timing, other processes kept about {others:.1f} cores busy: these rates are "
              "noisy; run again on a quiet machine", flush=True)


def train_config(shape: ModelShape, batch_size: int) -> TrainConfig:
    """The trainer's resolved defaults for this size (lr, beta2, ...), used at a constant lr."""
    raw = TrainConfig(tokens=1_000 * batch_size * shape.seq_len, batch_size=batch_size)
    return resolve(RunConfig(model=shape, train=raw)).train


@dataclass
class Runner:
    """One framework's training step (tokens -> loss), the losses it returned and its timed rates."""

    name: str
    step: Callable[[np.ndarray], Any]
    losses: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)

    def timed(self, batches: list, tokens_per_step: int) -> None:
        t0 = time.perf_counter()
        losses = [self.step(b) for b in batches]
        self.losses += [float(x) for x in losses]  # reading the losses waits for the last step
        self.rates.append(len(batches) * tokens_per_step / (time.perf_counter() - t0))

    @property
    def tok_s(self) -> float:
        return statistics.median(self.rates) if self.rates else math.nan


def jax_runner(shape: ModelShape, train: TrainConfig):
    graphdef, params = nnx.split(init_model(shape, seed=0))
    optimizer = step_lib.make_optimizer(train)
    opt_state = optimizer.init(params)
    train_step = step_lib.make_train_step(graphdef, optimizer, jnp.float32, train.batch_size)
    loss_fn = jax.jit(step_lib.make_loss_fn(graphdef, jnp.float32))
    params, opt_state = step_lib.replicate((params, opt_state), train.batch_size)
    lr = jnp.float32(train.lr)
    state = {"params": params, "opt_state": opt_state}

    def step(tokens: np.ndarray) -> jax.Array:
        state["params"], state["opt_state"], metrics = train_step(
            state["params"], state["opt_state"], tokens, lr
        )
        return metrics["loss"]

    def initial_loss(tokens: np.ndarray) -> float:
        return float(loss_fn(state["params"], jnp.asarray(tokens)))

    return Runner("jax", step), initial_loss, params


def torch_runner(shape: ModelShape, train: TrainConfig, scaler_params):
    model = torch_model.Transformer(shape)
    torch_model.load_from_scaler(model, scaler_params)
    optimizer = torch_model.make_optimizer(model, train, lr=train.lr)
    train_step = torch_model.make_train_step(model, optimizer, train.grad_clip)

    def step(tokens: np.ndarray) -> torch.Tensor:
        return train_step(torch.from_numpy(tokens).long())

    def initial_loss(tokens: np.ndarray) -> float:
        t = torch.from_numpy(tokens).long()
        with torch.no_grad():
            logits = model(t[:, :-1])
            return float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), t[:, 1:].flatten()))

    return Runner("torch", step), initial_loss


def check(ok: bool, what: str, failures: list[str]) -> None:
    if not ok:
        failures.append(what)
        print(f"CHECK FAILED: {what}", flush=True)


def bench_size(target: int, batch_size: int, steps: int, peak: float, failures: list[str]) -> None:
    shape = Family(vocab_size=VOCAB, seq_len=SEQ_LEN).shape_for_params(target)
    n_params = count_params(shape)
    train = train_config(shape, batch_size)
    source = stdlib_source()
    batches = [source.train_batch(0, i, batch_size, SEQ_LEN) for i in range(WARMUP_STEPS + steps)]
    tokens_per_step = batch_size * SEQ_LEN
    print(
        f"# size={n_params}: d_model={shape.d_model} n_layers={shape.n_layers} n_heads={shape.n_heads} "
        f"d_ff={shape.d_ff}, batch {batch_size}x{SEQ_LEN}, lr {train.lr:.2e}, {steps} timed steps",
        flush=True,
    )

    jax_run, jax_loss0, params = jax_runner(shape, train)
    runners = [jax_run]
    loss0 = {"jax": jax_loss0(batches[0])}
    if torch is not None:  # built before the jax step donates (consumes) the initial parameters
        torch_run, torch_loss0 = torch_runner(shape, train, params)
        runners.append(torch_run)
        loss0["torch"] = torch_loss0(batches[0])

    for runner in runners:  # compile / warm up, untimed; reading the loss waits for each step
        for b in batches[:WARMUP_STEPS]:
            float(runner.step(b))
    timed = batches[WARMUP_STEPS:]
    per_round = max(1, len(timed) // ROUNDS)
    before, t0 = cpu_seconds(), time.perf_counter()
    for start in range(0, len(timed), per_round):
        for runner in runners:
            runner.timed(timed[start : start + per_round], tokens_per_step)
    warn_if_disturbed(before, cpu_seconds(), time.perf_counter() - t0)

    check(abs(loss0["jax"] - math.log(VOCAB)) < 1.0, f"size={n_params}: initial jax loss {loss0['jax']:.3f} "
          f"is not within 1 nat of ln({VOCAB}) = {math.log(VOCAB):.3f}", failures)
    for runner in runners:
        check(runner.losses[-1] < runner.losses[0], f"size={n_params}: {runner.name} loss did not fall "
              f"({runner.losses[0]:.3f} -> {runner.losses[-1]:.3f})", failures)
    if torch is not None:
        check(abs(loss0["jax"] - loss0["torch"]) < 1e-3, f"size={n_params}: initial losses differ: "
              f"jax {loss0['jax']:.5f}, torch {loss0['torch']:.5f}", failures)
        check(abs(jax_run.losses[-1] - torch_run.losses[-1]) < 0.1, f"size={n_params}: final losses differ: "
              f"jax {jax_run.losses[-1]:.4f}, torch {torch_run.losses[-1]:.4f}", failures)
        print(f"# loss jax {loss0['jax']:.4f} -> {jax_run.losses[-1]:.4f}, "
              f"torch {loss0['torch']:.4f} -> {torch_run.losses[-1]:.4f}", flush=True)
        torch_tok_s = torch_run.tok_s
    else:
        print(f"# loss jax {loss0['jax']:.4f} -> {jax_run.losses[-1]:.4f}", flush=True)
        torch_tok_s = math.nan

    jax_tok_s = jax_run.tok_s
    mfu = flops_per_token(shape) * jax_tok_s / peak
    print(f"size={n_params} jax_tok_s={jax_tok_s:.0f} torch_tok_s={torch_tok_s:.0f} "
          f"ratio={jax_tok_s / torch_tok_s:.3f} mfu={mfu:.3f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=DEFAULT_SIZES, help="target parameter counts")
    parser.add_argument("--batch-size", type=int, default=16, help="sequences of 256 tokens per step")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per size (default: by size)")
    parser.add_argument("--host-devices", type=int, default=None,
                        help="XLA CPU devices; default: as the scaler CLI sets them (one per core)")
    args = parser.parse_args()
    configure_cpu(args.host_devices)  # before JAX starts its backend (the first computation)

    if jax.default_backend() != "cpu":
        print(f"# note: jax backend is {jax.default_backend()}; this benchmark is meant for the CPU")
    if torch is None:
        print("# torch is not installed: jax numbers only. Install it with `pip install -e '.[bench]'` "
              "(torch==2.13.0) to compare against PyTorch eager.")
    else:
        torch.set_num_threads(os.cpu_count() or 1)
        print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"# jax {jax.__version__}, {os.cpu_count()} CPUs, devices {jax.devices()}")
    peak = matmul_peak_flops()
    print(f"# matmul peak (jax fp32 2048^3 jnp.dot, best of 10): {peak / 1e9:.1f} GFLOP/s", flush=True)

    failures: list[str] = []
    for target in (int(s) for s in args.sizes):
        steps = args.steps or DEFAULT_STEPS.get(target, 10)
        bench_size(target, args.batch_size, steps, peak, failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
