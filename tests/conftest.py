"""Shared fixtures: tiny shapes, real data (this interpreter's standard library)."""

from __future__ import annotations

import pytest

from scaler.config import RunConfig, parse_run_config


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
