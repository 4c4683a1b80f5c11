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
file, the dotted key path and what was expected. Types are strict: `"8"` or `true` is no number, and
an integer is accepted where a float is expected; infinities and NaN are refused.

The pure shape arithmetic lives here, next to `ModelShape`, so that `target_params` resolves
without importing the model layer (scaler/model/ builds on this module, never the reverse):

- `count_params(shape)`: exact parameter count of the decoder in scaler/model/transformer.py;
- `Family`: the size ladder, every shape derived from d_model by fixed aspect rules;
- `training_bytes(shape, batch_size)`: estimated fp32 memory to train a shape, checked against
  this machine's memory when a run file asks for `target_params` (and by sweep specs for their sizes).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from scaler.errors import ConfigError

FLOPS_CONVENTION = "flops_v1"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class ModelShape(_Strict):
    """Shape of one LLaMA-style decoder (docs/design.md §4)."""

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


# --- shape arithmetic ---------------------------------------------------------------------------


def count_params(shape: ModelShape) -> int:
    """Parameters of the decoder (no biases, untied head, RMSNorm scales).

        n_params = 2 V D                     token embedding + output head
                 + L (4 D^2 + 3 D F + 2 D)   attention (q, k, v, o), SwiGLU (gate, up, down), 2 norms
                 + D                         final norm
    """
    d, f, v, n_layers = shape.d_model, shape.d_ff, shape.vocab_size, shape.n_layers
    per_layer = 4 * d * d + 3 * d * f + 2 * d
    return 2 * v * d + n_layers * per_layer + d


def flops_per_token(shape: ModelShape, convention: str = FLOPS_CONVENTION) -> int:
    """Training FLOPs (forward + backward) per token under a named convention (docs/design.md §3):

        flops_v1 = 6 n_params + 12 n_layers seq_len d_model   (weights, plus attention scores)
    """
    if convention != "flops_v1":
        raise ValueError(f"unknown FLOP convention {convention!r}; known: 'flops_v1'")
    attention = 12 * shape.n_layers * shape.seq_len * shape.d_model
    return 6 * count_params(shape) + attention


def _round_up(x: float, multiple: int) -> int:
    return int(math.ceil(x / multiple) * multiple)


@dataclass(frozen=True)
class Family:
    """A size ladder (in the spirit of Marin's scaling recipes): width is the only free variable.

        n_layers = max(1, round(d_model / aspect_ratio))
        n_heads  = d_model / head_dim
        d_ff     = ffn_ratio * d_model rounded up to a multiple of ffn_multiple (SwiGLU: 8/3)
    """

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


# --- memory -------------------------------------------------------------------------------------

FP32_BYTES = 4
STATE_COPIES = 4  # parameters, gradients and Adam's two moments


def training_bytes(shape: ModelShape, batch_size: int) -> dict[str, int]:
    """Estimated fp32 memory to train `shape` on batches of `batch_size` sequences.

    state: parameters, gradients and Adam's two moments. activations: what the backward pass
    keeps per token and layer (about 10 D for the residual stream, norms, q, k, v and attention
    output; 3 F for SwiGLU; 2 H T attention scores and probabilities), plus the logits and their
    softmax (2 V).
    """
    per_layer = 10 * shape.d_model + 3 * shape.d_ff + 2 * shape.n_heads * shape.seq_len
    per_token = shape.n_layers * per_layer + 2 * shape.vocab_size
    return {
        "state": STATE_COPIES * FP32_BYTES * count_params(shape),
        "activations": FP32_BYTES * batch_size * shape.seq_len * per_token,
    }


def machine_memory_bytes() -> int | None:
    """Physical memory of this machine (None where the OS does not say)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    return total if total > 0 else None


def size_text(n_bytes: float) -> str:
    """Bytes in decimal units, three significant digits (e.g. 25.3 GB)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n_bytes < 1000:
            return f"{n_bytes:.3g} {unit}"
        n_bytes /= 1000
    return f"{n_bytes:.3g} PB"


def memory_estimate(shape: ModelShape, batch_size: int) -> tuple[int, str]:
    """Estimated bytes to train `shape` (fp32, `training_bytes`), and the estimate in words."""
    need = training_bytes(shape, batch_size)
    total = sum(need.values())
    return total, (
        f"a {count_params(shape):.3g}-parameter model needs an estimated {total:.3g} bytes ({size_text(total)}) "
        f"to train in fp32 (parameters, gradients and Adam state {size_text(need['state'])}, activations of "
        f"{batch_size} x {shape.seq_len} tokens {size_text(need['activations'])})"
    )


TrackerName = Literal["tensorboard", "wandb", "jsonl"]  # run trackers (scaler/train/trackers.py)


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
    final_eval_tokens: Annotated[int, Field(gt=0)] | Literal["all"] | None = Field(
        default=None, description="tokens per eval set of the final evaluation: all (the whole set), a number, or "
                                  "None (eval_tokens)")
    checkpoint_every_steps: int | None = Field(default=None, gt=0)
    max_loss: float | None = Field(default=None, gt=0, description="loss above this: diverged")
    trackers: list[TrackerName] = Field(
        default_factory=list, description="where metrics rows also go while the run trains "
                                          "(scaler/train/trackers.py); not part of the run's identity")


def mix_label(mix: Mapping[str, float]) -> str:
    """The one label of a data mix (run names, fit groups, plans, reports): the tier's name for a
    single tier, else `tier:weight` joined by "+" in tier order ("clean:0.50+raw:0.50"); "stdlib"
    for the built-in source."""
    parts = [t if w == 1 else f"{t}:{w:.2f}" for t, w in sorted(mix.items()) if w]
    return "+".join(parts) or "stdlib"


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
    build_id: str | None = Field(default=None, description="filled from the data folder when a run resolves; "
                                 "recorded, not part of the run id")
    content: dict[str, str] = Field(default={}, description="filled from the data folder when a run resolves: "
                                    "content hashes of its tiers' pools and eval sets (scaler.data.folder.data_content); "
                                    "the run id is keyed on them")

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
                                 "['heldout', 'train'] (built data also has 'humaneval' and 'humaneval_solution')")
        elif not self.mix:
            raise ValueError("mix: name the tiers to train on with weights, e.g. mix = {clean = 1.0}")
        return self


ADDED_AT_DEFAULT = (("train", "final_eval_tokens"), ("data", "content"))  # RunConfig fields newer than some stores' run ids


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
        """The fields that define the run: everything but its display name, its trackers and the
        data's build id (the run is keyed on the content of its data, `data.content`)."""
        identity = self.model_dump(mode="json", exclude={"name": True, "train": {"trackers"}, "data": {"build_id"}})
        for section, key in ADDED_AT_DEFAULT:  # fields added later: at their default they leave the id as it was
            if identity[section][key] == type(self).model_fields[section].annotation.model_fields[key].default:
                del identity[section][key]
        return identity


def canonical_json(obj: Any) -> str:
    """Sorted keys, no spaces, ASCII only, floats as repr; NaN and infinities raise ValueError."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def run_id_of(config: Mapping[str, Any]) -> str:
    """The run id: first 16 hex characters of sha256 of the config's canonical JSON (of
    `RunConfig.identity()` of the resolved config). The store keys run folders by it."""
    return hashlib.sha256(canonical_json(config).encode("ascii")).hexdigest()[:16]


def format_validation_error(err: ValidationError, source: str, prefix: tuple[str, ...] = ()) -> str:
    """One line: `source: key: problem (got value)`, the dotted key under `prefix`; several
    problems are joined with "; "."""
    problems = []
    for e in err.errors():
        key = ".".join(str(p) for p in (*prefix, *e["loc"])) or "(top level)"
        got = e.get("input")
        got_text = "" if isinstance(got, dict) else f" (got {got!r})"
        if e["type"] == "extra_forbidden":
            problems.append(f"{key}: unknown key{got_text}")
        elif e["type"] == "missing":
            problems.append(f"{key}: required key is missing")
        else:
            message = e["msg"].removeprefix("Value error, ").replace("\n", " ")
            problems.append(f"{key}: {message}{got_text}")
    return f"{source}: " + "; ".join(problems)


def parse_run_config(raw: dict[str, Any], source: str = "<dict>") -> RunConfig:
    """Validate a raw mapping; `model.target_params` asks the family for a shape (checked against memory)."""
    raw = dict(raw)
    model = raw.get("model")
    target = _target_shape(model, source) if isinstance(model, dict) and "target_params" in model else None
    if target is not None:
        raw["model"] = target.shape().model_dump()
    try:
        config = RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None
    if target is not None:
        _refuse_beyond_memory(config, target, source)
    return config


def _refuse_beyond_memory(config: RunConfig, target: TargetShape, source: str) -> None:
    """A run file trains here, at its batch size: refuse one that cannot fit this machine's memory."""
    available = machine_memory_bytes()
    need, estimate = memory_estimate(config.model, config.train.batch_size)
    if available is not None and need > available:
        raise ConfigError(f"{source}: model.target_params: {target.target_params:.3g} parameters are beyond this "
                          f"machine: {estimate}; it has {size_text(available)}")


class TargetShape(_Strict):
    """`[model]` given as a parameter count: the family ladder picks the shape."""

    target_params: float = Field(ge=1)
    vocab_size: int | None = Field(default=None, gt=1)
    seq_len: int | None = Field(default=None, gt=1)

    def shape(self) -> ModelShape:
        given = {k: v for k, v in (("vocab_size", self.vocab_size), ("seq_len", self.seq_len)) if v is not None}
        return Family(**given).shape_for_params(int(self.target_params))


def _target_shape(model: dict[str, Any], source: str) -> TargetShape:
    extra = sorted(set(model) - set(TargetShape.model_fields))
    if extra:
        raise ConfigError(
            f"{source}: model.{extra[0]}: unknown key next to model.target_params "
            f"(expected only {sorted(TargetShape.model_fields)})"
        )
    try:
        return TargetShape.model_validate(model)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, prefix=("model",))) from None


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a folder; expected a TOML file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read it ({err.strerror or err})") from None


def load_run_config(path: str | Path) -> RunConfig:
    return parse_run_config(load_toml(path), source=str(path))
