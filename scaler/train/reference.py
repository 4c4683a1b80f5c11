"""The perplexity filter's reference model, trained and run by the trainer.

scaler/data/perplexity.py defines what it needs (`ReferenceScorer`, `Reference`) and the build
receives a scorer from the layer above it (scaler/sweep/data_build.py), so the data layer never imports
the trainer. `TrainReferenceScorer` trains the reference with `train_run` on the byte streams of
the documents the step receives (or loads the run folder the step names) and scores windows with
the trainer's sequence-loss step. Its `code_id` hashes the source of everything that decides the
reference's weights and scores, so a trainer change makes a new build id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from scaler.config import ConfigError, parse_run_config
from scaler.data.perplexity import ProgressFn, ReferenceRequest
from scaler.data.source import StreamSource
from scaler.model.family import flops_per_token
from scaler.train import step as step_lib
from scaler.train.defaults import resolve
from scaler.train.folders import OpenFolders
from scaler.train.loop import load_trained, run_info, train_run

SCORE_BATCH_SIZE = 64
EVAL_AT_THE_END_ONLY = 1 << 30  # eval_every_steps: the reference is evaluated (and checkpointed) once, when done
PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # scaler/
REFERENCE_CODE = [
    "train/reference.py", "train/step.py", "train/loop.py", "train/schedule.py", "train/defaults.py",
    "train/checkpoint.py", "config.py",
]


def reference_code_id() -> str:
    """Hash of the source that decides the reference's weights and scores: the trainer modules in
    REFERENCE_CODE, scaler/config.py and scaler/model/*.py (the data code is in the build's own hash)."""
    files = [PACKAGE_ROOT / name for name in REFERENCE_CODE] + sorted((PACKAGE_ROOT / "model").glob("*.py"))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(PACKAGE_ROOT).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass
class TrainedReference:
    """A finished byte-level run, ready to score windows (implements scaler.data.perplexity.Reference)."""

    run_dir: str
    seq_len: int
    training_flops: float
    forward_flops_per_token: float
    graphdef: nnx.GraphDef
    params: Any

    def window_nll(self, windows: np.ndarray, masks: np.ndarray, progress: ProgressFn | None = None) -> np.ndarray:
        step = step_lib.make_sequence_loss_step(self.graphdef, jnp.float32, SCORE_BATCH_SIZE)
        params = step_lib.replicate(self.params, SCORE_BATCH_SIZE)
        losses = np.zeros(len(windows), np.float64)
        for start in range(0, len(windows), SCORE_BATCH_SIZE):
            tokens, mask = _padded(windows[start : start + SCORE_BATCH_SIZE], masks[start : start + SCORE_BATCH_SIZE])
            n = min(SCORE_BATCH_SIZE, len(windows) - start)
            losses[start : start + n] = np.asarray(step(params, tokens, mask))[:n]
            if progress:
                progress(start + n, len(windows))
        return losses


def _padded(tokens: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A last, short batch padded to the compiled batch size."""
    missing = SCORE_BATCH_SIZE - len(tokens)
    if missing <= 0:
        return tokens, mask
    return (np.concatenate([tokens, np.zeros((missing, tokens.shape[1]), np.int32)]),
            np.concatenate([mask, np.zeros((missing, mask.shape[1]), np.float32)]))


class TrainReferenceScorer:
    """Trains (or loads) the reference with scaler's trainer (implements scaler.data.perplexity.ReferenceScorer).

    `open_store` opens the store of a root (`scaler.store.Store`, handed in by scaler/sweep/data_build.py):
    the one the reference trains into, or the one of the finished run folder the step names."""

    def __init__(self, open_store: OpenFolders | None = None) -> None:
        self.code_id = reference_code_id()
        self.open_store = open_store

    def reference(self, request: ReferenceRequest) -> TrainedReference:
        if self.open_store is None:
            raise ValueError("TrainReferenceScorer needs open_store (scaler.store.Store) to make a reference")
        if request.model is not None:
            return load_reference(request.model, 0.0, self.open_store)
        run_dir, training_flops = train_reference(request, self.open_store)
        return load_reference(run_dir, training_flops, self.open_store)


def train_reference(request: ReferenceRequest, open_store: OpenFolders) -> tuple[str, float]:
    """Train the reference on the request's train stream into the store `open_store(request.store)`;
    (run folder, training FLOPs).

    Evaluations and checkpoints do not change the weights, so the reference has one of each, at
    the end: on a small corpus they cost more than the training."""
    if request.store is None:
        raise ValueError("a reference to train needs a store")
    splits = request.streams.splits
    has_heldout = len(splits["heldout"]) > request.seq_len + 1
    config = parse_run_config({
        "name": "perplexity-reference",
        "model": {"target_params": request.target_params, "seq_len": request.seq_len},
        "train": {"tokens": request.tokens, "batch_size": request.batch_size, "seed": request.seed,
                  "eval_every_steps": EVAL_AT_THE_END_ONLY},
        "data": {"eval_sets": ["heldout" if has_heldout else "train"]},
    }, source="perplexity step")
    source = StreamSource(request.streams, name="perplexity-reference")
    result = train_run(config, open_store(str(request.store)), source=source)
    if result.state != "done":
        raise RuntimeError(f"the perplexity reference model diverged ({result.final}); see {result.run_dir}")
    return result.run_dir, float(run_info(resolve(config))["flops"])


def load_reference(run_dir: str, training_flops: float, open_store: OpenFolders) -> TrainedReference:
    config, graphdef, params = load_trained(run_dir, open_store)
    if config.data.tokenizer != "bytes":
        raise ConfigError(f"{run_dir}: the perplexity filter needs a model trained on byte tokens "
                          f"(this one used {config.data.tokenizer!r})")
    forward = flops_per_token(config.model, config.flops_convention) / 3
    return TrainedReference(str(run_dir), config.model.seq_len, training_flops, float(forward), graphdef, params)
