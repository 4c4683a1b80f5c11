"""The training step: a pure function of (params, opt_state, tokens, lr), compiled once with `jax.jit`.

The NNX model is split once into a static graph definition and a parameter pytree; the step
merges them inside the traced function, so per-step Python cost is one jitted call (`nnx.jit`
costs too much per call for small models). Because the step is pure and the learning rate is an
argument, it vmaps over runs (stacked training, DESIGN §9).

AdamW is written as optax pieces so the learning rate stays an input:
clip_by_global_norm -> scale_by_adam -> add_decayed_weights (matrices only), then params -= lr * u.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

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


def make_train_step(graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, dtype: jnp.dtype) -> StepFn:
    loss_fn = make_loss_fn(graphdef, dtype)

    def train_step(params: Params, opt_state: optax.OptState, tokens_BT1: jax.Array, lr: jax.Array):
        loss, grads = jax.value_and_grad(loss_fn)(params, tokens_BT1)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
        return params, opt_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

    return jax.jit(train_step, donate_argnums=(0, 1))


def make_eval_step(graphdef: nnx.GraphDef, dtype: jnp.dtype) -> Callable[[Params, jax.Array], jax.Array]:
    return jax.jit(make_loss_fn(graphdef, dtype))
