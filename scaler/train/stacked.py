"""Stacked runs: K runs of one shape trained by one jitted, vmapped step (docs/design.md §9).

A scaling study is many small runs, and a small model leaves most of a device idle: one step of a
30k-parameter model is mostly dispatch overhead. Runs that share a shape, a batch and a step count
can share that step: their parameters and optimizer states are stacked on a leading axis K, the
pure step (`scaler.train.step.pure_train_step`) is vmapped over it, and each run keeps its own
seed, data stream, learning rate and schedule (the rate enters the step as a (K,) array). Each run
keeps its own store folder, metrics, checkpoints, claim and status: the training loop
(`scaler.train.loop.train_stack`) is the same for a stack of one, which is a solo run, unvmapped.

What may differ inside a stack: the seed, the data (mix, tier, data folder, unique tokens) and the
learning-rate schedule (lr, schedule, warmup, cooldown, final fraction). Everything else that
enters the compiled step or the loop's timing (shape, batch, steps, optimizer constants, dtype,
eval and checkpoint cadence, eval sets) must be equal: `scaler.train.stack_groups.stack_key`, where
runs are grouped into stacks (without JAX, so that sweep drivers can group).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from scaler.train import step as step_lib

# -- stacked pytrees and steps ---------------------------------------------------------------------
def join(values: Sequence[Any]) -> Any:
    """Members' values (pytrees or arrays) stacked on a new leading axis; a stack of one is the
    member's value itself, so a solo run is unvmapped."""
    if len(values) == 1:
        return values[0]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *values)


def stack_arrays(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Members' host arrays (batches, eval sets) on a new leading axis; a stack of one: the array."""
    return arrays[0] if len(arrays) == 1 else np.stack(arrays)


def member(stacked: Any, k: int, size: int) -> Any:
    """Member k's slice of a stacked pytree (of `size` members)."""
    return stacked if size == 1 else jax.tree.map(lambda x: x[k], stacked)


def per_member(value: Any, size: int) -> np.ndarray:
    """A step output as a (size,) numpy array (a solo run's scalar included)."""
    return np.asarray(value).reshape(size)


def make_train_step(graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, dtype: jnp.dtype,
                    batch_size: int, size: int) -> Callable:
    """The compiled step of a stack of `size` (params and opt_state stacked, tokens (K, B, T+1),
    lr (K,)); a stack of one is the solo step. Data parallel over the batch axis as the solo step."""
    if size == 1:
        return step_lib.make_train_step(graphdef, optimizer, dtype, batch_size)
    vmapped = jax.vmap(step_lib.pure_train_step(graphdef, optimizer, dtype))
    return step_lib.jit_over_batch(vmapped, batch_size, batch_argnum=2, n_args=4, batch_axis=1, donate_argnums=(0, 1))


def make_eval_step(graphdef: nnx.GraphDef, dtype: jnp.dtype, batch_size: int, size: int) -> Callable:
    """One batch per member: (params, tokens (K, B, T+1), weights (K, B, T)) -> (loss sums (K,),
    weight sums (K,)); a stack of one is the solo step."""
    if size == 1:
        return step_lib.make_eval_step(graphdef, dtype, batch_size)
    vmapped = jax.vmap(step_lib.weighted_loss_fn(graphdef, dtype))
    return step_lib.jit_over_batch(vmapped, batch_size, batch_argnum=(1, 2), n_args=3, batch_axis=1)
