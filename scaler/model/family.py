"""Parameter and FLOP counts of the model family, for the model layer and everything above it.

The ladder itself (`Family`: width is the only free variable; depth, heads and the MLP width follow
from it), the exact parameter count (`count_params`) and the FLOPs per token (`flops_per_token`) are
pure arithmetic on `ModelShape`, so they live in scaler/config.py next to it, where a run file's `target_params` resolves; they are
re-exported here so that the model, training, sweep and fit code import counts from one place.

`n_params_nonembed` drops the embedding and the head (2 V D), as Kaplan et al. did; fits use
`n_params` (Chinchilla, Porian et al.).

Training FLOPs under the convention `flops_v1` (docs/design.md §3), per token:
    6 n_params + 12 n_layers seq_len d_model
Every FLOP figure of a run (its record, the plan, the isoflop design) comes from `flops_per_token`.
"""

from __future__ import annotations

from scaler.config import FLOPS_CONVENTION, Family, ModelShape, count_params, flops_per_token

__all__ = ["Family", "ModelShape", "count_params", "count_params_nonembed", "flops_per_token", "training_flops"]


def count_params_nonembed(shape: ModelShape) -> int:
    return count_params(shape) - 2 * shape.vocab_size * shape.d_model


def training_flops(shape: ModelShape, tokens: int, convention: str = FLOPS_CONVENTION) -> float:
    """Training FLOPs of `tokens` tokens: flops_per_token x tokens."""
    return float(flops_per_token(shape, convention)) * tokens
