"""Tier options from a data build's report.json (docs/design.md §5.9): each tier's yield (its
training tokens over raw's) and cleaning cost (the FLOPs of every step on its path, per raw token
read; the perplexity reference's training included), `tier_options_from_report`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scaler.decision.result import TierOption


def _tier_chain(report: dict[str, Any], tier: str) -> list[str]:
    chain, seen = [], set()
    t: str | None = tier
    while t is not None and t not in seen:
        seen.add(t)
        chain.append(t)
        t = (report.get("tiers", {}).get(t) or {}).get("base")
    return chain


def tier_options_from_report(report: dict[str, Any] | str | Path, tiers: Sequence[str], tokenizer: str | None = None,
                             cleaning_flops_per_second: float | None = None,
                             kappas: dict[str, float] | None = None) -> tuple[list[TierOption], dict[str, Any]]:
    """TierOptions from a `data build` report.json, and facts about the build.

    yield: the tier's training tokens / the raw tier's for `tokenizer` (else `bytes_yield`).
    cleaning cost per raw token: the FLOPs of every step on the tier's path (the tier and its
    bases), plus the steps' seconds x `cleaning_flops_per_second` when given, over the raw tokens
    the build read (the raw tier's bytes / bytes per token). The perplexity step's FLOPs include
    training its reference model: a fixed cost, here spread over this build's pool.
    """
    if not isinstance(report, dict):
        report = json.loads(Path(report).read_text())
    rtiers = report.get("tiers", {})
    if "raw" not in rtiers:
        raise ValueError("report.json: no raw tier")
    toks = report.get("tokenizers", {}) or {}
    if tokenizer is None and toks:
        tokenizer = "bytes" if "bytes" in toks and len(toks) > 1 else next(iter(toks))
    tok = toks.get(tokenizer, {}) if tokenizer else {}
    ttiers = tok.get("tiers", {})
    raw_train_tokens = float(ttiers["raw"]["tokens"]) if "raw" in ttiers else float(rtiers["raw"].get(
        "bytes_train_tokens", rtiers["raw"]["train_bytes"]))
    bpt = float(ttiers.get("raw", {}).get("bytes_per_token", 1.0)) or 1.0
    raw_read = float(rtiers["raw"].get("bytes", rtiers["raw"].get("train_bytes"))) / bpt
    out = []
    for name in tiers:
        if name not in rtiers:
            raise ValueError(f"report.json: the store's tier {name!r} is not in the build (tiers: {sorted(rtiers)})")
        if name in ttiers and "raw" in ttiers:
            y = float(ttiers[name]["tokens"]) / raw_train_tokens
        else:
            y = float(rtiers[name].get("bytes_yield", rtiers[name].get("yield_bytes", 1.0)))
        chain = set(_tier_chain(report, name)) - {"raw"}
        flops = sum(float(s.get("flops") or 0.0) for s in report.get("steps", []) if s.get("tier") in chain)
        if cleaning_flops_per_second:
            flops += float(cleaning_flops_per_second) * sum(float(s.get("seconds") or 0.0)
                                                            for s in report.get("steps", []) if s.get("tier") in chain)
        kappa = (kappas or {}).get(name, 1.0)
        out.append(TierOption(name=name, kappa=kappa, yield_fraction=min(y, 1.0),
                              cleaning_flops_per_raw_token=flops / raw_read if name != "raw" else 0.0))
    facts = {"tokenizer": tokenizer, "raw_train_tokens": raw_train_tokens, "raw_tokens_read": raw_read}
    return out, facts
