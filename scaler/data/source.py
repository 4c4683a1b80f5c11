"""Token sources: what the trainer reads batches and eval sets from.

The interface is small on purpose: batch i of a run is a pure function of (seed, i), so resuming
a run needs only its step, and two runs with the same seed see the same data. A source also says
how many bytes a token stands for (losses convert to bits per byte) and how many tokens, unique
tokens and epochs a run of n batches reads (the data-constrained laws need them).

Two implementations:
- `stdlib_source()`: the running interpreter's standard library read in memory (scaler/data/corpus.py),
  byte tokens, whole packages held out; no build needed, for quick runs and tests;
- `MixSource` (scaler/data/mix.py): the tiers of a folder written by `scaler data build`, mixed by weight.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import polars as pl

from scaler.data.tokenize import BYTE_EOS_ID, BYTE_VOCAB_SIZE, ByteTokenizer, pack

__all__ = ["BYTE_EOS_ID", "BYTE_VOCAB_SIZE", "StreamSource", "TokenSource", "TokenStreams", "stdlib_source"]


class TokenSource(Protocol):
    name: str
    vocab_size: int
    eos_id: int
    bytes_per_token: float  # of the training data: converts nats/token to bits/byte

    def train_batch(self, seed: int, index: int, batch_size: int, seq_len: int) -> np.ndarray:
        """Batch `index` of the run seeded `seed`: int32 tokens of shape (batch_size, seq_len + 1)."""
        ...

    def eval_set(self, name: str, n_tokens: int, seq_len: int) -> np.ndarray:
        """A fixed eval set: int32 (n_sequences, seq_len + 1), at least n_tokens predicted tokens."""
        ...

    def eval_bytes_per_token(self, name: str) -> float:
        """Bytes per token of an eval set (tokenizers compress code and prose differently)."""
        ...

    def eval_set_tokens(self, name: str) -> int:
        """Tokens in the whole eval set `name`."""
        ...

    def usage(self, seed: int, n_batches: int, batch_size: int, seq_len: int) -> dict[str, float]:
        """Tokens drawn, unique tokens and epochs of a run that reads `n_batches` batches."""
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

    def eval_bytes_per_token(self, name: str) -> float:
        return self.streams.n_bytes[name] / len(self.streams.splits[name])

    def eval_set_tokens(self, name: str) -> int:
        return len(self.streams.splits[name])

    def usage(self, seed: int, n_batches: int, batch_size: int, seq_len: int) -> dict[str, float]:
        tokens = n_batches * batch_size * seq_len
        unique = len(self.streams.splits["train"])
        return {"data_tokens": tokens, "unique_tokens": unique, "epochs": tokens / unique}

    def describe(self) -> dict[str, object]:
        return {
            "source": self.name,
            "tokenizer": "bytes",
            "vocab_size": self.vocab_size,
            "bytes_per_token": self.bytes_per_token,
            **{f"{k}_tokens": len(v) for k, v in self.streams.splits.items()},
            **{f"{k}_documents": v for k, v in self.streams.n_documents.items()},
        }


@functools.lru_cache(maxsize=4)
def stdlib_streams(heldout_fraction: float) -> TokenStreams:
    """The standard library as byte streams, whole packages held out (scaler/data/corpus.py)."""
    from scaler.data.corpus import assign_split, collect

    docs, _ = collect(["stdlib"])
    docs = assign_split(docs, heldout_fraction).docs
    tokenizer = ByteTokenizer()
    parts = {s: docs.filter(pl.col("split") == s) for s in ("train", "heldout")}
    return TokenStreams(
        splits={s: pack(tokenizer, d["text"].to_list()) for s, d in parts.items()},
        n_bytes={s: int(d["n_bytes"].sum()) for s, d in parts.items()},
        n_documents={s: len(d) for s, d in parts.items()},
        packages={s: sorted(set(d["package"])) for s, d in parts.items()},
    )


def stdlib_source(heldout_fraction: float = 0.05) -> StreamSource:
    return StreamSource(stdlib_streams(heldout_fraction), name="stdlib")
