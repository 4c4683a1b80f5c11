"""Token sources: what the trainer reads batches and eval sets from.

The interface is small on purpose: batch i of a run is a pure function of (seed, i), so resuming
a run needs only its step, and two runs with the same seed see the same data.

`StdlibSource` is the built-in source: every `.py` file of the running interpreter's standard
library (site-packages excluded), byte-tokenized (256 byte values plus an EOS token between
documents), split by top-level package so that no package is both trained on and held out.
"""

from __future__ import annotations

import functools
import hashlib
import math
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

BYTE_VOCAB_SIZE = 257  # 256 byte values + EOS
BYTE_EOS_ID = 256


class TokenSource(Protocol):
    name: str
    vocab_size: int
    eos_id: int
    bytes_per_token: float  # converts nats/token to bits/byte

    def train_batch(self, seed: int, index: int, batch_size: int, seq_len: int) -> np.ndarray:
        """Batch `index` of the run seeded `seed`: int32 tokens of shape (batch_size, seq_len + 1)."""
        ...

    def eval_set(self, name: str, n_tokens: int, seq_len: int) -> np.ndarray:
        """A fixed eval set: int32 (n_sequences, seq_len + 1), at least n_tokens predicted tokens."""
        ...

    def describe(self) -> dict[str, object]:
        """What to record with a run about its data."""
        ...


def random_windows(stream: np.ndarray, rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    starts = rng.integers(0, len(stream) - length + 1, size=n)
    return np.stack([stream[s : s + length] for s in starts]).astype(np.int32)


def even_windows(stream: np.ndarray, n: int, length: int) -> np.ndarray:
    starts = np.linspace(0, len(stream) - length, num=n).astype(np.int64)
    return np.stack([stream[s : s + length] for s in starts]).astype(np.int32)


@dataclass(frozen=True)
class TokenStreams:
    """Token streams of one corpus: concatenated documents, EOS between them, uint16."""

    splits: dict[str, np.ndarray]
    n_bytes: dict[str, int]
    n_documents: dict[str, int]
    packages: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamSource:
    """A TokenSource over in-memory token streams with `train` and `heldout` splits."""

    streams: TokenStreams
    name: str = "streams"
    vocab_size: int = BYTE_VOCAB_SIZE
    eos_id: int = BYTE_EOS_ID

    @property
    def bytes_per_token(self) -> float:
        return self.streams.n_bytes["train"] / len(self.streams.splits["train"])

    def train_batch(self, seed: int, index: int, batch_size: int, seq_len: int) -> np.ndarray:
        rng = np.random.default_rng([seed, index])
        return random_windows(self.streams.splits["train"], rng, batch_size, seq_len + 1)

    def eval_set(self, name: str, n_tokens: int, seq_len: int) -> np.ndarray:
        if name not in self.streams.splits:
            raise KeyError(f"unknown eval set {name!r}; this source has {sorted(self.streams.splits)}")
        return even_windows(self.streams.splits[name], math.ceil(n_tokens / seq_len), seq_len + 1)

    def describe(self) -> dict[str, object]:
        return {
            "source": self.name,
            "tokenizer": "bytes",
            "vocab_size": self.vocab_size,
            "bytes_per_token": self.bytes_per_token,
            **{f"{k}_tokens": len(v) for k, v in self.streams.splits.items()},
            **{f"{k}_documents": v for k, v in self.streams.n_documents.items()},
        }


def stdlib_files() -> list[Path]:
    """The standard library's .py files, in a deterministic order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = (p for p in root.rglob("*.py") if "site-packages" not in p.parts and p.is_file())
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def package_of(path: Path, root: Path) -> str:
    first = path.relative_to(root).parts[0]
    return first.removesuffix(".py")


def heldout_packages(sizes: dict[str, int], fraction: float) -> set[str]:
    """Packages, taken in hash order, while the held-out share stays within `fraction`."""
    budget = fraction * sum(sizes.values())
    chosen: set[str] = set()
    taken = 0
    for package in sorted(sizes, key=lambda p: hashlib.sha1(p.encode()).hexdigest()):
        if taken + sizes[package] <= budget:
            chosen.add(package)
            taken += sizes[package]
    return chosen


def byte_stream(texts: list[bytes]) -> np.ndarray:
    """Documents as one uint16 stream, EOS after each."""
    eos = np.array([BYTE_EOS_ID], np.uint16)
    parts = []
    for text in texts:
        parts.append(np.frombuffer(text, np.uint8).astype(np.uint16))
        parts.append(eos)
    return np.concatenate(parts) if parts else np.zeros(0, np.uint16)


@functools.lru_cache(maxsize=4)
def stdlib_streams(heldout_fraction: float) -> TokenStreams:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = stdlib_files()
    texts = {p: p.read_bytes() for p in files}
    sizes: dict[str, int] = {}
    for p, text in texts.items():
        sizes[package_of(p, root)] = sizes.get(package_of(p, root), 0) + len(text)
    held = heldout_packages(sizes, heldout_fraction)
    split_of = {p: "heldout" if package_of(p, root) in held else "train" for p in files}
    by_split = {s: [texts[p] for p in files if split_of[p] == s] for s in ("train", "heldout")}
    return TokenStreams(
        splits={s: byte_stream(t) for s, t in by_split.items()},
        n_bytes={s: sum(map(len, t)) for s, t in by_split.items()},
        n_documents={s: len(t) for s, t in by_split.items()},
        packages={"heldout": sorted(held), "train": sorted(set(sizes) - held)},
    )


def stdlib_source(heldout_fraction: float = 0.05) -> StreamSource:
    return StreamSource(stdlib_streams(heldout_fraction), name="stdlib")
