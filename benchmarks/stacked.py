"""Stacked runs against the same runs one after another (scaler/train/stacked.py), in one process.

For each shape (default targets 30k, 130k and 1M parameters from scaler's `Family`, seq_len 128,
batch 8, byte vocabulary: the demo's settings) and each K (default 1, 4, 9, 16), K runs that differ
in seed and learning rate take the same number of steps two ways:

- stacked: one compiled, vmapped step for all K (`stacked.make_train_step(..., size=K)`);
- serial: the solo step (`size=1`, the trainer's own step), each run's step in turn.

Both draw every run's batch from its own data stream (`stdlib_source().train_batch(seed, i, B, T)`)
and compute its learning rate, as the training loop does; compilation and a warmup round are
excluded. Timed rounds alternate between the two ways (so a noisy neighbour hits both alike), and
tokens/s (all K runs together) is the median over rounds. Output, one line per case:

    shape=<n_params> k=<K> stacked_tok_s=<x> serial_tok_s=<y> ratio=<x/y>

ratio > 1: the stack trains the K runs faster than one after the other. A check (CHECK FAILED, exit
status 1) compares the losses after the timed steps: each stacked member equals its serial twin to
1e-4 nats.

    python benchmarks/stacked.py                         # the default grid, ~5 min on 2 cores
    python benchmarks/stacked.py --sizes 3e4 --ks 1 9 --steps 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scaler.runtime import configure_cpu

configure_cpu()  # before JAX starts: one XLA host device per core, as the trainer has

from scaler.config import RunConfig  # noqa: E402
from scaler.data.source import stdlib_source  # noqa: E402
from scaler.model.family import Family, count_params  # noqa: E402
from scaler.model.transformer import init_model  # noqa: E402
from scaler.train import stacked  # noqa: E402
from scaler.train import step as step_lib  # noqa: E402
from scaler.train.defaults import resolve  # noqa: E402

SEQ_LEN, BATCH, VOCAB = 128, 8, 257
DEFAULT_SIZES = [3e4, 1.3e5, 1e6]
DEFAULT_KS = [1, 4, 9, 16]


def configs_for(target: int, k: int, steps: int) -> list[RunConfig]:
    shape = Family(vocab_size=VOCAB, seq_len=SEQ_LEN).shape_for_params(target)
    return [resolve(RunConfig.model_validate({
        "model": shape.model_dump(),
        "train": {"tokens": steps * BATCH * SEQ_LEN, "batch_size": BATCH, "seed": seed, "lr": 3e-3 * (1 + 0.1 * seed)},
    })) for seed in range(k)]


def bench_case(target: int, k: int, steps: int, rounds: int, failures: list[str]) -> None:
    configs = configs_for(target, k, steps * (rounds + 1))
    source = stdlib_source()
    dtype = jnp.float32
    graphdef, _ = nnx.split(init_model(configs[0].model, 0))
    optimizer = step_lib.make_optimizer(configs[0].train)

    def fresh_state(seed: int):
        params = nnx.split(init_model(configs[0].model, seed))[1]
        return {"params": params, "opt_state": optimizer.init(params)}

    solo_step = stacked.make_train_step(graphdef, optimizer, dtype, BATCH, 1)
    stack_step = stacked.make_train_step(graphdef, optimizer, dtype, BATCH, k)
    serial = [step_lib.replicate(fresh_state(c.train.seed), BATCH) for c in configs]
    stack = step_lib.replicate(stacked.join([fresh_state(c.train.seed) for c in configs]), BATCH)
    lrs = [c.train.lr for c in configs]

    def run_serial(first: int, n: int) -> None:
        for i in range(first, first + n):
            for j, c in enumerate(configs):
                batch = source.train_batch(c.train.seed, i, BATCH, SEQ_LEN)
                p, o, m = solo_step(serial[j]["params"], serial[j]["opt_state"], batch, jnp.float32(lrs[j]))
                serial[j] = {"params": p, "opt_state": o, "loss": m["loss"]}
        jax.block_until_ready([s["params"] for s in serial])

    def run_stacked(first: int, n: int) -> None:
        nonlocal stack
        lr = jnp.float32(lrs[0]) if k == 1 else jnp.asarray(lrs, jnp.float32)
        for i in range(first, first + n):
            batch = stacked.stack_arrays([source.train_batch(c.train.seed, i, BATCH, SEQ_LEN) for c in configs])
            p, o, m = stack_step(stack["params"], stack["opt_state"], batch, lr)
            stack = {"params": p, "opt_state": o, "loss": m["loss"]}
        jax.block_until_ready(stack["params"])

    run_serial(0, 1)  # compile and warm up
    run_stacked(0, 1)
    stacked_rates, serial_rates = [], []
    tokens = steps * BATCH * SEQ_LEN * k
    position = 1
    for _ in range(rounds):
        t0 = time.perf_counter()
        run_stacked(position, steps)
        stacked_rates.append(tokens / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        run_serial(position, steps)
        serial_rates.append(tokens / (time.perf_counter() - t0))
        position += steps
    stacked_losses = stacked.per_member(stack["loss"], k)
    serial_losses = np.array([float(s["loss"]) for s in serial])
    if not np.allclose(stacked_losses, serial_losses, atol=1e-4, rtol=0):
        failures.append(f"shape={count_params(configs[0].model)} k={k}: stacked losses {stacked_losses} "
                        f"differ from serial {serial_losses}")
    x, y = statistics.median(stacked_rates), statistics.median(serial_rates)
    print(f"shape={count_params(configs[0].model)} k={k} stacked_tok_s={x:.0f} serial_tok_s={y:.0f} "
          f"ratio={x / y:.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=DEFAULT_SIZES, help="target parameter counts")
    parser.add_argument("--ks", type=int, nargs="+", default=DEFAULT_KS, help="stack sizes")
    parser.add_argument("--steps", type=int, default=None, help="steps per timed round (default by size)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"# {jax.device_count()} {jax.default_backend()} devices; seq_len {SEQ_LEN}, batch {BATCH}; "
          f"median of {args.rounds} alternating rounds", flush=True)
    failures: list[str] = []
    for target in (int(s) for s in args.sizes):
        steps = args.steps or (30 if target < 2e5 else 8)
        for k in args.ks:
            bench_case(target, k, steps, args.rounds, failures)
    for failure in failures:
        print(f"CHECK FAILED: {failure}", file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
