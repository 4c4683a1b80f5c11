"""The perplexity filter: score documents with a small scaler-trained model, drop the tail.

As in CCNet (Wenzek et al. 2020), documents are ranked by the perplexity of a reference language
model and split at percentiles into head, middle and tail; the tail (the most surprising third by
default: generated tables, minified or encoded data, odd dialects) is dropped. The reference model
is a scaler run: either one named by `model` (a run folder in any store) or one trained here, by
`train_run`, on the training split of the documents this step receives, into `reference_store`.

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
from pathlib import Path

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from scaler.config import ConfigError, parse_run_config
from scaler.data.documents import StepOutput, removed_rows
from scaler.data.source import StreamSource, TokenStreams
from scaler.data.tokenize import BYTE_EOS_ID, ByteTokenizer, pack

ProgressFn = Callable[[int, int], None]


class PerplexityParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(
        default=None, description="run folder (STORE/runs/RUN_ID) of a byte-level scaler model; None: train one here"
    )
    reference_params: int = Field(default=60_000, gt=0, description="target parameters of the reference model")
    reference_tokens: int = Field(default=1_500_000, gt=0, description="training tokens of the reference model")
    reference_seq_len: int = Field(default=256, gt=0, description="sequence length of the reference model")
    reference_batch_size: int = Field(default=32, gt=0, description="batch size of the reference model")
    score_windows: int = Field(default=2, gt=0, description="windows of seq_len bytes scored per document")
    tail_percentile: float = Field(
        default=200 / 3, gt=0, lt=100,
        description="documents scoring above this percentile are dropped (CCNet: head/middle/tail at 33/67)",
    )
    seed: int = Field(default=0, ge=0, description="seed of the reference model")


def reference_source(docs: pl.DataFrame) -> StreamSource:
    """Byte streams of the documents' train split (and held-out split for its eval)."""
    tokenizer = ByteTokenizer()
    splits, n_bytes, n_docs = {}, {}, {}
    for split in ("train", "heldout"):
        texts = docs.filter(pl.col("split") == split)["text"].to_list()
        splits[split] = pack(tokenizer, texts)
        n_bytes[split] = int(docs.filter(pl.col("split") == split)["n_bytes"].sum())
        n_docs[split] = len(texts)
    return StreamSource(TokenStreams(splits, n_bytes, n_docs), name="perplexity-reference")


def train_reference(docs: pl.DataFrame, params: PerplexityParams, store_root: Path) -> tuple[str, float]:
    """Train the reference model on the documents' train split; (run folder, training FLOPs).

    The store is keyed by the documents trained on, so two perplexity steps over different tiers
    train two models (a run id hashes only the config)."""
    from scaler.store import Store
    from scaler.train.loop import run_info, train_run

    source = reference_source(docs)
    if len(source.streams.splits["train"]) < params.reference_seq_len + 1:
        raise ConfigError(
            f"the perplexity reference model needs at least reference_seq_len + 1 = {params.reference_seq_len + 1} "
            f"training tokens; these documents have {len(source.streams.splits['train'])}"
        )
    trained_on = hashlib.sha256("\n".join(docs.filter(pl.col("split") == "train")["id"]).encode()).hexdigest()[:16]
    has_heldout = len(source.streams.splits["heldout"]) > params.reference_seq_len + 1
    config = parse_run_config({
        "name": "perplexity-reference",
        "model": {"target_params": params.reference_params, "seq_len": params.reference_seq_len},
        "train": {"tokens": params.reference_tokens, "batch_size": params.reference_batch_size, "seed": params.seed},
        "data": {"eval_sets": ["heldout" if has_heldout else "train"]},
    }, source="perplexity step")
    result = train_run(config, Store(str(store_root / trained_on)), source=source)
    if result.state != "done":
        raise RuntimeError(f"the perplexity reference model diverged ({result.final}); see {result.run_dir}")
    from scaler.train.defaults import resolve

    return result.run_dir, float(run_info(resolve(config))["flops"])


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
    run_dir: str, texts: list[str], max_windows: int, batch_size: int = 64, progress: ProgressFn | None = None
) -> tuple[np.ndarray, float]:
    """Nats per byte of each text's scored windows (NaN for empty texts), and the FLOPs spent."""
    import jax.numpy as jnp

    from scaler.model.family import flops_per_token
    from scaler.train import step as step_lib
    from scaler.train.loop import load_trained

    config, graphdef, params = load_trained(run_dir)
    if config.data.tokenizer != "bytes":
        raise ConfigError(f"{run_dir}: the perplexity filter needs a model trained on byte tokens "
                          f"(this one used {config.data.tokenizer!r})")
    seq_len = config.model.seq_len
    windows, masks, owners = score_windows(texts, max_windows, seq_len)
    step = step_lib.make_sequence_loss_step(graphdef, jnp.float32, batch_size)
    params = step_lib.replicate(params, batch_size)
    losses = np.zeros(len(windows), np.float64)
    for start in range(0, len(windows), batch_size):
        tokens, mask = windows[start : start + batch_size], masks[start : start + batch_size]
        n = len(tokens)
        if n < batch_size:  # pad to the compiled batch
            tokens = np.concatenate([tokens, np.zeros((batch_size - n, seq_len + 1), np.int32)])
            mask = np.concatenate([mask, np.zeros((batch_size - n, seq_len), np.float32)])
        losses[start : start + n] = np.asarray(step(params, tokens, mask))[:n]
        if progress:
            progress(min(start + batch_size, len(windows)), len(windows))
    nats = np.bincount(owners, weights=losses, minlength=len(texts))
    scored_bytes = np.bincount(owners, weights=masks.sum(axis=1), minlength=len(texts))
    with np.errstate(invalid="ignore", divide="ignore"):
        per_byte = np.where(scored_bytes > 0, nats / scored_bytes, np.nan)
    forward_flops = flops_per_token(config.model, config.flops_convention) / 3 * len(windows) * seq_len
    return per_byte, float(forward_flops)


def perplexity(
    docs: pl.DataFrame,
    params: PerplexityParams,
    reference_store: Path | None = None,
    progress: ProgressFn | None = None,
) -> StepOutput:
    """Drop the documents whose score lies above the `tail_percentile` percentile."""
    if docs.is_empty():
        return StepOutput(kept=docs, notes={"scored": 0})
    training_flops = 0.0
    run_dir = params.model
    if run_dir is None:
        if reference_store is None:
            raise ValueError("the perplexity step needs `model` (a run folder) or a store to train one in")
        run_dir, training_flops = train_reference(docs, params, reference_store)
    elif not Path(run_dir).is_dir():
        raise ConfigError(f"perplexity.model: {run_dir} is not a run folder")
    scores, scoring_flops = score_documents(run_dir, docs["text"].to_list(), params.score_windows, progress=progress)
    finite = scores[np.isfinite(scores)]
    threshold = float(np.percentile(finite, params.tail_percentile)) if len(finite) else math.inf
    drop = np.isfinite(scores) & (scores > threshold)
    bits = scores / math.log(2)
    details = [f"{b:.3f} bits/byte > {threshold / math.log(2):.3f}" for b in bits[drop]]
    return StepOutput(
        kept=docs.filter(pl.Series(~drop)),
        removed=removed_rows(docs["id"].filter(pl.Series(drop)).to_list(), ["high-perplexity"] * int(drop.sum()), details),
        flops=training_flops + scoring_flops,
        notes={
            "reference_run": str(run_dir) if params.model else str(Path(run_dir).relative_to(reference_store.parent)),
            "reference_training_flops": training_flops,
            "scoring_flops": scoring_flops,
            "threshold_bits_per_byte": threshold / math.log(2),
            "median_bits_per_byte": float(np.median(finite) / math.log(2)) if len(finite) else None,
        },
    )
