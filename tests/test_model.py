"""The decoder: causal, exactly counted, FLOPs by the named convention."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scaler.config import ModelShape
from scaler.model.family import Family, count_params, count_params_nonembed, flops_per_token, training_flops
from scaler.model.transformer import init_model

SHAPE = ModelShape(d_model=32, n_layers=2, n_heads=4, d_ff=96, vocab_size=257, seq_len=16)


def test_causality_gradients_do_not_flow_from_the_future() -> None:
    model = init_model(SHAPE, seed=0)
    x_BTD = jax.random.normal(jax.random.key(1), (1, SHAPE.seq_len, SHAPE.d_model))
    t = 6

    def logits_at_t(x: jax.Array) -> jax.Array:
        return model.backbone(x)[0, t].sum()

    grad_TD = jax.grad(logits_at_t)(x_BTD)[0]
    assert jnp.all(grad_TD[t + 1 :] == 0.0)
    assert jnp.all(jnp.abs(grad_TD[: t + 1]).sum(axis=-1) > 0)


def test_changing_future_tokens_leaves_past_logits_unchanged() -> None:
    model = init_model(SHAPE, seed=0)
    tokens = jax.random.randint(jax.random.key(2), (2, SHAPE.seq_len), 0, 257)
    changed = tokens.at[:, 10:].set((tokens[:, 10:] + 7) % 257)
    a, b = model(tokens), model(changed)
    np.testing.assert_array_equal(np.asarray(a[:, :10]), np.asarray(b[:, :10]))
    assert not np.allclose(np.asarray(a[:, 10:]), np.asarray(b[:, 10:]))


@pytest.mark.parametrize("target", [20_000, 150_000, 1_000_000])
def test_parameter_count_equals_sum_of_leaves(target: int) -> None:
    shape = Family(seq_len=32).shape_for_params(target)
    _, params = nnx.split(init_model(shape, seed=0))
    leaves = sum(int(x.size) for x in jax.tree.leaves(params))
    assert count_params(shape) == leaves
    embed_and_head = 2 * shape.vocab_size * shape.d_model
    assert count_params_nonembed(shape) == leaves - embed_and_head


def test_flop_count_by_hand() -> None:
    # d=32, L=2, F=96, V=257, T=16
    embed_head = 2 * 257 * 32  # 16,448
    per_layer = 4 * 32 * 32 + 3 * 32 * 96 + 2 * 32  # 4,096 + 9,216 + 64 = 13,376
    n_params = embed_head + 2 * per_layer + 32  # 43,232
    assert count_params(SHAPE) == n_params == 43_232
    attention = 12 * 2 * 16 * 32  # 12,288
    assert flops_per_token(SHAPE) == 6 * 43_232 + 12_288 == 271_680
    assert training_flops(SHAPE, 1_000) == 271_680_000.0
    with pytest.raises(ValueError, match="unknown FLOP convention"):
        flops_per_token(SHAPE, "flops_v0")


def test_a_runs_recorded_flops_come_from_the_one_flop_function() -> None:
    from scaler.config import parse_run_config
    from scaler.train.defaults import resolve
    from scaler.train.loop import run_info

    config = resolve(parse_run_config({"model": SHAPE.model_dump(), "train": {"tokens": 4_096, "batch_size": 4}}))
    info = run_info(config)
    assert info["flops_per_token"] == flops_per_token(SHAPE) == 271_680
    assert info["flops"] == training_flops(SHAPE, config.train.tokens) == 271_680 * 4_096


def test_family_ladder_is_monotone_and_follows_its_aspect_rules() -> None:
    family = Family(seq_len=64)
    shapes = family.ladder([20_000, 100_000, 500_000, 2_000_000, 10_000_000])
    counts = [count_params(s) for s in shapes]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    for shape, target in zip(shapes, [20_000, 100_000, 500_000, 2_000_000, 10_000_000]):
        assert shape.head_dim == family.head_dim
        assert shape.n_layers == max(1, round(shape.d_model / family.aspect_ratio))
        assert shape.d_ff % family.ffn_multiple == 0 and shape.d_ff >= 8 / 3 * shape.d_model
        assert 0.6 < count_params(shape) / target < 1.6


def test_bf16_compute_keeps_fp32_weights_and_close_logits() -> None:
    model = init_model(SHAPE, seed=0)
    tokens = jnp.arange(2 * SHAPE.seq_len).reshape(2, SHAPE.seq_len) % 257
    full = model(tokens, jnp.float32)
    half = model(tokens, jnp.bfloat16)
    assert half.dtype == jnp.bfloat16
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(model)))
    assert float(jnp.abs(full - half.astype(jnp.float32)).max()) < 0.15


def test_data_parallel_step_matches_single_device_step() -> None:
    import optax

    from scaler.train import step as step_lib

    assert len(jax.local_devices()) == 2  # conftest asks XLA for two CPU devices
    graphdef, params = nnx.split(init_model(SHAPE, seed=0))
    optimizer = optax.sgd(1.0)  # update = lr * gradient, so parameters compare gradients
    tokens = jax.random.randint(jax.random.key(3), (8, SHAPE.seq_len + 1), 0, 257)
    single = jax.jit(step_lib.pure_train_step(graphdef, optimizer, jnp.float32))
    sharded = step_lib.make_train_step(graphdef, optimizer, jnp.float32, batch_size=8)
    assert step_lib.data_mesh(8).devices.size == 2 and step_lib.data_mesh(7) is None
    copy = lambda tree: jax.tree.map(jnp.array, tree)  # noqa: E731 (the steps donate their inputs)
    p1, _, m1 = single(copy(params), optimizer.init(params), tokens, jnp.float32(1e-2))
    placed = step_lib.replicate((copy(params), optimizer.init(params)), 8)
    p2, _, m2 = sharded(*placed, np.asarray(tokens), jnp.float32(1e-2))
    assert float(m1["loss"]) == pytest.approx(float(m2["loss"]), rel=1e-6)
    assert float(m1["grad_norm"]) == pytest.approx(float(m2["grad_norm"]), rel=1e-5)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-8)


def test_gpu_attention_path_matches_cpu_block_attention(monkeypatch) -> None:
    """The GPU/TPU branch (jax.nn.dot_product_attention) computes what the CPU branch does."""
    model = init_model(SHAPE, seed=0)
    tokens = jax.random.randint(jax.random.key(4), (2, SHAPE.seq_len), 0, 257)
    cpu_logits = model(tokens)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    gpu_logits = model(tokens)
    np.testing.assert_allclose(np.asarray(cpu_logits), np.asarray(gpu_logits), rtol=1e-5, atol=1e-5)
