"""Every config error names the file, the key path and what was expected."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import scaler.config
from scaler.config import (
    ConfigError,
    Family,
    ModelShape,
    count_params,
    load_run_config,
    machine_memory_bytes,
    parse_run_config,
    training_bytes,
)

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
        # strict types: no bool or string is a number, no float an integer, no infinity a value
        ("batch_size = 8", "batch_size = true", "train.batch_size", "valid integer"),
        ("tokens = 65536", 'tokens = "65536"', "train.tokens", "valid integer"),
        ("lr = 3e-3", 'lr = "3e-3"', "train.lr", "valid number"),
        ("lr = 3e-3", "lr = true", "train.lr", "valid number"),
        ("lr = 3e-3", "lr = inf", "train.lr", "finite number"),
        ("lr = 3e-3", "lr = 3e-3\nmax_loss = nan", "train.max_loss", "finite number"),
        ("lr = 3e-3", "lr = 3e-3\nseed = true", "train.seed", "valid integer"),
        ("lr = 3e-3", "lr = 3e-3\neval_tokens = 1.5", "train.eval_tokens", "valid integer"),
        ("lr = 3e-3", "lr = 3e-3\nweight_decay = false", "train.weight_decay", "valid number"),
        ("d_model = 64", "d_model = 64.0", "model.d_model", "valid integer"),
        ("n_layers = 2", "n_layers = true", "model.n_layers", "valid integer"),
        ("vocab_size = 257", 'vocab_size = "257"', "model.vocab_size", "valid integer"),
        ("lr = 3e-3", 'lr = 3e-3\n[data]\nheldout_fraction = "0.1"', "data.heldout_fraction", "valid number"),
        ("lr = 3e-3", "lr = 3e-3\n[data]\neval_sets = [true]", "data.eval_sets.0", "valid string"),
        ("lr = 3e-3", 'lr = 3e-3\n[data]\ndir = "d"\nmix = {c = true}', "data.mix.c", "valid number"),
        ("lr = 3e-3", 'lr = 3e-3\n[data]\ndir = "d"\nmix = {clean = 1}\nunique_tokens = {clean = 1e5}',
         "data.unique_tokens.clean", "valid integer"),
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
    assert "model.target_params" in message and "greater than or equal to 1" in message


def test_configs_are_frozen() -> None:
    config = parse_run_config({"model": {"target_params": 50_000}, "train": {"tokens": 10_000, "batch_size": 2}})
    with pytest.raises(Exception):
        config.train.lr = 1.0  # type: ignore[misc]


def test_integers_are_accepted_where_floats_are_expected(tmp_path: Path) -> None:
    config = load_run_config(write(tmp_path, GOOD.replace("lr = 3e-3", "lr = 1\nweight_decay = 0")))
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float) and config.train.weight_decay == 0.0


TARGET = GOOD.split("[model]")[0] + "[model]\n{}\n[train]" + GOOD.split("[train]")[1]


@pytest.mark.parametrize(
    ("model", "key", "expected"),
    [
        ("target_params = true", "model.target_params", "valid number"),
        ('target_params = "1e5"', "model.target_params", "valid number"),
        ("target_params = 0.5", "model.target_params", "greater than or equal to 1"),
        ("target_params = 1e5\nseq_len = true", "model.seq_len", "valid integer"),
        ("target_params = 1e5\nseq_len = 1", "model.seq_len", "greater than 1"),
        ("target_params = 1e5\nvocab_size = 257.0", "model.vocab_size", "valid integer"),
    ],
)
def test_target_params_types_are_strict(tmp_path: Path, model: str, key: str, expected: str) -> None:
    message = error_of(tmp_path, TARGET.format(model))
    assert f"{key}: " in message and expected in message, message


def test_target_params_far_beyond_memory_is_refused_with_the_estimate(tmp_path: Path, monkeypatch) -> None:
    # refused from arithmetic alone: config imports no model code (test_config_imports_nothing_above_it)
    message = error_of(tmp_path, TARGET.format("target_params = 1e15"))
    assert "model.target_params: 1e+15 parameters" in message and "bytes" in message, message
    assert "Adam state" in message and "activations" in message and "this machine" in message
    monkeypatch.setattr(scaler.config, "machine_memory_bytes", lambda: 10**6)  # a 1 MB machine
    message = error_of(tmp_path, TARGET.format("target_params = 100_000\nseq_len = 64"))
    assert "model.target_params: 1e+05 parameters" in message and "it has 1 MB" in message, message


def test_training_bytes_by_hand() -> None:
    shape = ModelShape(d_model=32, n_layers=2, n_heads=4, d_ff=96, vocab_size=257, seq_len=16)
    need = training_bytes(shape, batch_size=2)
    assert need["state"] == 4 * 4 * 43_232  # parameters, gradients, two Adam moments, fp32
    per_layer = 10 * 32 + 3 * 96 + 2 * 4 * 16  # 736 floats a token: stream, SwiGLU, attention scores
    assert need["activations"] == 4 * 2 * 16 * (2 * per_layer + 2 * 257)
    assert (machine_memory_bytes() or 1) > 0


def test_config_imports_nothing_above_it() -> None:
    """config is the bottom layer: the family's shape arithmetic lives in it, the model layer imports it."""
    tree = ast.parse(Path(scaler.config.__file__).read_text())
    modules = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    modules += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert [m for m in modules if m and m.startswith("scaler")] == ["scaler.errors"], modules
    from scaler.model import family

    assert family.Family is Family and family.count_params is count_params
