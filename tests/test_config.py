"""Every config error names the file, the key path and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from scaler.config import ConfigError, load_run_config, parse_run_config
from scaler.model.family import count_params

GOOD = """
name = "t"
[model]
d_model = 64
n_layers = 2
n_heads = 4
d_ff = 176
vocab_size = 257
seq_len = 64
[train]
tokens = 65536
batch_size = 8
lr = 3e-3
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_run_config(path)
    message = str(info.value)
    assert str(path) in message, message
    return message


def test_good_config_loads(tmp_path: Path) -> None:
    config = load_run_config(write(tmp_path, GOOD))
    assert config.model.head_dim == 16
    assert config.train.lr == 3e-3
    assert config.data.source == "stdlib"


@pytest.mark.parametrize(
    ("old", "new", "key", "expected"),
    [
        ("lr = 3e-3", "lr = 3e-3\nlearning_rate = 1.0", "train.learning_rate", "unknown key"),
        ("d_model = 64", "d_model = 64\nwidth = 3", "model.width", "unknown key"),
        ("batch_size = 8", 'batch_size = "8"', "train.batch_size", "valid integer"),
        ("tokens = 65536", "tokens = 6.5e4", "train.tokens", "valid integer"),
        ("tokens = 65536", "tokens = -5", "train.tokens", "greater than 0"),
        ("lr = 3e-3", "lr = 0.0", "train.lr", "greater than 0"),
        ("lr = 3e-3", "lr = -1e-3", "train.lr", "greater than 0"),
        ("n_heads = 4", "n_heads = 5", "model", "divisible by n_heads"),
        ("n_heads = 4", "n_heads = 64", "model", "must be even"),
        ("seq_len = 64", "seq_len = 0", "model.seq_len", "greater than 1"),
        ("lr = 3e-3", 'lr = 3e-3\nschedule = "linear"', "train.schedule", "'cosine' or 'wsd'"),
        ("lr = 3e-3", "lr = 3e-3\nbeta2 = 1.5", "train.beta2", "less than 1"),
        ("tokens = 65536", "tokens = 100", "(top level)", "less than one step"),
    ],
)
def test_config_errors_name_key_and_expectation(tmp_path: Path, old: str, new: str, key: str, expected: str) -> None:
    assert old in GOOD
    message = error_of(tmp_path, GOOD.replace(old, new))
    assert key in message and expected in message, message


def test_missing_section_and_unknown_section(tmp_path: Path) -> None:
    assert "train: required key is missing" in error_of(tmp_path, GOOD.split("[train]")[0])
    assert "optimizer: unknown key" in error_of(tmp_path, GOOD + "\n[optimizer]\nfoo = 1\n")


def test_unknown_eval_set(tmp_path: Path) -> None:
    message = error_of(tmp_path, GOOD + '\n[data]\neval_sets = ["heldout", "humaneval"]\n')
    assert "eval_sets" in message and "humaneval" in message


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_run_config(tmp_path / "nope.toml")
    assert "not valid TOML" in error_of(tmp_path, "[model\n")


def test_target_params_uses_the_family(tmp_path: Path) -> None:
    text = GOOD.split("[model]")[0] + "[model]\ntarget_params = 100_000\nseq_len = 64\n[train]" + GOOD.split("[train]")[1]
    config = load_run_config(write(tmp_path, text))
    assert 0.7 < count_params(config.model) / 100_000 < 1.4
    assert config.model.seq_len == 64


def test_target_params_errors(tmp_path: Path) -> None:
    base = GOOD.split("[model]")[0] + "[model]\n{}\n[train]" + GOOD.split("[train]")[1]
    message = error_of(tmp_path, base.format("target_params = 1e5\nd_model = 64"))
    assert "model.d_model" in message and "target_params" in message
    message = error_of(tmp_path, base.format("target_params = -3"))
    assert "model.target_params" in message and "positive" in message


def test_configs_are_frozen() -> None:
    config = parse_run_config({"model": {"target_params": 50_000}, "train": {"tokens": 10_000, "batch_size": 2}})
    with pytest.raises(Exception):
        config.train.lr = 1.0  # type: ignore[misc]
