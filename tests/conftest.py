"""Shared fixtures: tiny shapes, real data (this interpreter's standard library)."""

from __future__ import annotations

import os

# Two XLA CPU devices, as the CLI configures on a 2-core machine: the trainer's data-parallel
# path runs in every test (a batch that two devices cannot split runs on one).
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"

import pytest  # noqa: E402

from scaler.config import RunConfig, parse_run_config  # noqa: E402


def tiny_config(**train: object) -> RunConfig:
    """A ~30k-parameter model on stdlib bytes; `train` overrides training keys."""
    raw = {
        "name": "tiny",
        "model": {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 96, "vocab_size": 257, "seq_len": 32},
        "train": {"tokens": 40 * 8 * 32, "batch_size": 8, "lr": 1e-2, "eval_tokens": 512, **train},
        "data": {"eval_sets": ["heldout"]},
    }
    return parse_run_config(raw)


@pytest.fixture
def tiny() -> RunConfig:
    return tiny_config()
