"""The documents table and the contract every cleaning step follows.

A documents table is a polars DataFrame with the columns of `DOC_SCHEMA`, one row per source
file, in a deterministic order (source, package, path). A cleaning step is a function
`(docs, params) -> StepOutput`: the documents that go on, and the ones it removed with a reason.
The build (scaler/data/build.py) times each step and counts documents and bytes in and out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import polars as pl

DOC_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Utf8(),  # sha256 hex of the text (content hash)
    "source": pl.Utf8(),  # "stdlib", "site-packages", "dir:PATH", "jsonl:PATH", "parquet:PATH"
    "package": pl.Utf8(),  # the unit of the held-out split (top-level package, repository, ...)
    "path": pl.Utf8(),  # the file's path relative to its source root (or a row reference)
    "text": pl.Utf8(),
    "n_bytes": pl.Int64(),  # UTF-8 bytes of text
    "n_lines": pl.Int64(),
    "split": pl.Utf8(),  # "train" | "heldout"
    "synthetic": pl.Boolean(),  # made by a corruption step, never real code
}

REMOVED_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Utf8(),
    "reason": pl.Utf8(),  # a short kebab-case name, e.g. "long-line", "near-duplicate"
    "detail": pl.Utf8(),  # a human-readable specific, e.g. "longest line 4,213 chars" or a survivor id
}


def content_id(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def empty_documents() -> pl.DataFrame:
    return pl.DataFrame(schema=DOC_SCHEMA)


def empty_removed() -> pl.DataFrame:
    return pl.DataFrame(schema=REMOVED_SCHEMA)


def make_documents(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Documents from dicts with at least `text` (other columns defaulted), for tests and tools."""
    filled = []
    for i, row in enumerate(rows):
        text = row["text"]
        filled.append({
            "id": row.get("id", content_id(text)),
            "source": row.get("source", "test"),
            "package": row.get("package", f"pkg{i}"),
            "path": row.get("path", f"file{i}.py"),
            "text": text,
            "n_bytes": len(text.encode("utf-8", "surrogatepass")),
            "n_lines": text.count("\n") + (0 if text.endswith("\n") or not text else 1),
            "split": row.get("split", "train"),
            "synthetic": row.get("synthetic", False),
        })
    return pl.DataFrame(filled, schema=DOC_SCHEMA)


def removed_rows(ids: list[str], reasons: list[str], details: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"id": ids, "reason": reasons, "detail": details}, schema=REMOVED_SCHEMA)


@dataclass(frozen=True)
class StepOutput:
    """What a cleaning step returns.

    kept: the documents that go on (DOC_SCHEMA, same order as the input; a step may rewrite texts,
      as `corrupt` does, giving the rewritten rows new ids).
    removed: one row per removed document (REMOVED_SCHEMA).
    flops: compute the step spent (model training and scoring), 0 for rule-based steps.
    notes: step-specific numbers for the build report (JSON-serialisable).
    """

    kept: pl.DataFrame
    removed: pl.DataFrame = field(default_factory=empty_removed)
    flops: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)
