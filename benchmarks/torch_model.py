"""A PyTorch twin of scaler's decoder and training step: the eager baseline of `train_throughput.py`.

Same architecture as `scaler/model/transformer.py` (docs/design.md §4), weight for weight: token
embedding, RoPE (rotate-half, theta 1e4), pre-RMSNorm (eps 1e-6, in fp32), causal attention through
`torch.nn.functional.scaled_dot_product_attention(is_causal=True)`, SwiGLU MLP with one fused
gate/up weight, no biases, untied head. Weights keep scaler's layouts ((D, 3, H, K) for q/k/v,
(H, K, D) for the output projection, (D, 2, F) for gate/up), so `load_from_scaler` can copy a
scaler model's parameters into the twin and the two compute the same function.

Same optimiser as `scaler/train/step.py`: global-norm gradient clipping, then AdamW with weight
decay on matrices only (optax's `add_decayed_weights` after `scale_by_adam`, applied as
`p -= lr * (u + wd * p)`, is exactly torch's decoupled `p *= 1 - lr * wd; p -= lr * u`).

Torch is an optional dependency of the benchmarks: `pip install -e '.[bench]'` (torch==2.13.0).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from scaler.config import ModelShape, TrainConfig
from scaler.model.family import count_params
from scaler.model.transformer import ROPE_THETA

RMS_EPS = 1e-6


def rms_norm(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    x32 = x.float()
    normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + RMS_EPS)
    return (normed * scale).to(x.dtype)


def rope_tables(seq_len: int, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    freq = ROPE_THETA ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angle = torch.arange(seq_len, dtype=torch.float32)[:, None] * freq[None, :]
    return torch.cos(angle), torch.sin(angle)  # (T, K/2)


def apply_rope(x_BHTK: torch.Tensor, cos_TK2: torch.Tensor, sin_TK2: torch.Tensor) -> torch.Tensor:
    x1, x2 = x_BHTK.chunk(2, dim=-1)
    return torch.cat([x1 * cos_TK2 - x2 * sin_TK2, x1 * sin_TK2 + x2 * cos_TK2], dim=-1)


def _normal(shape: tuple[int, ...], std: float, generator: torch.Generator) -> nn.Parameter:
    return nn.Parameter(torch.randn(shape, generator=generator) * std)


class Block(nn.Module):
    def __init__(self, shape: ModelShape, generator: torch.Generator):
        super().__init__()
        d, h, k, f = shape.d_model, shape.n_heads, shape.head_dim, shape.d_ff
        self.n_heads, self.head_dim = h, k
        self.attn_norm_D = nn.Parameter(torch.ones(d))
        self.w_qkv_D3HK = _normal((d, 3, h, k), d**-0.5, generator)
        self.w_out_HKD = _normal((h, k, d), (2 * shape.n_layers * d) ** -0.5, generator)
        self.mlp_norm_D = nn.Parameter(torch.ones(d))
        self.w_gate_up_D2F = _normal((d, 2, f), d**-0.5, generator)
        self.w_down_FD = _normal((f, d), (2 * shape.n_layers * f) ** -0.5, generator)

    def forward(self, x_BTD: torch.Tensor, cos_TK2: torch.Tensor, sin_TK2: torch.Tensor) -> torch.Tensor:
        b, t, d = x_BTD.shape
        h_BTD = rms_norm(x_BTD, self.attn_norm_D)
        qkv = h_BTD @ self.w_qkv_D3HK.reshape(d, -1)  # (B, T, 3HK)
        q, k, v = qkv.view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, K)
        q, k = apply_rope(q, cos_TK2, sin_TK2), apply_rope(k, cos_TK2, sin_TK2)
        o_BHTK = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        o_BTD = o_BHTK.transpose(1, 2).reshape(b, t, d)
        x_BTD = x_BTD + o_BTD @ self.w_out_HKD.reshape(d, d)

        h_BTD = rms_norm(x_BTD, self.mlp_norm_D)
        gate, up = (h_BTD @ self.w_gate_up_D2F.reshape(d, -1)).view(b, t, 2, -1).unbind(2)
        return x_BTD + (F.silu(gate) * up) @ self.w_down_FD


class Transformer(nn.Module):
    def __init__(self, shape: ModelShape, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.shape = shape
        self.embed_VD = _normal((shape.vocab_size, shape.d_model), 1.0, g)
        self.blocks = nn.ModuleList([Block(shape, g) for _ in range(shape.n_layers)])
        self.final_norm_D = nn.Parameter(torch.ones(shape.d_model))
        self.head_DV = _normal((shape.d_model, shape.vocab_size), shape.d_model**-0.5, g)
        cos, sin = rope_tables(shape.seq_len, shape.head_dim)
        self.register_buffer("cos_TK2", cos, persistent=False)
        self.register_buffer("sin_TK2", sin, persistent=False)
        n = sum(p.numel() for p in self.parameters())
        assert n == count_params(shape), f"torch twin has {n} parameters, scaler counts {count_params(shape)}"

    def forward(self, tokens_BT: torch.Tensor) -> torch.Tensor:
        t = tokens_BT.shape[1]
        x_BTD = self.embed_VD[tokens_BT]
        cos, sin = self.cos_TK2[:t], self.sin_TK2[:t]
        for block in self.blocks:
            x_BTD = block(x_BTD, cos, sin)
        return rms_norm(x_BTD, self.final_norm_D) @ self.head_DV


def load_from_scaler(model: Transformer, scaler_params) -> None:
    """Copy the parameters of a split scaler model (`nnx.split(model)[1]`) into the twin."""
    p = scaler_params
    as_t = lambda a: torch.from_numpy(np.array(a[...], dtype=np.float32))  # noqa: E731
    with torch.no_grad():
        model.embed_VD.copy_(as_t(p["embed_VD"]))
        model.final_norm_D.copy_(as_t(p["final_norm_D"]))
        model.head_DV.copy_(as_t(p["head_DV"]))
        for i, block in enumerate(model.blocks):
            for name, param in block.named_parameters():
                param.copy_(as_t(p["blocks"][i][name]))


def make_optimizer(model: Transformer, train: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only (as scaler's optax chain)."""
    assert train.beta2 is not None, "resolve the config first"
    params = list(model.parameters())
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": train.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(train.beta1, train.beta2), eps=train.eps, foreach=True)


def make_train_step(model: Transformer, optimizer: torch.optim.Optimizer, grad_clip: float):
    """One eager training step on int tokens (B, T+1); returns the loss as a 0-d tensor."""

    def train_step(tokens_BT1: torch.Tensor) -> torch.Tensor:
        logits = model(tokens_BT1[:, :-1])
        loss = F.cross_entropy(logits.float().flatten(0, 1), tokens_BT1[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip, foreach=True)
        optimizer.step()
        return loss.detach()

    return train_step
