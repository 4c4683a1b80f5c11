"""Token sources: what the trainer reads batches and eval sets from.

The interface is small on purpose: batch i of a run is a pure function of (seed, i), so resuming
a run needs only its step, and two runs with the same seed see the same data. A source also says
how many bytes a token stands for (losses convert to bits per byte) and how many tokens, unique
tokens and epochs a run of n batches reads (the data-constrained laws need them).

An eval set comes as `EvalWindows`: token windows and a weight per predicted token. A stream set
(held-out code, HumanEval as one text) weighs every token 1. An answer set (`humaneval_solution`:
each HumanEval problem's canonical solution given its prompt) weighs only the answer's tokens,
so its loss is the loss of the correct answer (the OLMo ladder's and DataDecide's task loss).

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

__all__ = ["BYTE_EOS_ID", "BYTE_VOCAB_SIZE", "EvalWindows", "StreamSource", "TokenSource", "TokenStreams",
           "answer_windows", "stdlib_source"]


@dataclass(frozen=True)
class EvalWindows:
    """An eval set as the eval step reads it: tokens_NT1 int32 (n, seq_len + 1) and weights_NT
    float32 (n, seq_len), the weight of predicting tokens_NT1[:, 1:] (1: scored, 0: context or padding).
    The set's loss is sum(weights * token losses) / sum(weights), nats per scored token."""

    tokens_NT1: np.ndarray
    weights_NT: np.ndarray

    @classmethod
    def every_token(cls, tokens_NT1: np.ndarray) -> EvalWindows:
        return cls(tokens_NT1, np.ones((tokens_NT1.shape[0], tokens_NT1.shape[1] - 1), np.float32))

    @property
    def n_windows(self) -> int:
        return int(self.tokens_NT1.shape[0])

    def padded(self, multiple: int, pad_id: int) -> EvalWindows:
        """Rounded up to a multiple of `multiple` windows with unscored padding windows."""
        extra = -self.n_windows % multiple
        if not extra:
            return self
        tokens = np.full((extra, self.tokens_NT1.shape[1]), pad_id, np.int32)
        return EvalWindows(np.concatenate([self.tokens_NT1, tokens]),
                           np.concatenate([self.weights_NT, np.zeros((extra, self.weights_NT.shape[1]), np.float32)]))

    def every(self, n: int) -> EvalWindows:
        """At most `n` windows, spread evenly over the set (all of them when n >= the set's)."""
        if n >= self.n_windows:
            return self
        keep = np.linspace(0, self.n_windows - 1, num=max(n, 1)).astype(np.int64)
        return EvalWindows(self.tokens_NT1[keep], self.weights_NT[keep])


def answer_windows(stream: np.ndarray, answer_mask: np.ndarray, seq_len: int, eos_id: int) -> EvalWindows:
    """Windows that score every answer token once, each with at least seq_len // 2 tokens of the
    text before it (its prompt, then the answer so far) or all of it when the text is shorter.

    `stream`: documents, each EOS + prompt + answer; `answer_mask`: 1 at answer tokens. An
    answer's targets are cut into chunks of seq_len // 2 (the stride); the window of a chunk ends at
    its last target and reaches seq_len tokens back, so the first chunk sees the prompt's end."""
    stride = max(1, seq_len // 2)
    starts = np.flatnonzero(stream == eos_id)
    ends = np.append(starts[1:], len(stream))
    tokens, weights = [], []
    for lo, hi in zip(starts, ends, strict=True):
        doc, answer = stream[lo:hi].astype(np.int32), np.flatnonzero(answer_mask[lo:hi])
        for a in range(int(answer[0]), int(answer[-1]) + 1, stride) if answer.size else ():
            b = min(a + stride, int(answer[-1]) + 1)  # targets [a, b)
            w0 = max(0, b - seq_len - 1)
            window = np.full(seq_len + 1, eos_id, np.int32)
            piece = doc[w0 : w0 + seq_len + 1]
            window[: len(piece)] = piece
            weight = np.zeros(seq_len, np.float32)
            weight[a - w0 - 1 : b - w0 - 1] = 1.0
            tokens.append(window)
            weights.append(weight)
    if not tokens:
        raise ValueError("answer eval set: no answer tokens")
    return EvalWindows(np.stack(tokens), np.stack(weights))


class TokenSource(Protocol):
    name: str
    vocab_size: int
    eos_id: int
    bytes_per_token: float  # of the training data: converts nats/token to bits/byte

    def train_batch(self, seed: int, index: int, batch_size: int, seq_len: int) -> np.ndarray:
        """Batch `index` of the run seeded `seed`: int32 tokens of shape (batch_size, seq_len + 1)."""
        ...

    def eval_set(self, name: str, n_tokens: int, seq_len: int) -> EvalWindows:
        """A fixed eval set: windows (n_sequences, seq_len + 1) of at least n_tokens predicted tokens
        (a stream set), or of at most that many (an answer set; all its windows when n_tokens is at
        least `eval_set_tokens(name)`)."""
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

    def eval_set(self, name: str, n_tokens: int, seq_len: int) -> EvalWindows:
        if name not in self.streams.splits:
            raise KeyError(f"unknown eval set {name!r}; this source has {sorted(self.streams.splits)}")
        return EvalWindows.every_token(even_windows(self.streams.splits[name], math.ceil(n_tokens / seq_len), seq_len + 1))

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
