"""Sweep specs (TOML): a design over model size x tokens x data mix, expanded into runs.

A spec names a store, the data (a built folder, optionally with the `[data.build]` that makes it),
the model family, the training settings shared by every run, per-run resources for cluster
engines, and a design:

- `[design.grid]`: target sizes x token counts (or tokens-per-parameter ratios);
- `[design.isoflop]`: compute budgets x `points` sizes per budget, evenly spaced in log N over a
  `span` (largest / smallest) centred on the expected optimum N* = sqrt(C / (6 r)) for r tokens
  per parameter (or one list of `sizes` for every budget); each run's D = C / flops_per_token(shape) (flops_v1), rounded to whole steps, so
  it hits its budget within 1% (checked);
- `mixes` (tier weights) and/or `[design.random_mixes]` (K Dirichlet draws, RegMix-style, seeded);
- `seeds` and `lr_multipliers` (on the run's learning rate, default or set).

A `[fit]` table says how the sweep's runs are fitted (law, the quality law's reference tier, eval
set, bootstrap); no run carries it, so it never changes a run id.

`expand(spec)` returns the runs as resolved RunConfigs with stable ids: the same spec always
yields the same ids, and changing one run's settings changes only that run's id. Everything is
validated before anything is written; errors name the file, the key path and the expected form.
Types are strict (`"1e11"` or `true` is no number; an integer is a float). Validation also checks
the spec against its data (the tiers and eval sets of the built folder, or before the build, of its
`[data.build]`) and against this machine's memory (each design size, one sequence at a time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from scaler.config import (
    ConfigError,
    DataConfig,
    ModelShape,
    RunConfig,
    TrainConfig,
    format_validation_error,
    load_toml,
    machine_memory_bytes,
    mix_label,
    memory_estimate,
    run_id_of,
    size_text,
)
from scaler.model.family import Family, count_params, flops_per_token

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
SeedInt = Annotated[int, Field(ge=0)]
BUDGET_TOLERANCE = 0.01
BUILD_EVAL_SETS = ("heldout", "humaneval", "humaneval_solution")  # the eval sets every build writes (scaler/data/build.py)
FitLaw = Literal["chinchilla", "chinchilla_group_e", "kaplan", "overtrain", "broken", "data_constrained", "quality",
                 "mixing", "auto"]  # scaler/fitting/pipeline.py: LAW_NAMES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class _Schedule(_Strict):
    """How a design's token counts at one size are trained: `independent` runs (the spec's
    train.schedule), or `wsd-branches`: WSD runs of one warmup-stable trunk per (size, data, seed,
    lr), each shorter token count a branch forked at its cooldown start (scaler/train/branches.py)."""

    schedule: Literal["independent", "wsd-branches"] = "independent"
    cooldown_fraction: float = Field(default=0.2, gt=0, le=1, description="wsd-branches: share of each run's steps in cooldown")


class GridDesign(_Schedule):
    sizes: list[PositiveInt] = Field(min_length=1, description="target parameter counts")
    tokens: list[PositiveInt] | None = Field(default=None, min_length=1)
    tokens_per_param: list[PositiveFloat] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_token_axis(self) -> GridDesign:
        if (self.tokens is None) == (self.tokens_per_param is None):
            raise ValueError("give exactly one of tokens or tokens_per_param")
        return self


class IsoflopDesign(_Schedule):
    budgets: list[PositiveFloat] = Field(min_length=1, description="training FLOPs per run (flops_v1)")
    points: int = Field(default=5, ge=3, description="sizes per budget")
    span: float = Field(default=8.0, gt=1, description="largest / smallest size at each budget")
    tokens_per_param: float = Field(default=20.0, gt=0, description="where the span is centred: N* = sqrt(C / 6r)")
    sizes: list[PositiveInt] | None = Field(
        default=None, min_length=1, description="the same sizes at every budget instead of points/span (small models, whose "
                                  "family shapes are coarse)")


class RandomMixes(_Strict):
    count: PositiveInt
    tiers: list[str] = Field(min_length=2)
    alpha: float = Field(default=1.0, gt=0, description="Dirichlet concentration")
    seed: SeedInt = 0


class Design(_Strict):
    grid: GridDesign | None = None
    isoflop: IsoflopDesign | None = None
    mixes: list[dict[str, float]] = []
    random_mixes: RandomMixes | None = None
    seeds: list[SeedInt] = Field(default=[0], min_length=1)
    lr_multipliers: list[PositiveFloat] = Field(default=[1.0], min_length=1)

    @model_validator(mode="after")
    def _one_design(self) -> Design:
        if (self.grid is None) == (self.isoflop is None):
            raise ValueError("give exactly one of [design.grid] or [design.isoflop]")
        return self


class Resources(_Strict):
    """What one run asks a cluster engine for (Ray, SLURM); the local engine ignores it."""

    cpus: PositiveInt = 1
    gpus: int = Field(default=0, ge=0)
    tpu: str | None = None
    memory_gb: PositiveFloat = 4.0
    time_limit_min: PositiveInt = 60
    partition: str | None = None
    array_parallelism: PositiveInt = 64


class SweepData(_Strict):
    dir: str | None = None  # a built data folder; None: the in-memory standard library
    tokenizer: str = "bytes"
    eval_sets: list[str] = ["heldout"]
    unique_tokens: dict[str, PositiveInt] = {}
    raw_pool_tokens: PositiveInt | None = Field(
        default=None, description="scarce data: every tier's pool is what its cleaning keeps of the first this many "
                                  "tokens of the build's first tier (raw), scaler.data.folder.pool_caps")
    heldout_fraction: float = Field(default=0.05, gt=0, lt=0.5)
    build: dict[str, Any] | None = None  # a [data.build] table: `scaler run` builds dir from it if missing

    @field_validator("tokenizer")
    @classmethod
    def _known_tokenizer(cls, name: str) -> str:
        from scaler.data.tokenize import parse_tokenizer_name

        parse_tokenizer_name(name)
        return name


class FamilySettings(_Strict):
    vocab_size: int | None = Field(default=None, gt=1)  # default: 257 for bytes, N for bpe-N
    seq_len: int = Field(default=256, gt=1)
    aspect_ratio: PositiveInt = 32
    head_dim: PositiveInt = 16
    ffn_ratio: PositiveFloat = 8 / 3
    ffn_multiple: PositiveInt = 16

    @field_validator("head_dim")
    @classmethod
    def _even_heads(cls, head_dim: int) -> int:
        if head_dim % 2:
            raise ValueError("must be even (RoPE rotates pairs of dimensions)")
        return head_dim


class FitSettings(_Strict):
    """How the sweep's runs are fitted (`scaler fit`, reports); no run carries these, so no run id."""

    law: FitLaw = "chinchilla"
    reference: str = Field(default="raw", description="the quality law's reference tier (kappa = 1)")
    eval_set: str = Field(default="heldout", description="the eval set whose final loss is fitted")
    bootstrap: int = Field(default=1000, ge=0, description="bootstrap resamples for intervals (0: none)")
    seed: SeedInt = Field(default=0, description="bootstrap seed")
    objective: Literal["huber", "asymmetric"] = Field(default="huber", description="what the fitter minimises")
    delta: PositiveFloat = Field(default=1e-3, description="the Huber threshold (on log loss; on loss: asymmetric)")
    asymmetry: PositiveFloat = Field(default=10.0, description="asymmetric: the weight of predictions above a run")
    horizon: float = Field(default=10.0, ge=1.0, description="law auto: the extrapolation (compute over the largest "
                           "fitted run's) its backtests are scored at")


class SweepSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    store: str | None = None  # default store/<name>
    retries: int = Field(default=1, ge=0, description="retries of a failed run (not of a divergence)")
    stack: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        default=1, description="runs trained together by one vmapped step: 1, a number K, or auto (by memory)")
    max_flops: PositiveFloat | None = None  # a budget the plan refuses to exceed without --force
    max_hours: PositiveFloat | None = None
    data: SweepData = SweepData()
    model: FamilySettings = FamilySettings()
    train: dict[str, Any] = {}
    design: Design
    resources: Resources = Resources()
    fit: FitSettings = FitSettings()

    @model_validator(mode="after")
    def _check(self) -> SweepSpec:
        for key in ("tokens", "seed"):
            if key in self.train:
                raise ValueError(f"train.{key}: set by the design (design.grid/isoflop, design.seeds), not here")
        if self.branches() and ({"schedule", "cooldown_fraction"} & set(self.train)):
            raise ValueError("train.schedule: set by the design's schedule = \"wsd-branches\" (with its cooldown_fraction)")
        try:
            TrainConfig.model_validate({**self.train, "tokens": 1})
        except ValidationError as err:
            raise ValueError(format_validation_error(err, "", prefix=("train",)).removeprefix(": ")) from None
        design = self.design
        for key, values in (("seeds", design.seeds), ("lr_multipliers", design.lr_multipliers),
                            ("mixes", [sorted(m.items()) for m in design.mixes])):
            if len({repr(v) for v in values}) != len(values):
                raise ValueError(f"design.{key}: repeated values would repeat runs ({values})")
        used = {t for m in self.all_mixes() for t in m}
        unused = sorted(set(self.data.unique_tokens) - used)
        if unused:
            raise ValueError(f"data.unique_tokens: {unused[0]!r} is in no mix of the design")
        if self.data.dir is None and self.data.raw_pool_tokens is not None:
            raise ValueError("data.raw_pool_tokens: needs data.dir (a folder written by `scaler data build`)")
        if self.data.dir is None and (self.design.mixes or self.design.random_mixes):
            raise ValueError("design.mixes: mixes need data.dir (a folder written by `scaler data build`)")
        if self.data.dir is not None and not (self.design.mixes or self.design.random_mixes):
            raise ValueError("design.mixes: name at least one mix of the data's tiers, e.g. [{clean = 1.0}]")
        for i, mix in enumerate(self.design.mixes):
            try:
                DataConfig(dir=self.data.dir, mix=mix)
            except ValidationError as err:
                raise ValueError(f"design.mixes.{i}: {err.errors()[0]['msg'].removeprefix('Value error, ')}") from None
        try:
            _data_config(self.data, {"any": 1.0} if self.data.dir else {}, None)
        except ValidationError as err:
            raise ValueError(f"data: {err.errors()[0]['msg'].removeprefix('Value error, ')}") from None
        self._check_fit()
        return self

    def _check_fit(self) -> None:
        tiers = sorted({t for m in self.all_mixes() for t in m})
        if len(tiers) > 1 and self.fit.reference not in tiers:
            raise ValueError(f"fit.reference: {self.fit.reference!r} is not a tier of the design's mixes {tiers}; "
                             "the quality law needs one of them as its reference (kappa = 1)")
        if self.fit.eval_set not in self.data.eval_sets:
            raise ValueError(f"fit.eval_set: {self.fit.eval_set!r} is not among data.eval_sets "
                             f"{self.data.eval_sets}: the runs would not record its loss")

    @property
    def store_root(self) -> str:
        return self.store or f"store/{self.name}"

    def family(self) -> Family:
        vocab = self.model.vocab_size or _tokenizer_vocab(self.data.tokenizer)
        return Family(vocab_size=vocab, seq_len=self.model.seq_len, aspect_ratio=self.model.aspect_ratio,
                      head_dim=self.model.head_dim, ffn_ratio=self.model.ffn_ratio, ffn_multiple=self.model.ffn_multiple)

    def branches(self) -> bool:
        """Whether the design trains its token counts as WSD branches."""
        design = self.design.grid or self.design.isoflop
        return design is not None and design.schedule == "wsd-branches"

    def all_mixes(self) -> list[dict[str, float]]:
        mixes = [dict(m) for m in self.design.mixes]
        random = self.design.random_mixes
        if random:
            draws = np.random.default_rng(random.seed).dirichlet([random.alpha] * len(random.tiers), size=random.count)
            mixes += [{t: round(float(w), 6) for t, w in zip(random.tiers, row, strict=True)} for row in draws]
        return mixes or [{}]


def _tokenizer_vocab(name: str) -> int:
    from scaler.data.tokenize import BYTE_VOCAB_SIZE, parse_tokenizer_name

    return parse_tokenizer_name(name) or BYTE_VOCAB_SIZE


def parse_sweep_spec(raw: dict[str, Any], source: str) -> SweepSpec:
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source).replace("(top level): ", "")) from None
    if spec.data.build is not None:
        from scaler.data.build import parse_build_spec

        parse_build_spec(spec.data.build, source)
    _check_build(spec, source)
    _check_pools(spec, source)
    _check_memory(spec, source)
    return spec


def _check_pools(spec: SweepSpec, source: str) -> None:
    """A raw pool that leaves some tier no document, checked once the data is built."""
    from scaler.data.folder import is_built

    if spec.data.raw_pool_tokens is not None and is_built(spec.data.dir):
        try:
            raw_pool_caps(spec.data)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None


def load_sweep_spec(path: str | Path) -> SweepSpec:
    return parse_sweep_spec(load_toml(path), str(path))


# --- expansion ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One (size, tokens) cell of the design, before mixes, seeds and lr multipliers."""

    label: str  # e.g. "C=1e+13" or "D=2e+06"
    target: int  # the size asked of the family
    shape: ModelShape
    tokens: int
    budget_flops: float | None = None


@lru_cache(maxsize=4096)
def _shape(family: Family, target: int) -> ModelShape:
    return family.shape_for_params(target)


def isoflop_sizes(budget: float, design: IsoflopDesign) -> list[int]:
    """`points` sizes evenly spaced in log N over `span`, centred on N* = sqrt(C / (6 r)); or `sizes`."""
    if design.sizes:
        return list(design.sizes)
    center = math.sqrt(budget / (6 * design.tokens_per_param))
    logs = np.linspace(-0.5, 0.5, design.points) * math.log(design.span) + math.log(center)
    return [int(round(math.exp(x))) for x in logs]


def design_points(spec: SweepSpec) -> list[Point]:
    points = _design_points(spec)
    seen: dict[tuple[ModelShape, int], Point] = {}
    for point in points:
        key = (point.shape, point.tokens)
        if key in seen:
            where = "design.grid.sizes" if spec.design.grid else "design.isoflop"
            raise ConfigError(
                f"{where}: sizes {seen[key].target:,} and {point.target:,} ({point.label}) give the same run (d_model {point.shape.d_model}, "
                f"{point.shape.n_layers} layers, {count_params(point.shape):,} parameters); the family's shapes are "
                "coarse at this scale: spread the sizes (or the isoflop span) further"
            )
        seen[key] = point
    return points


def _design_points(spec: SweepSpec) -> list[Point]:
    family, design = spec.family(), spec.design
    step_tokens = int(spec.train.get("batch_size", TrainConfig.model_fields["batch_size"].default)) * family.seq_len
    points: list[Point] = []
    if design.grid:
        for target in design.grid.sizes:
            shape = _shape(family, target)
            if design.grid.tokens:
                points += [Point(f"D={d:.3g}", target, shape, d) for d in design.grid.tokens]
            else:
                points += [Point(f"D/N={r:g}", target, shape, int(r * count_params(shape)))
                           for r in design.grid.tokens_per_param]
        return points
    for i, budget in enumerate(design.isoflop.budgets):
        for target in isoflop_sizes(budget, design.isoflop):
            shape = _shape(family, target)
            per_token = flops_per_token(shape)
            steps = max(1, round(budget / per_token / step_tokens))
            flops = steps * step_tokens * per_token
            if abs(flops / budget - 1) > BUDGET_TOLERANCE:
                raise ConfigError(
                    f"design.isoflop.budgets.{i}: {budget:.3g} FLOPs is {budget / per_token / step_tokens:.1f} steps "
                    f"of {step_tokens} tokens for a {count_params(shape):,}-parameter model; whole steps miss the "
                    f"budget by {abs(flops / budget - 1):.1%} (> 1%): raise the budget or lower train.batch_size"
                )
            points.append(Point(f"C={budget:.3g}", target, shape, steps * step_tokens, budget))
    return points


@dataclass(frozen=True)
class SweepRun:
    run_id: str
    config: RunConfig  # resolved: every default filled in
    point: Point
    mix: dict[str, float]
    lr_multiplier: float


def expand(spec: SweepSpec, build_id: str | None = None) -> list[SweepRun]:
    """Every run of the spec, resolved, with its id, in a fixed order (point, seed, lr, mix).

    `build_id`: the data folder's build id (read from it when None and the folder exists). The
    run ids are keyed on the content hashes of the data each run reads (`data.content`,
    scaler.data.folder.data_content), not on the build id. Before the data is built, ids are
    provisional ("unbuilt"): they change once the data exists.
    """
    data = spec.data
    if data.dir is not None and build_id is None:
        from scaler.data.folder import is_built, read_build_info

        build_id = read_build_info(data.dir).build_id if is_built(data.dir) else "unbuilt"
    _check_build(spec, f"sweep {spec.name}")  # again: the data may have been built since the spec was read
    mixes = [(mix, _data_config(data, mix, build_id)) for mix in spec.all_mixes()]
    points = design_points(spec)
    return [run for point in points for seed in spec.design.seeds for multiplier in spec.design.lr_multipliers
            for run in _runs_at(spec, point, _branch_settings(spec, point, points), seed, multiplier, mixes)]


def _runs_at(spec: SweepSpec, point: Point, schedule: dict[str, Any], seed: int, multiplier: float,
             mixes: list[tuple[dict[str, float], DataConfig]], prefix: str = "") -> list[SweepRun]:
    """The runs of one design point, seed and lr multiplier, one per mix."""
    from scaler.train.defaults import default_lr, resolve

    n_params = count_params(point.shape)
    base_lr = spec.train.get("lr") or default_lr(n_params)
    try:
        train = TrainConfig(**{**spec.train, **schedule, "tokens": point.tokens, "seed": seed, "lr": base_lr * multiplier})
        base = resolve(RunConfig(model=point.shape, train=train))  # data does not enter the defaults
    except ValidationError as err:  # e.g. a design point shorter than one step
        raise ConfigError(format_validation_error(
            err, f"sweep {spec.name}: the run at design point {point.label}, N={n_params:,}",
        ).replace("(top level): ", "")) from None
    name = f"{spec.name}{prefix}/{point.label}/N={n_params}/{{mix}}/s{seed}" + (
        f"/lr*{multiplier:g}" if multiplier != 1.0 else "")
    runs = []
    for mix, data_config in mixes:
        config = base.model_copy(update={"name": name.format(mix=mix_label(mix)), "data": data_config})
        runs.append(SweepRun(run_id_of(config.identity()), config, point, mix, multiplier))
    return runs


def extra_run(spec: SweepSpec, target_params: float, budget_flops: float, tier: str, seed: int = 0,
              prefix: str = "/extra", build_id: str | None = None) -> SweepRun:
    """One run beyond the design, trained as the sweep trains its runs (its data, pools, training
    settings and schedule: a wsd-branches sweep's runs are WSD runs with its cooldown): the family's
    shape nearest `target_params`, on tier `tier` alone, for `budget_flops` rounded to whole steps."""
    if spec.data.dir is not None and build_id is None:
        from scaler.data.folder import read_build_info

        build_id = read_build_info(spec.data.dir).build_id
    family = spec.family()
    shape = _shape(family, int(round(target_params)))
    step_tokens = int(spec.train.get("batch_size", TrainConfig.model_fields["batch_size"].default)) * family.seq_len
    steps = max(1, round(budget_flops / flops_per_token(shape) / step_tokens))
    point = Point(f"C={budget_flops:.3g}", int(round(target_params)), shape, steps * step_tokens, budget_flops)
    mix = {tier: 1.0}
    return _runs_at(spec, point, _branch_settings(spec, point, [point]), seed, 1.0,
                    [(mix, _data_config(spec.data, mix, build_id))], prefix)[0]


def _branch_settings(spec: SweepSpec, point: Point, points: list[Point]) -> dict[str, Any]:
    """For wsd-branches: the WSD schedule, and one warmup for every token count of the point's size
    (the default warmup depends on D; branches of one trunk need the same), that of its shortest."""
    if not spec.branches():
        return {}
    from scaler.train.defaults import default_warmup_tokens

    design = spec.design.grid or spec.design.isoflop
    shortest = min(p.tokens for p in points if p.shape == point.shape)
    warmup = spec.train.get("warmup_tokens", default_warmup_tokens(count_params(point.shape), shortest))
    return {"schedule": "wsd", "cooldown_fraction": design.cooldown_fraction, "warmup_tokens": warmup}


def _invalid(source: str, key: str, message: str) -> str:
    return f"{source}: {key}: {message}"


def _check_build(spec: SweepSpec, source: str) -> None:
    """Every tier a mix names and every eval set exists in the data: in the built folder once it is
    built, before that in what the spec's [data.build] declares."""
    offered = _offered_data(spec, source)
    if offered is None:
        return
    where, tiers, eval_sets = offered
    for i, mix in enumerate(spec.all_mixes()):
        unknown = sorted(set(mix) - set(tiers))
        if unknown:
            key = f"design.mixes.{i}" if i < len(spec.design.mixes) else "design.random_mixes.tiers"
            raise ConfigError(_invalid(source, key, f"unknown tier {unknown[0]!r}; {where} {sorted(tiers)}"))
    missing = [name for name in spec.data.eval_sets if name not in eval_sets]
    if missing:
        raise ConfigError(_invalid(source, "data.eval_sets",
                                   f"unknown eval set {missing[0]!r}; {where} {sorted(eval_sets)}"))


def _offered_data(spec: SweepSpec, source: str) -> tuple[str, list[str], list[str]] | None:
    """(where, tiers, eval sets) of the spec's data: its [data.build] table's when it has one (the
    folder may hold an older build, which `scaler run` replaces), else the built folder's; None when
    there is nothing to check against."""
    if spec.data.dir is None:
        return None
    from scaler.data.folder import is_built, meta_path, read_token_meta

    if spec.data.build is not None or not is_built(spec.data.dir):
        return _declared_data(spec, source)  # with a build table, `scaler run` (re)builds what it declares
    if not meta_path(spec.data.dir, spec.data.tokenizer).is_file():
        raise ConfigError(_invalid(source, "data.tokenizer",
                                   f"{spec.data.tokenizer!r} was not built in {spec.data.dir}"))
    meta = read_token_meta(spec.data.dir, spec.data.tokenizer)
    return f"{spec.data.dir} has", list(meta.tiers), list(meta.eval)


def _declared_data(spec: SweepSpec, source: str) -> tuple[str, list[str], list[str]] | None:
    """What the spec's [data.build] will make (None without one: nothing to check until the data exists)."""
    if spec.data.build is None:
        return None
    from scaler.data.build import parse_build_spec

    build = parse_build_spec(spec.data.build, source)
    if spec.data.tokenizer not in build.tokenizers:
        raise ConfigError(_invalid(source, "data.tokenizer",
                                   f"{spec.data.tokenizer!r} is not among data.build.tokenizers {build.tokenizers}"))
    return "data.build (not built yet) declares", [t.name for t in build.tiers], list(BUILD_EVAL_SETS)


SWEEP_MEMORY_HEADROOM = 100  # a sweep planned here may train on a machine this many times larger (GPUs)


def _check_memory(spec: SweepSpec, source: str) -> None:
    """Refuse design sizes far beyond any machine the sweep could train on: one sequence at a time
    needs more than SWEEP_MEMORY_HEADROOM times this machine's memory (or [resources] memory_gb
    when larger). A run file, which trains here, is checked against this machine itself (config.py)."""
    machine = machine_memory_bytes()
    if machine is None:
        return
    memory_gb = spec.resources.memory_gb
    available = max(machine, int(memory_gb * 1e9))
    family = spec.family()
    for key, target in _design_targets(spec):
        need, estimate = memory_estimate(_shape(family, target), batch_size=1)
        if need > SWEEP_MEMORY_HEADROOM * available:
            raise ConfigError(_invalid(source, key, f"{target:.3g} parameters are far beyond this machine even one "
                                       f"sequence at a time: {estimate}; it has {size_text(machine)} "
                                       f"([resources] memory_gb: {memory_gb:g} GB; refused above "
                                       f"{SWEEP_MEMORY_HEADROOM}x that)"))


def _design_targets(spec: SweepSpec) -> list[tuple[str, int]]:
    """(key, size) of the design's sizes; for isoflop budgets, the largest size of each budget."""
    design = spec.design
    if design.grid:
        return [(f"design.grid.sizes.{i}", n) for i, n in enumerate(design.grid.sizes)]
    if design.isoflop.sizes:
        return [(f"design.isoflop.sizes.{i}", n) for i, n in enumerate(design.isoflop.sizes)]
    return [(f"design.isoflop.budgets.{i}", max(isoflop_sizes(c, design.isoflop)))
            for i, c in enumerate(design.isoflop.budgets)]


def raw_pool_caps(data: SweepData) -> dict[str, int]:
    """Each tier's pool (tokens) under `data.raw_pool_tokens`, from the built folder; a tier left
    with no document is a ConfigError naming the key."""
    from scaler.data.folder import pool_caps

    caps = pool_caps(data.dir, data.tokenizer, data.raw_pool_tokens)
    empty = [t for t, c in caps.items() if c == 0]
    if empty:
        raise ConfigError(f"data.raw_pool_tokens: {data.raw_pool_tokens:,} raw tokens leave tier {empty[0]!r} no "
                          f"whole document in {data.dir}; expected a larger pool")
    return caps


def tier_caps(data: SweepData, built: bool = True) -> dict[str, int]:
    """The tiers whose pools the sweep caps: `data.unique_tokens`, and with `data.raw_pool_tokens`
    (once `built`) every tier's cut from the raw pool, the smaller of the two where both apply."""
    caps = dict(data.unique_tokens)
    if data.raw_pool_tokens is not None and built:
        caps = {t: min(c, caps.get(t, c)) for t, c in raw_pool_caps(data).items()}
    return caps


def _data_config(data: SweepData, mix: dict[str, float], build_id: str | None) -> DataConfig:
    if data.dir is None:
        return DataConfig(eval_sets=data.eval_sets, heldout_fraction=data.heldout_fraction)
    built = build_id not in (None, "unbuilt")  # before the build: provisional ids, no pools to cut
    caps = {t: c for t, c in tier_caps(data, built).items() if t in mix}
    config = DataConfig(dir=data.dir, mix=mix, tokenizer=data.tokenizer, eval_sets=data.eval_sets,
                        unique_tokens=caps, build_id=build_id)
    from scaler.data.folder import data_content, is_built

    if not (built and is_built(data.dir)):
        return config  # provisional ids: the run ids are keyed on the data's contents once it is built
    return config.model_copy(update={"content": data_content(data.dir, data.tokenizer, sorted(mix), caps, data.eval_sets)})
