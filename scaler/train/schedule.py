"""Learning-rate schedules as plain functions of the step: lr(step) for step in [0, total_steps).

- `cosine`: linear warmup, then a cosine from the peak to `final_fraction * peak`, reached at the
  last step exactly, so the run's D is where the schedule ends.
- `wsd`: warmup, stable at the peak, then a (1 - sqrt) cooldown (Hägele et al. 2024) over the last
  `cooldown_fraction` of the steps, down to `final_fraction * peak`.
"""

from __future__ import annotations

import math

from scaler.config import TrainConfig


def warmup_factor(step: int, warmup_steps: int) -> float:
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def cosine_lr(step: int, total_steps: int, peak: float, warmup_steps: int, final_fraction: float) -> float:
    if step < warmup_steps:
        return peak * warmup_factor(step, warmup_steps)
    span = max(1, total_steps - 1 - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    cos = 0.5 * (1 + math.cos(math.pi * progress))
    return peak * (final_fraction + (1 - final_fraction) * cos)


def wsd_decay_start(total_steps: int, cooldown_fraction: float) -> int:
    """The first step of a WSD run's cooldown (also where a WSD branch forks, train/branches.py)."""
    return total_steps - max(1, round(cooldown_fraction * total_steps))


def wsd_lr(
    step: int, total_steps: int, peak: float, warmup_steps: int, final_fraction: float, cooldown_fraction: float
) -> float:
    decay_start = wsd_decay_start(total_steps, cooldown_fraction)
    cooldown_steps = total_steps - decay_start
    if step < warmup_steps and step < decay_start:
        return peak * warmup_factor(step, warmup_steps)
    if step < decay_start:
        return peak
    progress = min(1.0, (step - decay_start + 1) / cooldown_steps)
    return peak * (final_fraction + (1 - final_fraction) * (1 - math.sqrt(progress)))


def lr_at(train: TrainConfig, step: int, total_steps: int, warmup_steps: int) -> float:
    """The resolved config's learning rate at `step`."""
    assert train.lr is not None, "resolve the config first"
    if train.schedule == "cosine":
        return cosine_lr(step, total_steps, train.lr, warmup_steps, train.final_lr_fraction)
    return wsd_lr(step, total_steps, train.lr, warmup_steps, train.final_lr_fraction, train.cooldown_fraction)
