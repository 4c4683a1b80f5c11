"""The training step: a pure function of (params, opt_state, tokens, lr), compiled once with `jax.jit`.

The NNX model is split once into a static graph definition and a parameter pytree; the step
merges them inside the traced function, so per-step Python cost is one jitted call (`nnx.jit`
costs too much per call for small models). Because the step is pure and the learning rate is an
argument, it vmaps over runs (stacked training, docs/design.md §9).

AdamW is written as optax pieces so the learning rate stays an input:
clip_by_global_norm -> scale_by_adam -> add_decayed_weights (matrices only), then params -= lr * u.

Data parallelism: when several local devices can split the batch evenly (GPUs, TPU cores, or CPU
host devices from `scaler.runtime.configure_cpu`), the batch is sharded over a 1-D `data` mesh and
parameters and optimizer state are replicated; XLA inserts the gradient all-reduce.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

if TYPE_CHECKING:  # the step needs only jax, flax, optax and numpy at run time (benchmarks/gpu_bench.py)
    from scaler.config import TrainConfig

Params = Any  # an nnx.State of fp32 arrays
StepFn = Callable[[Params, optax.OptState, jax.Array, jax.Array], tuple[Params, optax.OptState, dict]]


def make_optimizer(train: TrainConfig) -> optax.GradientTransformation:
    assert train.beta2 is not None, "resolve the config first"
    return optax.chain(
        optax.clip_by_global_norm(train.grad_clip),
        optax.scale_by_adam(b1=train.beta1, b2=train.beta2, eps=train.eps),
        optax.add_decayed_weights(train.weight_decay, mask=lambda p: jax.tree.map(lambda x: x.ndim >= 2, p)),
    )


def compute_dtype_for(setting: str, platform: str) -> jnp.dtype:
    """fp32 on CPU; bf16 compute on GPU/TPU unless the config pins a dtype."""
    if setting == "auto":
        return jnp.float32 if platform == "cpu" else jnp.bfloat16
    return jnp.dtype(setting)


def cross_entropy(logits_BTV: jax.Array, targets_BT: jax.Array) -> jax.Array:
    """Mean next-token cross-entropy in nats, computed in fp32."""
    losses = optax.softmax_cross_entropy_with_integer_labels(logits_BTV.astype(jnp.float32), targets_BT)
    return losses.mean()


def make_loss_fn(graphdef: nnx.GraphDef, dtype: jnp.dtype) -> Callable[[Params, jax.Array], jax.Array]:
    def loss_fn(params: Params, tokens_BT1: jax.Array) -> jax.Array:
        model = nnx.merge(graphdef, params)
        logits_BTV = model(tokens_BT1[:, :-1], dtype)
        return cross_entropy(logits_BTV, tokens_BT1[:, 1:])

    return loss_fn


def data_mesh(batch_size: int) -> Mesh | None:
    """The most local devices that split `batch_size` evenly, as a 1-D `data` mesh (None: one)."""
    devices = jax.local_devices()
    n = max(k for k in range(1, len(devices) + 1) if batch_size % k == 0)
    return Mesh(np.array(devices[:n]), ("data",)) if n > 1 else None


def _shardings(mesh: Mesh, batch_axis: int = 0) -> tuple[NamedSharding, NamedSharding]:
    """(replicated, split over the data mesh along `batch_axis`)."""
    return NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec(*[None] * batch_axis, "data"))


def jit_over_batch(fn: Callable, batch_size: int, batch_argnum: int | tuple[int, ...], n_args: int,
                   batch_axis: int = 0, **jit_kwargs: Any) -> Callable:
    """jax.jit, with argument(s) `batch_argnum` split over the data mesh along `batch_axis` (1 for a
    stack's (K, B, T+1) tokens) and the rest replicated."""
    mesh = data_mesh(batch_size)
    if mesh is None:
        return jax.jit(fn, **jit_kwargs)
    whole, split = _shardings(mesh, batch_axis)
    batched = {batch_argnum} if isinstance(batch_argnum, int) else set(batch_argnum)
    in_shardings = tuple(split if i in batched else whole for i in range(n_args))
    return jax.jit(fn, in_shardings=in_shardings, out_shardings=whole, **jit_kwargs)


def replicate(tree: Any, batch_size: int) -> Any:
    """Place parameters or optimizer state on every device of the data mesh."""
    mesh = data_mesh(batch_size)
    return tree if mesh is None else jax.device_put(tree, _shardings(mesh)[0])


def pure_train_step(graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, dtype: jnp.dtype) -> StepFn:
    """The step as a pure function, not yet compiled (jit it, or vmap it over stacked runs)."""
    loss_fn = make_loss_fn(graphdef, dtype)

    def train_step(params: Params, opt_state: optax.OptState, tokens_BT1: jax.Array, lr: jax.Array):
        loss, grads = jax.value_and_grad(loss_fn)(params, tokens_BT1)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
        return params, opt_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

    return train_step


def make_train_step(
    graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, dtype: jnp.dtype, batch_size: int
) -> StepFn:
    """The compiled step; data-parallel over the local devices that split the batch."""
    train_step = pure_train_step(graphdef, optimizer, dtype)
    return jit_over_batch(train_step, batch_size, batch_argnum=2, n_args=4, donate_argnums=(0, 1))


def weighted_loss_fn(graphdef: nnx.GraphDef, dtype: jnp.dtype) -> Callable[[Params, jax.Array, jax.Array], tuple]:
    """(params, tokens_BT1, weights_BT) -> (sum of weights * token losses in nats, sum of weights)."""

    def weighted_loss(params: Params, tokens_BT1: jax.Array, weights_BT: jax.Array) -> tuple[jax.Array, jax.Array]:
        model = nnx.merge(graphdef, params)
        logits_BTV = model(tokens_BT1[:, :-1], dtype).astype(jnp.float32)
        losses_BT = optax.softmax_cross_entropy_with_integer_labels(logits_BTV, tokens_BT1[:, 1:])
        return (losses_BT * weights_BT).sum(), weights_BT.sum()

    return weighted_loss


def make_eval_step(graphdef: nnx.GraphDef, dtype: jnp.dtype, batch_size: int) -> Callable:
    """One batch of an eval set: (params, tokens_BT1, weights_BT) -> (weighted loss sum, weight sum)."""
    return jit_over_batch(weighted_loss_fn(graphdef, dtype), batch_size, batch_argnum=(1, 2), n_args=3)


def make_sequence_loss_step(graphdef: nnx.GraphDef, dtype: jnp.dtype, batch_size: int) -> Callable:
    """Summed loss (nats) of each sequence over its masked positions: (params, tokens_BT1, mask_BT) -> (B,)."""

    def sequence_loss(params: Params, tokens_BT1: jax.Array, mask_BT: jax.Array) -> jax.Array:
        model = nnx.merge(graphdef, params)
        logits_BTV = model(tokens_BT1[:, :-1], dtype).astype(jnp.float32)
        losses_BT = optax.softmax_cross_entropy_with_integer_labels(logits_BTV, tokens_BT1[:, 1:])
        return (losses_BT * mask_BT).sum(axis=1)

    mesh = data_mesh(batch_size)
    if mesh is None:
        return jax.jit(sequence_loss)
    whole, split = _shardings(mesh)
    return jax.jit(sequence_loss, in_shardings=(whole, split, split), out_shardings=split)
