"""The files of a build folder, typed: build.json, report.json and tokens/<tokenizer>/meta.json.

scaler/data/build.py writes these files from these models, and everything that reads a build
folder reads it here, so a missing or malformed file is one ConfigError that names the path and
what is wrong with it. The models ignore keys they do not know (a newer build may add some);
every key the writer has always written is required.

    is_built(dir)                     build.json exists
    read_build_info(dir)              build.json: build id, spec, tiers, tokenizers, eval tier, versions
    read_report(dir)                  report.json: sources, split, steps, tiers, tokenizers, notes
    read_token_meta(dir, tokenizer)   tokens/<tokenizer>/meta.json: vocabulary, EOS, tokens per tier and eval set
    pool_caps(dir, tokenizer, U)      each tier's pool (tokens) when the first tier is cut at U tokens
    data_content(dir, tokenizer, ...) content hashes of what a run reads (its run id is keyed on them)

The build writes every file through `open_for_writing`, so a failed write (a full disk) is an
OSError that names the file.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from scaler.config import ConfigError

BUILD_FILE = "build.json"
REPORT_FILE = "report.json"
META_FILE = "meta.json"
ERRORS_SHOWN = 3


class BuildFolderError(ConfigError):
    """A build folder, or one of its files, that is missing or malformed."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# --- tokens/<tokenizer>/meta.json ---------------------------------------------------------------


class TokenCount(_Record):
    """One tier's training split, or one eval set, under one tokenizer."""

    tokens: int
    bytes: int
    documents: int
    bytes_per_token: float


class TokenMeta(_Record):
    vocab_size: int
    eos_id: int
    tiers: dict[str, TokenCount]
    eval: dict[str, TokenCount]

    def tier_tokens(self) -> dict[str, int]:
        return {tier: count.tokens for tier, count in self.tiers.items()}


# --- build.json ---------------------------------------------------------------------------------


class BuildInfo(_Record):
    build_id: str
    format: str
    spec: dict[str, Any]  # the BuildSpec, as JSON
    tiers: list[str]
    tokenizers: list[str]
    eval_tier: str
    versions: dict[str, str]
    created: float  # Unix seconds


# --- report.json --------------------------------------------------------------------------------


class FileCount(_Record):
    files: int
    bytes: int


class SplitCount(_Record):
    documents: int
    bytes: int
    packages: int


class RemovedCount(_Record):
    documents: int
    bytes: int


class RemovedExample(_Record):
    path: str | None
    detail: str | None
    snippet: str


class StepReport(_Record):
    tier: str
    step: str
    documents_in: int
    documents_out: int
    bytes_in: int
    bytes_out: int
    seconds: float
    flops: float
    removed: dict[str, RemovedCount]  # by reason
    examples: dict[str, list[RemovedExample]]  # by reason
    notes: dict[str, Any]  # step-specific numbers


class TierReport(BaseModel):
    """A tier's documents and yields; `<tokenizer>_train_tokens` and `<tokenizer>_yield` per tokenizer."""

    model_config = ConfigDict(extra="allow", frozen=True)

    base: str | None
    steps: list[str]  # every step from the corpus to this tier
    synthetic: bool
    documents: int
    bytes: int
    train_documents: int
    train_bytes: int
    yield_bytes: float

    def train_tokens(self, tokenizer: str) -> int:
        return int(self._per_tokenizer(tokenizer, "train_tokens"))

    def token_yield(self, tokenizer: str) -> float:
        """Training tokens over the first tier's."""
        return float(self._per_tokenizer(tokenizer, "yield"))

    def _per_tokenizer(self, tokenizer: str, what: str) -> Any:
        key = f"{tokenizer}_{what}"
        extra = self.model_extra or {}
        if key not in extra:
            raise BuildFolderError(f"report.json: tier has no {key} (tokenizer {tokenizer!r} was not built)")
        return extra[key]


class TokenizerReport(TokenMeta):
    seconds: float


class BuildReport(_Record):
    build_id: str
    sources: dict[str, dict[str, FileCount]]  # source -> file status -> count
    split: dict[str, SplitCount]  # "train" | "heldout"
    steps: list[StepReport]
    tiers: dict[str, TierReport]
    tokenizers: dict[str, TokenizerReport]
    eval_tier: str
    seconds: float
    bytes_read: int
    mb_per_s: float
    notes: list[str] = []  # what the user should know about this build (e.g. how the held-out split was made)


# --- readers and writers ------------------------------------------------------------------------

Model = TypeVar("Model", bound=BaseModel)


def meta_path(data_dir: str | Path, tokenizer: str) -> Path:
    return Path(data_dir) / "tokens" / tokenizer / META_FILE


def is_built(data_dir: str | Path) -> bool:
    return (Path(data_dir) / BUILD_FILE).is_file()


def read_build_info(data_dir: str | Path) -> BuildInfo:
    path = Path(data_dir) / BUILD_FILE
    if not path.is_file():
        raise BuildFolderError(f"{data_dir}: not a data folder written by `scaler data build` (no {BUILD_FILE})")
    return _read(path, BuildInfo)


def read_report(data_dir: str | Path) -> BuildReport:
    path = Path(data_dir) / REPORT_FILE
    if not path.is_file():
        raise BuildFolderError(f"{path}: not found: {data_dir} is not a finished data build (run `scaler data build`)")
    return _read(path, BuildReport)


def read_token_meta(data_dir: str | Path, tokenizer: str) -> TokenMeta:
    """The meta.json of one tokenizer; a tokenizer the build did not make names the ones it did."""
    path = meta_path(data_dir, tokenizer)
    if not path.is_file():
        built = read_build_info(data_dir).tokenizers
        raise BuildFolderError(f"{path}: not found: tokenizer {tokenizer!r} was not built in {data_dir} "
                               f"(built: {built})")
    return _read(path, TokenMeta)


def pool_caps(data_dir: str | Path, tokenizer: str, first_tier_tokens: int) -> dict[str, int]:
    """Each tier's pool, in tokens of its stream, when the build's first tier is cut at
    `first_tier_tokens` tokens: the first tier's whole documents (in pool order, scaler/data/build.py)
    up to the first key that would cross the cut, and in every tier its documents before that key,
    so every pool is what the tier's cleaning keeps of the same raw documents. A cut beyond the first
    tier keeps everything."""
    info = read_build_info(data_dir)
    return dict(_pool_caps(str(data_dir), info.build_id, tokenizer, tuple(info.tiers), int(first_tier_tokens)))


@functools.lru_cache(maxsize=64)
def _pool_caps(data_dir: str, build_id: str, tokenizer: str, tiers: tuple[str, ...], cut: int
               ) -> tuple[tuple[str, int], ...]:
    docs = {t: _read_docs(meta_path(data_dir, tokenizer).parent / "train" / f"{t}.docs.npy") for t in tiers}
    keys, ends = docs[tiers[0]][:, 0], docs[tiers[0]][:, 1]
    crossing = int(np.searchsorted(ends, cut, side="right"))  # the first document that does not fit
    if crossing >= len(keys):
        return tuple((t, int(d[-1, 1]) if len(d) else 0) for t, d in docs.items())
    first_out = keys[crossing]
    caps = []
    for tier, d in docs.items():
        n = int(np.searchsorted(d[:, 0], first_out, side="left"))
        caps.append((tier, int(d[n - 1, 1]) if n else 0))
    return tuple(caps)


HASH_CHUNK_TOKENS = 1 << 24  # tokens hashed per read (32 MB of uint16)


def data_content(data_dir: str | Path, tokenizer: str, tiers: list[str], caps: dict[str, int],
                 eval_sets: list[str]) -> dict[str, str]:
    """What a run reads, as content hashes (the first 16 hex digits of sha256):
    "tier:<t>" each tier's training tokens (the first caps[t] when its pool is capped),
    "eval:<name>" each eval set's tokens (and its answer mask), and "vocab" (vocabulary size, EOS id).
    Runs are keyed on these, not on the build id: a data build redone with the same tier contents
    (new code, same tokens) keeps every run, and a tier whose pool changed gives its runs new ids.
    Each file is hashed once per process (cached by path, size, mtime and cap)."""
    folder = meta_path(data_dir, tokenizer).parent
    meta = read_token_meta(data_dir, tokenizer)
    out = {f"tier:{t}": _tokens_sha(folder / "train" / f"{t}.npy", caps.get(t)) for t in sorted(tiers)}
    for name in sorted(eval_sets):
        files = [folder / "eval" / f"{name}.npy", folder / "eval" / f"{name}.mask.npy"]
        out[f"eval:{name}"] = _digest("".join(_tokens_sha(f, None) for f in files if f.exists()).encode())
    out["vocab"] = _digest(f"{meta.vocab_size}:{meta.eos_id}".encode())
    return out


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _tokens_sha(path: Path, cap: int | None) -> str:
    try:
        stat = path.stat()
    except OSError as err:
        raise BuildFolderError(f"{path}: unreadable ({err.strerror or err})") from None
    return _cached_tokens_sha(str(path), stat.st_size, stat.st_mtime_ns, cap)


@functools.lru_cache(maxsize=256)
def _cached_tokens_sha(path: str, size: int, mtime_ns: int, cap: int | None) -> str:
    """sha256 of a .npy file's tokens (its first `cap`), dtype and count included, read in chunks."""
    tokens = np.load(path, mmap_mode="r")
    tokens = tokens[:cap] if cap is not None else tokens
    digest = hashlib.sha256(f"{tokens.dtype.str}:{len(tokens)}:".encode())
    for start in range(0, len(tokens), HASH_CHUNK_TOKENS):
        digest.update(np.ascontiguousarray(tokens[start : start + HASH_CHUNK_TOKENS]).view(np.uint8))
    return digest.hexdigest()[:16]


def _read_docs(path: Path) -> np.ndarray:
    if not path.is_file():
        raise BuildFolderError(f"{path}: not found: this build predates pools cut from the first tier "
                               "(rebuild it with `scaler data build --force`)")
    try:
        docs = np.load(path)
    except (OSError, ValueError) as err:
        raise BuildFolderError(f"{path}: unreadable ({err})") from None
    if docs.ndim != 2 or docs.shape[1] != 2 or docs.dtype != np.int64:
        raise BuildFolderError(f"{path}: malformed: expected int64 (documents, 2), got {docs.dtype} {docs.shape}")
    return docs


def write_record(path: Path, record: BaseModel) -> None:
    write_file(path, json.dumps(record.model_dump(mode="json"), indent=1).encode())


@contextlib.contextmanager
def open_for_writing(path: Path) -> Iterator[BinaryIO]:
    """`path` opened for writing, its folder made. A failed write names the file: a full disk
    raises OSError(ENOSPC) from a write or the close, which do not say which file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            yield f
    except OSError as err:
        if err.filename is None:
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        raise


def write_file(path: Path, data: bytes) -> None:
    with open_for_writing(path) as f:
        f.write(data)


def _read(path: Path, model: type[Model]) -> Model:
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BuildFolderError(f"{path}: unreadable ({err})") from None
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise BuildFolderError(f"{path}: malformed: {_problems(err)}") from None


def _problems(err: ValidationError) -> str:
    lines = []
    for e in err.errors()[:ERRORS_SHOWN]:
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"{key} is missing" if e["type"] == "missing" else f"{key}: {e['msg']}")
    more = len(err.errors()) - ERRORS_SHOWN
    return "; ".join(lines) + (f" (and {more} more)" if more > 0 else "")
