"""Which runs train together as one stack (scaler/train/stacked.py), decided without JAX so that
a sweep's driver and `scaler plan` can group.

Runs stack when they differ only in seed, data (mix, tier, folder, unique tokens) and learning-rate
schedule (lr, schedule, warmup, cooldown, final fraction): those reach the vmapped step as
per-member arrays or streams. `stack = K` groups at most K compatible runs; `stack = "auto"` as many
as fit in half of the memory given (by default this machine's RAM: the CPU's device memory; on
GPUs give K, or `resources.memory_gb`), at most 16.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Literal

from scaler.config import RunConfig
from scaler.model.family import count_params
from scaler.train.defaults import step_tokens
from scaler.train.schedule import wsd_decay_start

# Train fields that may differ between the members of a stack (they reach the step as arrays).
PER_MEMBER_TRAIN = ("lr", "seed", "schedule", "warmup_tokens", "cooldown_fraction", "final_lr_fraction")
MAX_AUTO_STACK = 16  # "auto" never stacks more: the CPU gains flatten out by K = 9-16 (benchmarks/stacked.py)
MEMORY_SHARE = 0.5  # of the device's memory that an automatic stack may fill

StackSize = int | Literal["auto"]


def stack_key(config: RunConfig) -> str:
    """Runs with equal keys can train in one stack. `config` must be resolved."""
    identity = config.identity()
    train = {k: v for k, v in identity["train"].items() if k not in PER_MEMBER_TRAIN}
    rest = {k: v for k, v in identity.items() if k not in ("train", "data")}
    return json.dumps({**rest, "train": train, "eval_sets": identity["data"]["eval_sets"]}, sort_keys=True)


def bytes_per_member(config: RunConfig) -> int:
    """Device memory one member of a stack needs, roughly: fp32 parameters, gradients and two Adam
    moments (16 bytes a parameter), and activations kept for the backward pass (about 34 values
    per token per layer and width, plus the logits, in 4 bytes)."""
    shape, batch = config.model, config.train.batch_size
    tokens = batch * shape.seq_len
    activations = tokens * (34 * shape.d_model * shape.n_layers + 2 * shape.vocab_size) * 4
    return 16 * count_params(shape) + activations


def host_memory_bytes() -> int:
    """This machine's RAM."""
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def auto_stack_size(config: RunConfig, memory_bytes: int | None = None) -> int:
    """The K that `stack = "auto"` uses for runs like `config`: as many as fit in MEMORY_SHARE of
    `memory_bytes` (default: this machine's RAM), at most MAX_AUTO_STACK."""
    memory = memory_bytes if memory_bytes is not None else host_memory_bytes()
    return int(max(1, min(MAX_AUTO_STACK, MEMORY_SHARE * memory // bytes_per_member(config))))


def group_stacks(configs: Sequence[RunConfig], stack: StackSize, memory_bytes: int | None = None) -> list[list[int]]:
    """Indices of `configs` (resolved) in stacks of compatible runs, each at most `stack` long
    ("auto": `auto_stack_size`), in the order of their first members; stack=1: one run each."""
    groups = []
    for indices in _grouped([stack_key(c) for c in configs]):
        k = auto_stack_size(configs[indices[0]], memory_bytes) if stack == "auto" else int(stack)
        groups += [indices[j : j + k] for j in range(0, len(indices), k)]
    return sorted(groups, key=lambda g: g[0])


# -- WSD branch families (scaler/train/branches.py) --------------------------------------------
CADENCE = ("tokens", "eval_every_steps", "checkpoint_every_steps")  # may differ between a trunk and its branches


def branch_key(config: RunConfig) -> str:
    """Runs with equal keys are branches of one trunk. `config` must be resolved."""
    identity = config.identity()
    train = {k: v for k, v in identity["train"].items() if k not in CADENCE}
    return json.dumps({**identity, "train": train}, sort_keys=True)


def branch_point(config: RunConfig) -> int:
    """The step at which the run's cooldown starts."""
    return wsd_decay_start(config.train.tokens // step_tokens(config), config.train.cooldown_fraction)


def branch_problem(configs: Sequence[RunConfig]) -> str | None:
    """Why the (resolved) configs are not WSD runs that differ only in tokens; None if they are."""
    if any(c.train.schedule != "wsd" for c in configs):
        return "every run needs schedule = \"wsd\""
    if len({branch_key(c) for c in configs}) > 1:
        return "the runs differ in more than their token count (and its cadence)"
    if len({c.train.tokens for c in configs}) < len(configs):
        return "two runs have the same token count"
    return None


def group_branches(configs: Sequence[RunConfig]) -> list[list[int]]:
    """Indices of `configs` (resolved) by branch family, in the order of their first members."""
    return _grouped([branch_key(c) if c.train.schedule == "wsd" else f"alone-{i}" for i, c in enumerate(configs)])


def trunk_of(configs: Sequence[RunConfig], family: Sequence[int]) -> int:
    """The index of a family's trunk: its longest run."""
    return max(family, key=lambda i: configs[i].train.tokens)


def group_branch_stacks(configs: Sequence[RunConfig], stack: StackSize,
                        memory_bytes: int | None = None) -> list[list[int]]:
    """Indices of `configs` (resolved) by task: branch families whose trunks stack and whose token
    counts are equal, at most `stack` families a task ("auto": `auto_stack_size` of the trunk), so
    that their trunks train as one stack and then their branches, stacked by token count."""
    families = group_branches(configs)
    trunks = [trunk_of(configs, f) for f in families]
    keys = [stack_key(configs[t]) + repr(sorted(configs[i].train.tokens for i in f)) for t, f in zip(trunks, families)]
    tasks = []
    for same in _grouped(keys):
        k = auto_stack_size(configs[trunks[same[0]]], memory_bytes) if stack == "auto" else int(stack)
        tasks += [sorted(i for j in same[n : n + k] for i in families[j]) for n in range(0, len(same), k)]
    return sorted(tasks, key=lambda t: t[0])


def task_stacks(configs: Sequence[RunConfig]) -> list[list[int]]:
    """How a task's runs (resolved) train, in order: the trunks of its branch families (the longest
    of each; a run of no family is its own trunk) in stacks, then the branches in stacks; indices."""
    trunks = [trunk_of(configs, f) for f in group_branches(configs)]
    branches = sorted(set(range(len(configs))) - set(trunks))
    return ([[trunks[j] for j in g] for g in _grouped([stack_key(configs[t]) for t in trunks])]
            + [[branches[j] for j in g] for g in _grouped([stack_key(configs[b]) for b in branches])])


def _grouped(keys: Sequence[str]) -> list[list[int]]:
    """Indices with equal keys together, the groups in the order of their first members."""
    by_key: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        by_key.setdefault(key, []).append(i)
    return list(by_key.values())
