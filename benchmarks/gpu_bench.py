"""Training throughput on one accelerator: solo runs of about 10M, 50M and 150M parameters, and
stacks of K = 1, 8, 32 runs of about 2M parameters, with scaler's own model and steps.

Run by `benchmarks/gpu.sh` on a machine with an NVIDIA GPU and JAX. It needs nothing beyond jax,
flax, optax, numpy and this repository: scaler's model (`scaler/model/transformer.py`) and steps
(`scaler/train/step.py`, `scaler/train/stacked.py`) are imported without the package's
`__init__`, which would need pydantic and polars.

What is measured:
- peak: the best of 10 jitted bf16 8192^3 `jnp.dot`s (2 n^3 / t), the rate MFU is measured against;
- solo: `make_train_step` (bf16 compute, fp32 master weights, AdamW as optax pieces, the data
  split over local devices) on random tokens, sequence 1024, batch 32; tokens/s over the timed
  steps after compiling and 3 warmup steps; MFU = flops_v1 per token (6 N + 12 L T D, as
  `scaler.config.flops_per_token`) x tokens/s / peak;
- stack: K runs of one 2M-parameter shape (vocabulary 4,096, batch 8 each) by one vmapped step
  (`stacked.make_train_step(..., size=K)`); tokens/s of all K together, and the speed-up against
  K = 1.

Output: header lines starting with "#", then one line per case:

    case=<solo|stack> params=<N> k=<K> tok_s=<x> mfu=<m> speedup=<s>

Goals of issue 13 on an H100-class GPU: MFU >= 0.40 for the 150M run; K = 32 at >= 10x the tokens/s
of K = 1. `--smoke` runs tiny shapes for a few steps on whatever JAX has (the CPU in the tests).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Shape:
    """The fields of `scaler.config.ModelShape` the model reads."""

    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    vocab_size: int
    seq_len: int

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


@dataclasses.dataclass(frozen=True)
class Optim:
    """The fields of `scaler.config.TrainConfig` the optimizer reads."""

    grad_clip: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1


SOLO = {"10M": Shape(256, 4, 4, 688, 16_384, 1024), "50M": Shape(512, 8, 8, 1376, 16_384, 1024),
        "150M": Shape(768, 16, 12, 2048, 16_384, 1024)}
STACKED = Shape(128, 6, 2, 352, 4_096, 1024)
SMOKE_SOLO = {"tiny": Shape(32, 1, 2, 96, 257, 64)}
SMOKE_STACKED = Shape(32, 1, 2, 96, 257, 64)


def scaler_modules() -> tuple[Any, Any, Any]:
    """scaler's model, step and stacked modules, without running scaler/__init__.py."""
    if "scaler" not in sys.modules:
        package = types.ModuleType("scaler")
        package.__path__ = [str(ROOT / "scaler")]
        sys.modules["scaler"] = package
    from scaler.model import transformer
    from scaler.train import stacked, step

    return transformer, step, stacked


def flops_per_token(shape: Shape, n_params: int) -> int:
    """flops_v1 (docs/design.md §3): 6 N + 12 L T D."""
    return 6 * n_params + 12 * shape.n_layers * shape.seq_len * shape.d_model


def matmul_peak(jax: Any, jnp: Any, n: int, dtype: Any) -> float:
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    best = float("inf")
    for _ in range(10):
        t0 = time.perf_counter()
        dot(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def throughput(shape: Shape, size: int, batch: int, steps: int, dtype: Any) -> tuple[int, float]:
    """(parameters of one run, tokens/s of all `size` runs) over `steps` timed steps."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    transformer, step_lib, stacked = scaler_modules()
    graphdef, params = nnx.split(transformer.init_model(shape, 0))
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    optimizer = step_lib.make_optimizer(Optim())
    state = stacked.join([{"params": params, "opt_state": optimizer.init(params)}] * size)
    state = step_lib.replicate(state, batch)
    params, opt_state = state["params"], state["opt_state"]
    train_step = stacked.make_train_step(graphdef, optimizer, dtype, batch, size)
    rng = np.random.default_rng(0)
    batches = [stacked.stack_arrays([rng.integers(0, shape.vocab_size, (batch, shape.seq_len + 1), np.int32)
                                     for _ in range(size)]) for _ in range(4)]
    lr = jnp.float32(1e-3) if size == 1 else jnp.full((size,), 1e-3, jnp.float32)
    for i in range(4):  # compile and warm up
        params, opt_state, metrics = train_step(params, opt_state, batches[i % 4], lr)
    jax.block_until_ready(metrics["loss"])
    t0 = time.perf_counter()
    for i in range(steps):
        params, opt_state, metrics = train_step(params, opt_state, batches[i % 4], lr)
    jax.block_until_ready(metrics["loss"])
    return n_params, size * steps * batch * shape.seq_len / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, a few steps, any backend (tests)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per case (default 20, smoke 2)")
    args = parser.parse_args()
    import jax
    import jax.numpy as jnp

    backend = jax.default_backend()
    if backend != "gpu" and not args.smoke:
        print(f"error: no GPU: JAX's backend is {backend} ({jax.devices()}); `--smoke` runs on it anyway",
              file=sys.stderr)
        return 2
    steps = args.steps or (2 if args.smoke else 20)
    dtype = jnp.float32 if args.smoke else jnp.bfloat16
    peak = matmul_peak(jax, jnp, 256 if args.smoke else 8192, dtype)
    device = jax.devices()[0]
    print(f"# device: {getattr(device, 'device_kind', device.platform)} x {jax.device_count()} ({backend}); "
          f"jax {jax.__version__}", flush=True)
    print(f"# matmul peak ({jnp.dtype(dtype).name} {256 if args.smoke else 8192}^3 jnp.dot, best of 10): "
          f"{peak / 1e12:.1f} TFLOP/s", flush=True)
    for name, shape in (SMOKE_SOLO if args.smoke else SOLO).items():
        n_params, tok_s = throughput(shape, 1, 4 if args.smoke else 32, steps, dtype)
        print(f"case=solo params={n_params} k=1 tok_s={tok_s:.0f} "
              f"mfu={flops_per_token(shape, n_params) * tok_s / peak:.3f} speedup=1.00", flush=True)
    small = SMOKE_STACKED if args.smoke else STACKED
    one = None
    for k in ((1, 2) if args.smoke else (1, 8, 32)):
        n_params, tok_s = throughput(small, k, 4 if args.smoke else 8, steps, dtype)
        one = one or tok_s
        print(f"case=stack params={n_params} k={k} tok_s={tok_s:.0f} "
              f"mfu={flops_per_token(small, n_params) * tok_s / peak:.3f} speedup={tok_s / one:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
