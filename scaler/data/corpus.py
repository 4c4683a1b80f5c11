"""Sources of real code, read into a documents table (scaler/data/documents.py).

A source is named by a string:
  stdlib         the running interpreter's standard library (its site-packages excluded)
  site-packages  the running interpreter's installed packages (site.getsitepackages())
  site-packages:NAME,NAME,...  only those top-level packages or modules of it (e.g. pip, whose
                 _vendor folder repeats packages installed beside it: real duplicates)
  dir:PATH       every file under PATH matching a glob (default **/*.py)
  jsonl:PATH     one JSON object per line with a text column (PATH a file or a folder of *.jsonl)
  parquet:PATH   a Parquet file (or folder of *.parquet) with a text column

Every file or row read is listed in the manifest with the sha256 of its raw bytes and a status
(ok, non-utf8, unreadable, bad-json, no-text), so two builds can be compared and nothing is
dropped silently; a file name, or a table's path or package value, that is not valid UTF-8 is kept
with backslash escapes (`\\xff`, `\\ud800`). Documents come out in a deterministic order: sources
in the order given, then package, then path. The package is the unit of the held-out split: a
top-level package or module for the interpreter's sources, the first folder under PATH for dir:,
and a configurable column (else the document itself) for tables. A corpus whose whole packages
cannot make the held-out share (a few packages) holds out files within packages instead, and its
split says so.
"""

from __future__ import annotations

import hashlib
import json
import site
import sysconfig
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from scaler.config import ConfigError
from scaler.data.documents import DOC_SCHEMA, content_id

MANIFEST_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.Utf8(),
    "path": pl.Utf8(),
    "sha256": pl.Utf8(),  # of the raw bytes (empty when unreadable)
    "n_bytes": pl.Int64(),
    "status": pl.Utf8(),  # ok | non-utf8 | unreadable | bad-json | no-text
}

ProgressFn = Callable[[int, int], None]  # (done, total)


class CorpusError(ConfigError):
    """A source that cannot be read at all (missing path, unknown kind, missing column)."""


@dataclass(frozen=True)
class CorpusOptions:
    glob: str = "**/*.py"  # for dir: sources
    text_column: str = "text"  # for jsonl: and parquet: sources
    package_column: str | None = None  # None: "package" or "repo" if present, else the document itself
    path_column: str | None = None  # None: "path" if present, else FILE:ROW


@dataclass(frozen=True)
class Record:
    """One file or row as read, before decoding."""

    package: str
    path: str
    raw: bytes | None  # None: unreadable
    text: str | None = None  # already text (tables)
    status: str = "ok"


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def site_packages_roots() -> list[Path]:
    return [Path(p) for p in site.getsitepackages() if Path(p).is_dir()]


SOURCE_FORMS = "stdlib, site-packages, site-packages:NAME,NAME, dir:PATH, jsonl:PATH or parquet:PATH"


def source_kind(source: str) -> tuple[str, str]:
    """("stdlib" | "site-packages" | "dir" | "jsonl" | "parquet", path, package names or "")."""
    if source in ("stdlib", "site-packages"):
        return source, ""
    kind, sep, path = source.partition(":")
    if kind == "site-packages" and sep:
        names = site_package_names(source, path)
        return kind, ",".join(names)
    if not sep or kind not in ("dir", "jsonl", "parquet") or not path:
        raise CorpusError(f"unknown source {source!r}: expected {SOURCE_FORMS}")
    if not Path(path).exists():
        raise CorpusError(f"source {source!r}: path {path} does not exist")
    if kind == "dir" and not Path(path).is_dir():
        raise CorpusError(f"source {source!r}: {path} is not a folder (jsonl:PATH and parquet:PATH read files)")
    return kind, path


def site_package_names(source: str, names: str) -> list[str]:
    """The package names of `site-packages:NAME,NAME`, each checked to be installed here."""
    wanted = [n.strip() for n in names.split(",")]
    if not all(wanted) or len(set(wanted)) != len(wanted):
        raise CorpusError(f"source {source!r}: expected site-packages:NAME,NAME,... with distinct, non-empty names")
    installed = {p.name.removesuffix(".py") for root in site_packages_roots() for p in root.iterdir()}
    missing = [n for n in wanted if n not in installed]
    if missing:
        roots = ", ".join(str(r) for r in site_packages_roots())
        raise CorpusError(f"source {source!r}: no package or module {missing[0]!r} in site-packages ({roots})")
    return wanted


def _files_under(root: Path, pattern: str, skip: Callable[[Path], bool] = lambda p: False) -> list[Path]:
    files = [p for p in root.glob(pattern) if p.is_file() and not skip(p)]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _package_of(relative: Path) -> str:
    return relative.parts[0].removesuffix(".py") if len(relative.parts) > 1 else relative.stem


def utf8_name(name: str) -> str:
    """`name` as valid UTF-8, for the tables: a file name's bytes that are not UTF-8 (which Python
    keeps as lone surrogates) written as `\\xff`, a JSON string's lone surrogate as `\\ud800`."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        pass
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that is no escaped byte
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _file_records(roots: list[Path], pattern: str, skip: Callable[[Path], bool] = lambda p: False) -> Iterator[Record]:
    for root in roots:
        for path in _files_under(root, pattern, skip):
            relative = path.relative_to(root)
            yield Record(utf8_name(_package_of(relative)), utf8_name(relative.as_posix()), _read(path))


def _table_files(path: Path, suffix: str) -> list[Path]:
    return sorted(path.glob(f"*{suffix}")) if path.is_dir() else [path]


def _row_records(rows: list[tuple[int, dict]], file: Path, options: CorpusOptions) -> Iterator[Record]:
    """Records of (row number, row) pairs; the number names the row when it has no path."""
    columns = set().union(*(row.keys() for _, row in rows)) if rows else set()
    if rows and options.text_column not in columns:
        raise CorpusError(f"{file}: no text column {options.text_column!r} (columns: {sorted(columns)})")
    package_column = options.package_column or next((c for c in ("package", "repo") if c in columns), None)
    if rows and package_column and package_column not in columns:
        raise CorpusError(f"{file}: no package column {package_column!r} (columns: {sorted(columns)})")
    path_column = options.path_column or "path"
    for i, row in rows:
        text = row.get(options.text_column)
        path = utf8_name(str(row[path_column]) if row.get(path_column) is not None else f"{file.name}:{i}")
        if not isinstance(text, str):
            yield Record("", path, None, status="no-text")
            continue
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a JSON \ud800 escape
            yield Record("", path, text.encode("utf-8", "surrogatepass"), status="non-utf8")
            continue
        package = row.get(package_column) if package_column else None
        package = utf8_name(str(package)) if package is not None else content_id(text)[:16]
        yield Record(package, path, raw, text=text)


def _jsonl_records(path: Path, options: CorpusOptions) -> Iterator[Record]:
    for file in _table_files(path, ".jsonl"):
        rows, bad = [], []
        with file.open("rb") as f:
            for i, line in enumerate(f):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise ValueError("not an object")
                    rows.append((i, row))
                except (ValueError, RecursionError):  # RecursionError: nested deeper than json can read
                    bad.append(Record("", utf8_name(f"{file.name}:{i}"), line, status="bad-json"))
        yield from bad
        yield from _row_records(rows, file, options)


def _parquet_records(path: Path, options: CorpusOptions) -> Iterator[Record]:
    for file in _table_files(path, ".parquet"):
        try:
            frame = pl.read_parquet(file)
        except Exception as err:  # noqa: BLE001 - polars raises several kinds for a bad file
            raise CorpusError(f"{file}: not a readable Parquet file: {err}") from None
        if options.text_column not in frame.columns:
            raise CorpusError(f"{file}: no text column {options.text_column!r} (columns: {frame.columns})")
        yield from _row_records(list(enumerate(frame.to_dicts())), file, options)


def source_records(source: str, options: CorpusOptions) -> list[Record]:
    kind, path = source_kind(source)
    if kind == "stdlib":
        return list(_file_records([stdlib_root()], "**/*.py", skip=lambda p: "site-packages" in p.parts))
    if kind == "site-packages":
        if not path:
            return list(_file_records(site_packages_roots(), "**/*.py"))
        names = set(path.split(","))
        return [record for root in site_packages_roots() for record in _file_records(
            [root], "**/*.py", skip=lambda p, root=root: _package_of(p.relative_to(root)) not in names)]
    if kind == "dir":
        return list(_file_records([Path(path)], options.glob))
    if kind == "jsonl":
        return list(_jsonl_records(Path(path), options))
    return list(_parquet_records(Path(path), options))


def _decode(record: Record) -> tuple[str | None, str]:
    if record.raw is None:
        return None, "unreadable" if record.status == "ok" else record.status
    if record.status != "ok":
        return None, record.status
    if record.text is not None:
        return record.text, "ok"
    try:
        return record.raw.decode("utf-8"), "ok"
    except UnicodeDecodeError:
        return None, "non-utf8"


def collect(
    sources: list[str], options: CorpusOptions = CorpusOptions(), progress: ProgressFn | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(documents, manifest) for the named sources. Documents have split "train" until split."""
    if not sources:
        raise CorpusError("no sources given")
    records = []
    for source in sources:
        found = [(record, *_decode(record)) for record in source_records(source, options)]
        if not any(text is not None for _, text, _ in found):
            statuses = Counter(status for _, _, status in found)
            raise CorpusError(f"source {source!r}: no readable documents ({len(found)} files or rows read: "
                              f"{dict(sorted(statuses.items()))})")
        records += [(utf8_name(source), *decoded) for decoded in found]
    docs, manifest = [], []
    for i, (source, record, text, status) in enumerate(records):
        digest = hashlib.sha256(record.raw).hexdigest() if record.raw is not None else ""
        manifest.append((source, record.path, digest, len(record.raw or b""), status))
        if text is not None:
            docs.append({
                "id": content_id(text),
                "source": source,
                "package": record.package,
                "path": record.path,
                "text": text,
                "n_bytes": len(record.raw or b""),
                "n_lines": text.count("\n") + (0 if text.endswith("\n") or not text else 1),
                "split": "train",
                "synthetic": False,
            })
        if progress and (i % 500 == 0 or i == len(records) - 1):
            progress(i + 1, len(records))
    order = {utf8_name(s): i for i, s in enumerate(sources)}
    frame = pl.DataFrame(docs, schema=DOC_SCHEMA)
    frame = frame.with_columns(pl.col("source").replace_strict(order, return_dtype=pl.Int64).alias("_order"))
    frame = frame.sort(["_order", "package", "path"], maintain_order=True).drop("_order")
    return frame, pl.DataFrame(manifest, schema=MANIFEST_SCHEMA, orient="row")


MIN_HELDOUT_SHARE = 0.5  # whole packages must make half the held-out target, else files are held out


@dataclass(frozen=True)
class Split:
    """Documents with their split column, and how the held-out share was made."""

    docs: pl.DataFrame
    unit: str  # "package" | "file": what was held out whole
    note: str | None = None  # set when files were held out within packages


def _sha1(unit: str) -> str:
    return hashlib.sha1(unit.encode()).hexdigest()


def heldout_units(sizes: dict[str, int], fraction: float, order: Callable[[str], Any] = _sha1) -> set[str]:
    """Units (packages or files) in sha1 order, each taken if it still fits in `fraction` of the bytes (a
    unit that does not fit is skipped and the next one tried, so small units are held out more often)."""
    budget = fraction * sum(sizes.values())
    chosen: set[str] = set()
    taken = 0
    for unit in sorted(sizes, key=order):
        if taken + sizes[unit] <= budget:
            chosen.add(unit)
            taken += sizes[unit]
    return chosen


def heldout_packages(sizes: dict[str, int], fraction: float) -> set[str]:
    """Packages in sha1 order (a fair draw); when they fall short of half the share, the better of
    that and the largest packages first (a corpus of a few packages of unequal sizes)."""
    by_hash = heldout_units(sizes, fraction)
    if sum(sizes[p] for p in by_hash) >= MIN_HELDOUT_SHARE * fraction * sum(sizes.values()):
        return by_hash
    by_size = heldout_units(sizes, fraction, order=lambda p: (-sizes[p], _sha1(p)))
    return max(by_hash, by_size, key=lambda held: sum(sizes[p] for p in held))


def assign_split(docs: pl.DataFrame, heldout_fraction: float) -> Split:
    """Hold out whole packages, about `heldout_fraction` of the bytes. A package name is one unit
    across sources (a vendored copy goes with its original), whatever the sources' paths.

    When whole packages cannot make half of that share (a corpus of a few packages, or one package
    larger than the rest), files are held out within their packages instead, and the split says so."""
    target = heldout_fraction * int(docs["n_bytes"].sum())
    packages = _unit_sizes(docs, pl.col("package"))
    held = heldout_packages(packages, heldout_fraction)
    if held and sum(packages[p] for p in held) >= MIN_HELDOUT_SHARE * target:
        return Split(_with_split(docs, pl.col("package"), held), "package")
    file_key = pl.concat_str([pl.col("package"), pl.col("path")], separator="\x00")
    files = _unit_sizes(docs, file_key)
    held_files = heldout_units(files, heldout_fraction)
    if not held_files:
        raise CorpusError(
            f"no package or file fits in heldout_fraction = {heldout_fraction} of the bytes ({len(packages)} packages, "
            f"{len(files)} files): raise it, or add sources, so that there is held-out code to evaluate on"
        )
    note = _file_split_note(packages, held, files, held_files, heldout_fraction)
    return Split(_with_split(docs, file_key, held_files), "file", note)


def _unit_sizes(docs: pl.DataFrame, key: pl.Expr) -> dict[str, int]:
    sizes = docs.group_by(key.alias("unit")).agg(pl.col("n_bytes").sum())
    return dict(zip(sizes["unit"].to_list(), sizes["n_bytes"].to_list(), strict=True))


def _with_split(docs: pl.DataFrame, key: pl.Expr, held: set[str]) -> pl.DataFrame:
    split = pl.when(key.is_in(sorted(held))).then(pl.lit("heldout")).otherwise(pl.lit("train"))
    return docs.with_columns(split.alias("split"))


def _file_split_note(packages: dict[str, int], held: set[str], files: dict[str, int], held_files: set[str],
                     fraction: float) -> str:
    total = sum(packages.values())
    package_share = sum(packages[p] for p in held) / total
    file_share = sum(files[f] for f in held_files) / total
    return (
        f"held-out split: whole packages make only {package_share:.1%} of the bytes ({len(packages)} packages; "
        f"heldout_fraction {fraction:g}), so {len(held_files)} files ({file_share:.1%} of the bytes) are held out "
        "within their packages; held-out code shares packages with training code, so held-out losses read low"
    )
