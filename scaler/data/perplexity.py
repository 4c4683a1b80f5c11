"""The perplexity filter: score documents with a small byte-level reference model, drop the tail.

As in CCNet (Wenzek et al. 2020), documents are ranked by the perplexity of a reference language
model and split at percentiles into head, middle and tail; the tail (the most surprising third by
default: generated tables, minified or encoded data, odd dialects) is dropped.

The data layer does not train models: the layer that orchestrates the build (scaler/sweep/data_build.py)
passes a `ReferenceScorer`, and scaler/train/reference.py implements it with the trainer. This step
asks the scorer for a `Reference`: the run folder named by `model`, or a model trained on the
training split of the documents this step receives, into `reference_store`. The reference trains
on `reference_tokens_per_train_token` times the documents' training tokens, at least
`reference_min_tokens` and at most `reference_tokens`, so a small corpus gets a small reference.

Each document is scored on up to `score_windows` windows of the model's sequence length, spread
evenly over the document (byte tokens; the first window starts with an EOS token as context), so
a long file is judged on more than its license header. The score is nats per byte; the cost is the
reference model's training FLOPs (when trained here) plus 2 N per scored token (forward only,
flops_v1 / 3), recorded in the build report so a recommendation can charge it to the tier.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from scaler.config import ConfigError
from scaler.data.documents import StepOutput, removed_rows
from scaler.data.source import TokenStreams
from scaler.data.tokenize import BYTE_EOS_ID, ByteTokenizer, pack

ProgressFn = Callable[[int, int], None]


class PerplexityParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(
        default=None, description="run folder (STORE/runs/RUN_ID) of a byte-level scaler model; None: train one here"
    )
    reference_params: int = Field(default=60_000, gt=0, description="target parameters of the reference model")
    reference_tokens: int = Field(
        default=1_500_000, gt=0,
        description="most training tokens of the reference model (reached on corpora of 3M training tokens and up)",
    )
    reference_tokens_per_train_token: float = Field(
        default=0.5, gt=0,
        description="training tokens of the reference model per training token of the documents it scores "
                    "(at least reference_min_tokens, at most reference_tokens)",
    )
    reference_min_tokens: int = Field(
        default=131_072, gt=0, description="fewest training tokens of the reference model (on a small corpus)"
    )
    reference_seq_len: int = Field(default=256, gt=0, description="sequence length of the reference model")
    reference_batch_size: int = Field(default=32, gt=0, description="batch size of the reference model")
    score_windows: int = Field(default=2, gt=0, description="windows of seq_len bytes scored per document")
    tail_percentile: float = Field(
        default=200 / 3, gt=0, lt=100,
        description="documents scoring above this percentile are dropped (CCNet: head/middle/tail at 33/67)",
    )
    seed: int = Field(default=0, ge=0, description="seed of the reference model")


@dataclass(frozen=True)
class ReferenceRequest:
    """What the perplexity step asks of its scorer: a byte-level model to score with."""

    streams: TokenStreams  # byte tokens (EOS between documents) of the documents' train and heldout splits
    model: str | None  # a finished run folder to score with; None: train one on streams["train"]
    target_params: int
    tokens: int  # training tokens
    seq_len: int
    batch_size: int
    seed: int
    store: Path | None  # where a trained reference goes (keyed by the documents it trains on)


class Reference(Protocol):
    """A byte-level language model that scores windows."""

    run_dir: str
    seq_len: int  # windows are seq_len + 1 tokens: seq_len predictions
    training_flops: float  # spent training it for this build (0 for a model given by `model`)
    forward_flops_per_token: float

    def window_nll(self, windows: np.ndarray, masks: np.ndarray, progress: ProgressFn | None = None) -> np.ndarray:
        """Summed nats of each window's masked predictions: int32 (n, seq_len + 1), float32 (n, seq_len) -> (n,)."""
        ...


class ReferenceScorer(Protocol):
    """Makes the reference model; `code_id` hashes the code that trains and runs it (it enters the build id)."""

    code_id: str

    def reference(self, request: ReferenceRequest) -> Reference: ...


def reference_streams(docs: pl.DataFrame) -> TokenStreams:
    """Byte streams of the documents' train split (and held-out split for its eval)."""
    tokenizer = ByteTokenizer()
    splits, n_bytes, n_docs = {}, {}, {}
    for split in ("train", "heldout"):
        part = docs.filter(pl.col("split") == split)
        splits[split] = pack(tokenizer, part["text"].to_list())
        n_bytes[split] = int(part["n_bytes"].sum())
        n_docs[split] = len(part)
    return TokenStreams(splits, n_bytes, n_docs)


def reference_training_tokens(params: PerplexityParams, train_tokens: int) -> int:
    """The reference's training tokens for documents with `train_tokens` training tokens."""
    scaled = math.ceil(params.reference_tokens_per_train_token * train_tokens)
    return min(params.reference_tokens, max(params.reference_min_tokens, scaled))


def reference_request(docs: pl.DataFrame, params: PerplexityParams, reference_store: Path | None) -> ReferenceRequest:
    """The request for `params.model`, or for a model trained on the documents' train split.

    A trained reference's store is keyed by the documents it trains on, so two perplexity steps over
    different tiers train two models (a run id hashes only the config)."""
    streams = reference_streams(docs)
    n_train = len(streams.splits["train"])
    store = None
    if params.model is None:
        if reference_store is None:
            raise ValueError("the perplexity step needs `model` (a run folder) or a store to train one in")
        if n_train < params.reference_seq_len + 1:
            raise ConfigError(
                f"the perplexity reference model needs at least reference_seq_len + 1 = {params.reference_seq_len + 1} "
                f"training tokens; these documents have {n_train}"
            )
        trained_on = hashlib.sha256("\n".join(docs.filter(pl.col("split") == "train")["id"]).encode()).hexdigest()[:16]
        store = reference_store / trained_on
    elif not Path(params.model).is_dir():
        raise ConfigError(f"perplexity.model: {params.model} is not a run folder")
    return ReferenceRequest(
        streams=streams, model=params.model, target_params=params.reference_params,
        tokens=reference_training_tokens(params, n_train), seq_len=params.reference_seq_len,
        batch_size=params.reference_batch_size, seed=params.seed, store=store,
    )


def score_windows(texts: list[str], max_windows: int, seq_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Up to `max_windows` windows (seq_len + 1 tokens) per text, spread evenly; masks; owners."""
    windows, masks, owners = [], [], []
    for i, text in enumerate(texts):
        data = np.frombuffer(text.encode("utf-8", "surrogatepass"), np.uint8).astype(np.int32)
        tokens = np.concatenate([[BYTE_EOS_ID], data])
        n = min(max_windows, math.ceil(len(data) / seq_len))
        starts = np.linspace(0, max(len(tokens) - seq_len - 1, 0), num=n).astype(np.int64) if n else []
        for start in starts:
            chunk = tokens[start : start + seq_len + 1]
            window = np.zeros(seq_len + 1, np.int32)
            window[: len(chunk)] = chunk
            mask = np.zeros(seq_len, np.float32)
            mask[: len(chunk) - 1] = 1.0
            windows.append(window)
            masks.append(mask)
            owners.append(i)
    if not windows:
        return np.zeros((0, seq_len + 1), np.int32), np.zeros((0, seq_len), np.float32), np.zeros(0, np.int64)
    return np.stack(windows), np.stack(masks), np.asarray(owners, np.int64)


def score_documents(
    reference: Reference, texts: list[str], max_windows: int, progress: ProgressFn | None = None
) -> tuple[np.ndarray, float]:
    """Nats per byte of each text's scored windows (NaN for empty texts), and the FLOPs spent."""
    windows, masks, owners = score_windows(texts, max_windows, reference.seq_len)
    losses = reference.window_nll(windows, masks, progress)
    nats = np.bincount(owners, weights=losses, minlength=len(texts))
    scored_bytes = np.bincount(owners, weights=masks.sum(axis=1), minlength=len(texts))
    with np.errstate(invalid="ignore", divide="ignore"):
        per_byte = np.where(scored_bytes > 0, nats / scored_bytes, np.nan)
    return per_byte, float(reference.forward_flops_per_token * len(windows) * reference.seq_len)


def perplexity(
    docs: pl.DataFrame,
    params: PerplexityParams,
    scorer: ReferenceScorer | None = None,
    reference_store: Path | None = None,
    progress: ProgressFn | None = None,
) -> StepOutput:
    """Drop the documents whose score lies above the `tail_percentile` percentile."""
    if scorer is None:
        raise ConfigError("the perplexity step needs a reference scorer (build with scaler.sweep.data_build.build_data)")
    if docs.is_empty():
        return StepOutput(kept=docs, notes={"scored": 0})
    request = reference_request(docs, params, reference_store)
    reference = scorer.reference(request)
    scores, scoring_flops = score_documents(reference, docs["text"].to_list(), params.score_windows, progress)
    finite = scores[np.isfinite(scores)]
    threshold = float(np.percentile(finite, params.tail_percentile)) if len(finite) else math.inf
    drop = np.isfinite(scores) & (scores > threshold)
    bits = scores / math.log(2)
    details = [f"{b:.3f} bits/byte > {threshold / math.log(2):.3f}" for b in bits[drop]]
    return StepOutput(
        kept=docs.filter(pl.Series(~drop)),
        removed=removed_rows(docs["id"].filter(pl.Series(drop)).to_list(), ["high-perplexity"] * len(details), details),
        flops=reference.training_flops + scoring_flops,
        notes={
            "reference_run": _run_label(reference.run_dir, reference_store),
            "reference_training_tokens": 0 if params.model else request.tokens,
            "reference_training_flops": reference.training_flops,
            "scoring_flops": scoring_flops,
            "threshold_bits_per_byte": threshold / math.log(2),
            "median_bits_per_byte": float(np.median(finite) / math.log(2)) if len(finite) else None,
        },
    )


def _run_label(run_dir: str, reference_store: Path | None) -> str:
    """A run trained into the build folder relative to it; any other as it is."""
    if reference_store is None or not Path(run_dir).is_relative_to(reference_store.parent):
        return str(run_dir)
    return str(Path(run_dir).relative_to(reference_store.parent))
