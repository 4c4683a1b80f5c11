"""LLaMA-style decoder in Flax NNX (DESIGN §4), in one screen.

Token embedding, RoPE, pre-RMSNorm, causal attention through `jax.nn.dot_product_attention`
(cuDNN flash attention on GPU), SwiGLU MLP, no biases, untied head. Weights are stored in fp32 and
cast to `compute_dtype` where they are used (bf16 compute with fp32 master weights on GPU/TPU).

Shape suffixes: B batch, T time, D d_model, H heads, K head width, F d_ff, V vocabulary.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from scaler.config import ModelShape

ROPE_THETA = 10_000.0


def _normal(rngs: nnx.Rngs, shape: tuple[int, ...], std: float) -> nnx.Param:
    return nnx.Param(std * jax.random.normal(rngs.params(), shape, jnp.float32))


def rms_norm(x_BTD: jax.Array, scale_D: jax.Array, eps: float = 1e-6) -> jax.Array:
    x32 = x_BTD.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return (normed * scale_D).astype(x_BTD.dtype)


def rope_tables(seq_len: int, head_dim: int) -> tuple[jax.Array, jax.Array]:
    freq_K2 = ROPE_THETA ** (-jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
    angle_TK2 = jnp.arange(seq_len, dtype=jnp.float32)[:, None] * freq_K2[None, :]
    return jnp.cos(angle_TK2), jnp.sin(angle_TK2)


def apply_rope(x_BTHK: jax.Array, cos_TK2: jax.Array, sin_TK2: jax.Array) -> jax.Array:
    x1, x2 = jnp.split(x_BTHK, 2, axis=-1)
    cos, sin = cos_TK2[None, :, None, :], sin_TK2[None, :, None, :]
    rotated = jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
    return rotated.astype(x_BTHK.dtype)


class Block(nnx.Module):
    def __init__(self, shape: ModelShape, *, rngs: nnx.Rngs):
        d, h, k, f = shape.d_model, shape.n_heads, shape.head_dim, shape.d_ff
        out_std = (2 * shape.n_layers * d) ** -0.5  # residual branches scaled down with depth
        self.attn_norm_D = nnx.Param(jnp.ones((d,), jnp.float32))
        self.w_qkv_D3HK = _normal(rngs, (d, 3, h, k), d**-0.5)
        self.w_out_HKD = _normal(rngs, (h, k, d), out_std)
        self.mlp_norm_D = nnx.Param(jnp.ones((d,), jnp.float32))
        self.w_gate_up_D2F = _normal(rngs, (d, 2, f), d**-0.5)
        self.w_down_FD = _normal(rngs, (f, d), (2 * shape.n_layers * f) ** -0.5)

    def __call__(self, x_BTD: jax.Array, cos_TK2: jax.Array, sin_TK2: jax.Array) -> jax.Array:
        dt = x_BTD.dtype
        h_BTD = rms_norm(x_BTD, self.attn_norm_D[...])
        qkv_BT3HK = jnp.einsum("btd,dshk->btshk", h_BTD, self.w_qkv_D3HK[...].astype(dt))
        q_BTHK = apply_rope(qkv_BT3HK[:, :, 0], cos_TK2, sin_TK2)
        k_BTHK = apply_rope(qkv_BT3HK[:, :, 1], cos_TK2, sin_TK2)
        o_BTHK = jax.nn.dot_product_attention(q_BTHK, k_BTHK, qkv_BT3HK[:, :, 2], is_causal=True)
        x_BTD = x_BTD + jnp.einsum("bthk,hkd->btd", o_BTHK, self.w_out_HKD[...].astype(dt))

        h_BTD = rms_norm(x_BTD, self.mlp_norm_D[...])
        gate_up_BT2F = jnp.einsum("btd,dsf->btsf", h_BTD, self.w_gate_up_D2F[...].astype(dt))
        act_BTF = jax.nn.silu(gate_up_BT2F[:, :, 0]) * gate_up_BT2F[:, :, 1]
        return x_BTD + jnp.einsum("btf,fd->btd", act_BTF, self.w_down_FD[...].astype(dt))


class Transformer(nnx.Module):
    def __init__(self, shape: ModelShape, *, rngs: nnx.Rngs):
        self.shape = shape
        self.embed_VD = _normal(rngs, (shape.vocab_size, shape.d_model), 1.0)
        self.blocks = nnx.List([Block(shape, rngs=rngs) for _ in range(shape.n_layers)])
        self.final_norm_D = nnx.Param(jnp.ones((shape.d_model,), jnp.float32))
        self.head_DV = _normal(rngs, (shape.d_model, shape.vocab_size), shape.d_model**-0.5)

    def backbone(self, x_BTD: jax.Array) -> jax.Array:
        """Embeddings in, logits out: the causal part of the model."""
        cos_TK2, sin_TK2 = rope_tables(x_BTD.shape[1], self.shape.head_dim)
        for block in self.blocks:
            x_BTD = block(x_BTD, cos_TK2, sin_TK2)
        h_BTD = rms_norm(x_BTD, self.final_norm_D[...])
        return jnp.einsum("btd,dv->btv", h_BTD, self.head_DV[...].astype(x_BTD.dtype))

    def __call__(self, tokens_BT: jax.Array, compute_dtype: jnp.dtype = jnp.float32) -> jax.Array:
        x_BTD = self.embed_VD[...].astype(compute_dtype)[tokens_BT]
        return self.backbone(x_BTD)


def init_model(shape: ModelShape, seed: int) -> Transformer:
    return Transformer(shape, rngs=nnx.Rngs(params=seed))
