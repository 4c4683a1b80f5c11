"""Typed, validated configs for one training run, loaded from TOML.

A run file looks like::

    name = "tiny"                      # free text, not part of the run id
    [model]                            # either an explicit shape ...
    d_model = 64
    n_layers = 2
    n_heads = 4
    d_ff = 176
    vocab_size = 257
    seq_len = 128
    # ... or `target_params = 1_000_000` (plus optional vocab_size, seq_len): the family picks a shape
    [train]
    tokens = 2_000_000
    batch_size = 16                    # sequences per step
    lr = 3e-3                          # omitted: the size-aware default of `scaler.train.defaults`
    [data]
    source = "stdlib"

Every error (unknown key, wrong type, impossible value) is a `ConfigError` whose message names the
file, the dotted key path and what was expected.
"""

from __future__ import annotations

import math
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

FLOPS_CONVENTION = "flops_v1"


class ConfigError(ValueError):
    """A config that cannot be used; the message says where and what was expected."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ModelShape(_Strict):
    """Shape of one LLaMA-style decoder (DESIGN §4)."""

    d_model: int = Field(gt=0)
    n_layers: int = Field(gt=0)
    n_heads: int = Field(gt=0)
    d_ff: int = Field(gt=0)
    vocab_size: int = Field(gt=1)
    seq_len: int = Field(gt=1)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelShape:
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )
        if (self.d_model // self.n_heads) % 2:
            raise ValueError(
                f"head width d_model/n_heads = {self.d_model // self.n_heads} must be even (RoPE)"
            )
        return self

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


class TrainConfig(_Strict):
    """Optimisation and evaluation settings. `None` means: resolved by the size-aware defaults."""

    tokens: int = Field(gt=0, description="D: tokens seen in training, repeats included")
    batch_size: int = Field(gt=0, description="sequences per optimizer step")
    lr: float | None = Field(default=None, gt=0)
    schedule: Literal["cosine", "wsd"] = "cosine"
    warmup_tokens: int | None = Field(default=None, ge=0)
    cooldown_fraction: float = Field(default=0.2, gt=0, le=1, description="wsd: share of steps in decay")
    final_lr_fraction: float = Field(default=0.1, ge=0, le=1)
    beta1: float = Field(default=0.9, ge=0, lt=1)
    beta2: float | None = Field(default=None, ge=0, lt=1)
    eps: float = Field(default=1e-8, gt=0)
    weight_decay: float = Field(default=0.1, ge=0)
    grad_clip: float = Field(default=1.0, gt=0)
    seed: int = Field(default=0, ge=0)
    compute_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    eval_every_steps: int | None = Field(default=None, gt=0)
    eval_tokens: int = Field(default=32_768, gt=0, description="tokens per eval set per evaluation")
    checkpoint_every_steps: int | None = Field(default=None, gt=0)
    max_loss: float | None = Field(default=None, gt=0, description="loss above this: diverged")


class DataConfig(_Strict):
    """Where tokens come from.

    Without `dir`: the interpreter's standard library, byte tokens, read in memory (quick runs).
    With `dir`: a folder written by `scaler data build`, drawn from its tiers by `mix` weights
    (scaler/data/mix.py), optionally capping a tier's pool at `unique_tokens` (repetition studies).
    """

    source: Literal["stdlib"] = "stdlib"
    dir: str | None = None
    mix: dict[str, float] = {}
    unique_tokens: dict[str, Annotated[int, Field(gt=0)]] = {}
    tokenizer: str = "bytes"
    heldout_fraction: float = Field(default=0.05, gt=0, lt=0.5)
    eval_sets: list[str] = ["heldout"]
    build_id: str | None = Field(default=None, description="filled from the data folder when a run resolves")

    @field_validator("dir")
    @classmethod
    def _normalised_dir(cls, path: str | None) -> str | None:
        """`d`, `d/` and `./d` are one folder, and so one run id."""
        return os.path.normpath(path) if path is not None else None

    @field_validator("mix")
    @classmethod
    def _weights(cls, mix: dict[str, float]) -> dict[str, float]:
        bad = {t: w for t, w in mix.items() if not (math.isfinite(w) and w >= 0)}
        if bad:
            raise ValueError(f"weights must be finite numbers >= 0 (got {bad})")
        if mix and sum(mix.values()) <= 0:
            raise ValueError(f"weights must sum to a positive number (got {mix})")
        total = sum(mix.values())
        scale = 1.0 if abs(total - 1.0) < 1e-9 else total  # normalising twice must not move the weights
        return {t: w / scale for t, w in sorted(mix.items()) if w > 0}

    @model_validator(mode="after")
    def _source_settings(self) -> DataConfig:
        if self.dir is None:
            for key in ("mix", "unique_tokens", "build_id"):
                if getattr(self, key):
                    raise ValueError(f"{key} needs dir (a folder written by `scaler data build`)")
            if self.tokenizer != "bytes":
                raise ValueError("the built-in stdlib source has byte tokens only; build data for other tokenizers")
            unknown = set(self.eval_sets) - {"heldout", "train"}
            if unknown:
                raise ValueError(f"eval_sets: unknown {sorted(unknown)} for the stdlib source; expected some of "
                                 "['heldout', 'train'] (built data also has 'humaneval')")
        elif not self.mix:
            raise ValueError("mix: name the tiers to train on with weights, e.g. mix = {clean = 1.0}")
        return self


class RunConfig(_Strict):
    """One training run. Its canonical JSON (name excluded) hashes to the run id."""

    name: str = ""
    model: ModelShape
    train: TrainConfig
    data: DataConfig = DataConfig()
    flops_convention: Literal["flops_v1"] = FLOPS_CONVENTION

    @model_validator(mode="after")
    def _tokens_fill_one_step(self) -> RunConfig:
        step_tokens = self.train.batch_size * self.model.seq_len
        if self.train.tokens < step_tokens:
            raise ValueError(
                f"train.tokens ({self.train.tokens}) is less than one step "
                f"(batch_size * seq_len = {step_tokens})"
            )
        return self

    def identity(self) -> dict[str, Any]:
        """The fields that define the run (everything but its display name)."""
        return self.model_dump(mode="json", exclude={"name"})


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid config"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        got = e.get("input")
        got_text = "" if isinstance(got, dict) else f" (got {got!r})"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key{got_text}")
        elif e["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        else:
            message = e["msg"].removeprefix("Value error, ")
            lines.append(f"  {key}: {message}{got_text}")
    return "\n".join(lines)


def parse_run_config(raw: dict[str, Any], source: str = "<dict>") -> RunConfig:
    """Validate a raw mapping; `model.target_params` asks the family for a shape."""
    raw = dict(raw)
    model = raw.get("model")
    if isinstance(model, dict) and "target_params" in model:
        raw["model"] = _shape_from_target(model, source)
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def _shape_from_target(model: dict[str, Any], source: str) -> dict[str, Any]:
    from scaler.model.family import Family  # family imports ModelShape from here

    allowed = {"target_params", "vocab_size", "seq_len"}
    extra = sorted(set(model) - allowed)
    if extra:
        raise ConfigError(
            f"{source}: invalid config\n  model.{extra[0]}: unknown key next to model.target_params "
            f"(expected only {sorted(allowed)})"
        )
    target = model["target_params"]
    if isinstance(target, bool) or not isinstance(target, int | float) or target <= 0:
        raise ConfigError(
            f"{source}: invalid config\n  model.target_params: expected a positive number (got {target!r})"
        )
    family = Family(**{k: model[k] for k in ("vocab_size", "seq_len") if k in model})
    return family.shape_for_params(int(target)).model_dump()


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None


def load_run_config(path: str | Path) -> RunConfig:
    return parse_run_config(load_toml(path), source=str(path))
