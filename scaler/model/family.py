"""The model family: a size ladder from fixed aspect rules, exact parameter and FLOP counts.

A `Family` is a frozen recipe (in the spirit of Marin's scaling recipes): width is the only free
variable; depth, heads and the MLP width follow from it.

    n_layers = max(1, round(d_model / aspect_ratio))
    n_heads  = d_model / head_dim
    d_ff     = ffn_ratio * d_model rounded up to a multiple of ffn_multiple (SwiGLU: 8/3)

Parameter count of the decoder in `transformer.py` (no biases, untied head, RMSNorm scales):

    n_params = 2 V D                 token embedding + output head
             + L (4 D^2 + 3 D F + 2 D)   attention (q, k, v, o), SwiGLU (gate, up, down), 2 norms
             + D                     final norm

`n_params_nonembed` drops the embedding and the head (2 V D), as Kaplan et al. did; fits use
`n_params` (Chinchilla, Porian et al.).

Training FLOPs under the convention `flops_v1` (DESIGN §3), per token:
    6 n_params + 12 n_layers seq_len d_model
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scaler.config import FLOPS_CONVENTION, ModelShape


def count_params(shape: ModelShape) -> int:
    d, f, v, n_layers = shape.d_model, shape.d_ff, shape.vocab_size, shape.n_layers
    per_layer = 4 * d * d + 3 * d * f + 2 * d
    return 2 * v * d + n_layers * per_layer + d


def count_params_nonembed(shape: ModelShape) -> int:
    return count_params(shape) - 2 * shape.vocab_size * shape.d_model


def flops_per_token(shape: ModelShape, convention: str = FLOPS_CONVENTION) -> int:
    """Training FLOPs (forward + backward) per token under a named convention."""
    if convention != "flops_v1":
        raise ValueError(f"unknown FLOP convention {convention!r}; known: 'flops_v1'")
    attention = 12 * shape.n_layers * shape.seq_len * shape.d_model
    return 6 * count_params(shape) + attention


def training_flops(shape: ModelShape, tokens: int, convention: str = FLOPS_CONVENTION) -> float:
    return float(flops_per_token(shape, convention)) * tokens


def _round_up(x: float, multiple: int) -> int:
    return int(math.ceil(x / multiple) * multiple)


@dataclass(frozen=True)
class Family:
    """A size ladder: every shape is derived from d_model by fixed aspect rules."""

    vocab_size: int = 257
    seq_len: int = 256
    aspect_ratio: int = 32  # d_model / n_layers
    head_dim: int = 16
    ffn_ratio: float = 8 / 3
    ffn_multiple: int = 16
    max_d_model: int = 16_384

    def shape(self, d_model: int) -> ModelShape:
        if d_model <= 0 or d_model % self.head_dim:
            raise ValueError(f"d_model {d_model} must be a positive multiple of head_dim {self.head_dim}")
        return ModelShape(
            d_model=d_model,
            n_layers=max(1, round(d_model / self.aspect_ratio)),
            n_heads=d_model // self.head_dim,
            d_ff=_round_up(self.ffn_ratio * d_model, self.ffn_multiple),
            vocab_size=self.vocab_size,
            seq_len=self.seq_len,
        )

    def shape_for_params(self, target_params: int) -> ModelShape:
        """The ladder shape whose n_params is closest to the target (in log distance)."""
        if target_params <= 0:
            raise ValueError(f"target_params must be positive, got {target_params}")
        widths = range(self.head_dim, self.max_d_model + 1, self.head_dim)
        return min(
            (self.shape(d) for d in widths),
            key=lambda s: abs(math.log(count_params(s) / target_params)),
        )

    def ladder(self, target_params: list[int]) -> list[ModelShape]:
        return [self.shape_for_params(n) for n in target_params]
