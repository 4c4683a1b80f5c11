"""Build a sweep's data: the data layer's build with the trainer's reference scorer.

scaler/data must not import the trainer (layers import downward: config and store, model, data,
train, sweep), but the perplexity filter needs a trained reference model. This module sits above
both: it makes the trainer's scorer (scaler/train/reference.py), handing it the store it trains
into and loads from (`scaler.store.Store`: the trainer imports no store), and hands the scorer to
`scaler.data.build.build`. `scaler data build` and `scaler run` build through `build_data`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scaler.data.build import BuildSpec, Progress, build
from scaler.data.perplexity import ReferenceScorer


def reference_scorer(spec: BuildSpec) -> ReferenceScorer | None:
    """The trainer's scorer when a tier has a perplexity step (importing the trainer costs seconds)."""
    if not spec.tiers_using("perplexity"):
        return None
    from scaler.store import Store
    from scaler.train.reference import TrainReferenceScorer

    return TrainReferenceScorer(Store)


def build_data(
    build_spec: BuildSpec,
    out_dir: str | Path,
    force: bool = False,
    progress: Progress | None = None,
    heldout_fraction: float | None = None,
) -> dict[str, Any]:
    """Build `build_spec` into `out_dir` (skipped when an identical build is there); the report.

    `heldout_fraction` overrides the spec's (validated: 0 < f < 1). The report's `notes` say what
    the user should know about the build (e.g. files held out within packages on a small corpus)."""
    if heldout_fraction is not None:
        build_spec = build_spec.with_heldout_fraction(heldout_fraction)
    return build(build_spec, out_dir, force=force, progress=progress, scorer=reference_scorer(build_spec))
