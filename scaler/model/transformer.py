"""LLaMA-style decoder in Flax NNX (docs/design.md §4), in one screen.

Token embedding, RoPE, pre-RMSNorm, causal attention, SwiGLU MLP, no biases, untied head. Weights
are stored in fp32 and cast to `compute_dtype` where they are used (bf16 compute with fp32 master
weights on GPU/TPU).

Attention: `jax.nn.dot_product_attention` (cuDNN flash attention) on GPU/TPU; on the CPU,
`causal_block_attention`, which splits the queries into blocks so the masked upper triangle is
mostly never computed, and has a hand-written backward pass (XLA:CPU materialises every T x T
intermediate in memory, so the number of T x T passes is what costs; see benchmarks/).
Projections are written as 2-D matmuls with splits on the last axis: XLA:CPU pads and transposes
badly for einsum outputs such as `btshk` sliced on a middle axis.

Shape suffixes: B batch, T time, D d_model, H heads, K head width, F d_ff, V vocabulary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
from flax import nnx

if TYPE_CHECKING:  # the model needs only jax and flax at run time (benchmarks/gpu_bench.py relies on it)
    from scaler.config import ModelShape

ROPE_THETA = 10_000.0
CPU_ATTENTION_BLOCKS = 4  # query blocks of causal_block_attention: 4 measured best at T = 256


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


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate-half RoPE; cos/sin of shape (T, K/2), or (T, 1, K/2) for x laid out (B, T, H, K)."""
    x1, x2 = jnp.split(x, 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1).astype(x.dtype)


def _block_attention(offset: int):
    """Softmax attention of a block of queries at positions offset.. to the keys 0..: (B, H, Q, K)."""

    def scores(q, k):
        s = jnp.einsum("bhqk,bhsk->bhqs", q, k).astype(jnp.float32) * q.shape[-1] ** -0.5
        mask = jnp.arange(q.shape[2])[:, None] + offset >= jnp.arange(k.shape[2])[None, :]
        return jnp.where(mask, s, -jnp.inf)

    def fwd(q, k, v):
        s = scores(q, k)
        e = jnp.exp(s - s.max(-1, keepdims=True))
        p = (e / e.sum(-1, keepdims=True)).astype(v.dtype)
        o = jnp.einsum("bhqs,bhsk->bhqk", p, v)
        return o, (q, k, v, o, p)

    def bwd(res, do):  # the flash-attention backward: dS = P * (dP - rowsum(dO * O))
        q, k, v, o, p = res
        dv = jnp.einsum("bhqs,bhqk->bhsk", p, do)
        dp = jnp.einsum("bhqk,bhsk->bhqs", do, v)
        delta = jnp.sum(do.astype(jnp.float32) * o, axis=-1, keepdims=True)
        ds = (p * (dp - delta) * q.shape[-1] ** -0.5).astype(q.dtype)
        return jnp.einsum("bhqs,bhsk->bhqk", ds, k), jnp.einsum("bhqs,bhqk->bhsk", ds, q), dv

    attend = jax.custom_vjp(lambda q, k, v: fwd(q, k, v)[0])
    attend.defvjp(fwd, bwd)
    return attend


def causal_block_attention(q_BHTK: jax.Array, k_BHTK: jax.Array, v_BHTK: jax.Array, n_blocks: int) -> jax.Array:
    """Causal attention; query block i attends keys [0, end of block i): ~(n+1)/2n of the T x T work."""
    t = q_BHTK.shape[2]
    n_blocks = n_blocks if t % n_blocks == 0 else 1
    size = t // n_blocks
    outs = []
    for i in range(n_blocks):
        start, end = i * size, (i + 1) * size
        outs.append(_block_attention(start)(q_BHTK[:, :, start:end], k_BHTK[:, :, :end], v_BHTK[:, :, :end]))
    return jnp.concatenate(outs, axis=2)


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
        dt, (b, t, d) = x_BTD.dtype, x_BTD.shape
        _, _, h, k = self.w_qkv_D3HK[...].shape
        f = self.w_down_FD[...].shape[0]
        # Matmuls on (B*T, D) rows; splits on the last axis only.
        h_ND = rms_norm(x_BTD, self.attn_norm_D[...]).reshape(b * t, d)
        qkv_BT3HK = (h_ND @ self.w_qkv_D3HK[...].reshape(d, 3 * h * k).astype(dt)).reshape(b, t, 3, h, k)
        if jax.default_backend() == "cpu":
            qkv_3BHTK = jnp.transpose(qkv_BT3HK, (2, 0, 3, 1, 4))
            q_BHTK = apply_rope(qkv_3BHTK[0], cos_TK2, sin_TK2)
            k_BHTK = apply_rope(qkv_3BHTK[1], cos_TK2, sin_TK2)
            o_BHTK = causal_block_attention(q_BHTK, k_BHTK, qkv_3BHTK[2], CPU_ATTENTION_BLOCKS)
            o_NHK = jnp.transpose(o_BHTK, (0, 2, 1, 3)).reshape(b * t, h * k)
        else:
            cos_T1K2, sin_T1K2 = cos_TK2[:, None, :], sin_TK2[:, None, :]
            q_BTHK = apply_rope(qkv_BT3HK[:, :, 0], cos_T1K2, sin_T1K2)
            k_BTHK = apply_rope(qkv_BT3HK[:, :, 1], cos_T1K2, sin_T1K2)
            o_BTHK = jax.nn.dot_product_attention(q_BTHK, k_BTHK, qkv_BT3HK[:, :, 2], is_causal=True)
            o_NHK = o_BTHK.reshape(b * t, h * k)
        x_ND = x_BTD.reshape(b * t, d) + o_NHK @ self.w_out_HKD[...].reshape(h * k, d).astype(dt)

        h_ND = rms_norm(x_ND, self.mlp_norm_D[...])
        gate_up_N2F = h_ND @ self.w_gate_up_D2F[...].reshape(d, 2 * f).astype(dt)
        act_NF = jax.nn.silu(gate_up_N2F[:, :f]) * gate_up_N2F[:, f:]
        x_ND = x_ND + act_NF @ self.w_down_FD[...].astype(dt)
        return x_ND.reshape(b, t, d)


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
