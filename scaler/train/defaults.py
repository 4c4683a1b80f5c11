"""Size-aware defaults (docs/design.md §5, sweep hygiene), applied where a config leaves a value unset.

`resolve(config)` returns the config with every default filled in; the run id is the hash of the
resolved config, so a default that changes gives new run ids rather than silently different runs.

- tokens: rounded to a whole number of steps, so a cosine schedule ends exactly at the run's D.
- lr: 3e-3 * (1e6 / n_params)^0.25, clipped to [3e-4, 1e-2]: a heuristic for small models,
  recorded with the run; sweeps that tune lr set it.
- warmup: about N tokens (n_params), never more than a quarter of the run.
- beta2: 0.95 at batches of 2^18 tokens and above, 0.99 below (Porian et al. 2024: small batches
  need a larger beta2).
- evaluation every ~10% of the run; checkpoints every 4 evaluations; a loss above 2 ln V diverged.
- data.build_id and data.content: read from the built data folder; the run id is keyed on the
  content hashes, so a rebuild with the same tier contents keeps the run ids.
"""

from __future__ import annotations

import math
from typing import Any

from scaler.config import DataConfig, RunConfig
from scaler.model.family import count_params

LARGE_BATCH_TOKENS = 2**18


def default_lr(n_params: int) -> float:
    return float(min(1e-2, max(3e-4, 3e-3 * (1e6 / n_params) ** 0.25)))


def default_beta2(batch_tokens: int) -> float:
    return 0.95 if batch_tokens >= LARGE_BATCH_TOKENS else 0.99


def default_warmup_tokens(n_params: int, tokens: int) -> int:
    return int(min(n_params, tokens // 4))


def step_tokens(config: RunConfig) -> int:
    return config.train.batch_size * config.model.seq_len


def data_keys(data: DataConfig) -> dict[str, Any]:
    """The built data's build id and content hashes for a run's data config (`data_content` of its
    mix's tiers, capped pools and eval sets)."""
    from scaler.data.folder import data_content, read_build_info

    return {"build_id": read_build_info(data.dir).build_id,
            "content": data_content(data.dir, data.tokenizer, sorted(data.mix), dict(data.unique_tokens), data.eval_sets)}


def resolve(config: RunConfig) -> RunConfig:
    """Fill every unset training value; idempotent."""
    train, shape = config.train, config.model
    n_params = count_params(shape)
    per_step = step_tokens(config)
    steps = max(1, round(train.tokens / per_step))
    tokens = steps * per_step
    eval_every = train.eval_every_steps or max(1, steps // 10)
    resolved = train.model_copy(
        update={
            "tokens": tokens,
            "lr": train.lr if train.lr is not None else default_lr(n_params),
            "warmup_tokens": (
                train.warmup_tokens
                if train.warmup_tokens is not None
                else default_warmup_tokens(n_params, tokens)
            ),
            "beta2": train.beta2 if train.beta2 is not None else default_beta2(per_step),
            "eval_every_steps": eval_every,
            "checkpoint_every_steps": train.checkpoint_every_steps or 4 * eval_every,
            "max_loss": train.max_loss or 2 * math.log(shape.vocab_size),
        }
    )
    data = config.data
    if data.dir is not None and (data.build_id is None or not data.content):
        data = data.model_copy(update={k: v for k, v in data_keys(data).items() if not getattr(data, k)})
    return config.model_copy(update={"train": resolved, "data": data})
