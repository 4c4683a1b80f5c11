"""The data pipeline: sources, splits, tokenizers, builds and the mix sampler, on real files."""

from __future__ import annotations

import errno
import json
import math
import shutil
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from scaler.config import ConfigError, parse_run_config, run_id_of
from scaler.data import build as build_lib
from scaler.data.build import BuildSpec, TierSpec, build, parse_build_spec
from scaler.data.corpus import CorpusError, CorpusOptions, assign_split, collect
from scaler.data.folder import BuildFolderError, is_built, read_build_info, read_report, read_token_meta
from scaler.data.mix import MixError, MixSource, slot_tiers
from scaler.data.source import answer_windows
from scaler.data.perplexity import PerplexityParams, ReferenceRequest, reference_training_tokens
from scaler.data.tokenize import BYTE_EOS_ID, BYTE_VOCAB_SIZE, ByteTokenizer, TokenizerError, pack, train_bpe
from scaler.sweep.data_build import build_data
from scaler.train.defaults import resolve

STDLIB = Path(sysconfig.get_paths()["stdlib"])

GOOD = '''"""A small module."""

import os


def join(a, b):
    """Join two paths."""
    return os.path.join(a, b)


def double(x):
    return 2 * x
'''


def write_tree(root: Path, files: dict[str, bytes | str]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


def small_corpus(root: Path) -> Path:
    """Real stdlib modules in four packages, a duplicate, an empty file and a non-UTF-8 file."""
    files = {}
    for package, names in {"alpha": ["textwrap", "shlex"], "beta": ["colorsys", "bisect"],
                           "gamma": ["fnmatch", "glob"], "delta": ["keyword", "heapq"]}.items():
        for name in names:
            files[f"{package}/{name}.py"] = (STDLIB / f"{name}.py").read_bytes()
    files["alpha/copy_of_textwrap.py"] = (STDLIB / "textwrap.py").read_bytes()
    files["beta/__init__.py"] = ""
    files["gamma/latin1.py"] = "# caf\xe9\n".encode("latin-1")
    return write_tree(root, files)


SMALL_TIERS = [
    TierSpec(name="raw"),
    TierSpec(name="filtered", steps=["min-size", "heuristics"]),
    TierSpec(name="dedup", steps=["exact-dedup", "near-dedup"]),
]


def small_spec(root: Path, **overrides: object) -> BuildSpec:
    raw = {"sources": [f"dir:{root}"], "tiers": [t.model_dump() for t in SMALL_TIERS], "heldout_fraction": 0.3,
           **overrides}
    return parse_build_spec(raw, "test")


# --- sources ------------------------------------------------------------------------------------


def test_dir_source_reads_counts_and_orders(tmp_path: Path) -> None:
    root = small_corpus(tmp_path / "src")
    docs, manifest = collect([f"dir:{root}"])
    assert dict(manifest.group_by("status").len().iter_rows()) == {"ok": 10, "non-utf8": 1}
    assert docs["package"].unique().sort().to_list() == ["alpha", "beta", "delta", "gamma"]
    assert docs.sort(["package", "path"])["path"].to_list() == docs["path"].to_list()
    textwrap = docs.filter(pl.col("path") == "alpha/textwrap.py").row(0, named=True)
    assert textwrap["n_bytes"] == (STDLIB / "textwrap.py").stat().st_size
    assert textwrap["n_lines"] == (STDLIB / "textwrap.py").read_text().count("\n")
    again, manifest2 = collect([f"dir:{root}"])
    assert again.equals(docs) and manifest2.equals(manifest)


def test_table_sources(tmp_path: Path) -> None:
    rows = [{"text": GOOD, "repo": "r1", "path": "a.py"}, {"text": "x = 1\n", "repo": "r2"}]
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n" + json.dumps({"text": 3}) + "\n")
    docs, manifest = collect([f"jsonl:{jsonl}"])
    assert docs["package"].to_list() == ["r1", "r2"] and docs["path"].to_list() == ["a.py", "docs.jsonl:1"]
    assert sorted(manifest["status"].to_list()) == ["bad-json", "no-text", "ok", "ok"]

    parquet = tmp_path / "docs.parquet"
    pl.DataFrame({"content": [GOOD, "y = 2\n"], "repo_name": ["p", "q"]}).write_parquet(parquet)
    docs, _ = collect([f"parquet:{parquet}"], CorpusOptions(text_column="content", package_column="repo_name"))
    assert docs["package"].to_list() == ["p", "q"]
    with pytest.raises(CorpusError, match="no text column 'text'"):
        collect([f"parquet:{parquet}"])


def test_bad_sources_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        collect([f"dir:{tmp_path / 'missing'}"])
    with pytest.raises(CorpusError, match="unknown source"):
        collect(["ftp:somewhere"])
    with pytest.raises(ConfigError, match="data.build.tiers"):
        parse_build_spec({"tiers": [{"name": "a", "steps": ["no-such-step"]}]}, "spec.toml")
    with pytest.raises(ConfigError, match="fraction"):
        parse_build_spec({"tiers": [{"name": "a", "steps": ["corrupt:1.5"]}]}, "spec.toml")
    with pytest.raises(ConfigError, match="base"):
        parse_build_spec({"tiers": [{"name": "a"}, {"name": "b", "base": "c"}]}, "spec.toml")


def test_unreadable_rows_and_empty_sources(tmp_path: Path) -> None:
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text('not json\n{"text": "\\ud800 lone surrogate"}\n{"text": "x = 1\\n"}\n')
    docs, manifest = collect([f"jsonl:{jsonl}"])
    assert manifest.select("path", "status").rows() == [
        ("rows.jsonl:0", "bad-json"), ("rows.jsonl:1", "non-utf8"), ("rows.jsonl:2", "ok")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no readable documents"):
        collect([f"dir:{tmp_path / 'empty'}"])
    with pytest.raises(CorpusError, match="not a folder"):
        collect([f"dir:{jsonl}"])
    one_package = write_tree(tmp_path / "one", {"pkg/a.py": GOOD, "pkg/b.py": GOOD + "\nx = 1\n"})
    with pytest.raises(CorpusError, match="heldout_fraction"):
        assign_split(collect([f"dir:{one_package}"])[0], 0.05)


def test_split_holds_out_whole_packages() -> None:
    docs, _ = collect(["stdlib"])
    split = assign_split(docs, 0.05)
    assert split.unit == "package" and split.note is None
    docs = split.docs
    per_package = docs.group_by(["source", "package"]).agg(pl.col("split").n_unique())
    assert per_package["split"].max() == 1
    held = docs.filter(pl.col("split") == "heldout")["n_bytes"].sum() / docs["n_bytes"].sum()
    assert 0.03 < held <= 0.05


# --- tokenizers ---------------------------------------------------------------------------------


def test_byte_packing_puts_eos_after_each_document() -> None:
    stream = pack(ByteTokenizer(), ["ab", "", "é"])
    assert stream.tolist() == [97, 98, BYTE_EOS_ID, BYTE_EOS_ID, 0xC3, 0xA9, BYTE_EOS_ID]
    assert stream.dtype == np.uint16


def test_bpe_trains_compresses_and_round_trips() -> None:
    texts = [(STDLIB / f"{m}.py").read_text() for m in ("textwrap", "shlex", "glob", "fnmatch", "bisect")]
    tokenizer = train_bpe("bpe-600", texts)
    assert tokenizer.vocab_size == 600 and tokenizer.eos_id == 599
    ids = tokenizer.encode([texts[0]])[0]
    assert len(ids) < 0.6 * len(texts[0].encode())
    assert tokenizer.tokenizer.decode(ids.tolist()) == texts[0]
    with pytest.raises(TokenizerError, match="bpe-N"):
        train_bpe("wordpiece", texts)
    eos_in_text = tokenizer.encode(['marker = "<|endoftext|>"'])[0]
    assert tokenizer.eos_id not in eos_in_text.tolist()
    with pytest.raises(TokenizerError, match="yields only"):
        train_bpe("bpe-4096", ["x = 1\n"])


# --- builds -------------------------------------------------------------------------------------


def test_build_writes_tiers_report_and_eval_sets(tmp_path: Path) -> None:
    root = small_corpus(tmp_path / "src")
    report = build(small_spec(root), tmp_path / "data")
    out = tmp_path / "data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "src"]  # no partial or old folders
    tiers = report["tiers"]
    assert tiers["raw"]["documents"] == 10 and tiers["raw"]["yield_bytes"] == 1.0
    assert tiers["raw"]["documents"] > tiers["filtered"]["documents"] > tiers["dedup"]["documents"]
    steps = {s["step"]: s for s in report["steps"]}
    assert steps["min-size"]["removed"]["empty"]["documents"] == 1
    dedup_removed = steps["exact-dedup"]["removed"]
    assert dedup_removed["exact-duplicate"]["documents"] == 1
    assert steps["exact-dedup"]["examples"]["exact-duplicate"][0]["path"] == "alpha/textwrap.py"
    assert report["sources"][f"dir:{root}"]["non-utf8"]["files"] == 1
    meta = json.loads((out / "tokens" / "bytes" / "meta.json").read_text())
    for tier in ("raw", "filtered", "dedup"):
        tokens = np.load(out / "tokens" / "bytes" / "train" / f"{tier}.npy")
        assert tokens.dtype == np.uint16 and len(tokens) == meta["tiers"][tier]["tokens"]
        assert (tokens == BYTE_EOS_ID).sum() == tiers[tier]["train_documents"]
    humaneval = np.load(out / "tokens" / "bytes" / "eval" / "humaneval.npy")
    assert (humaneval == BYTE_EOS_ID).sum() == 164
    membership = pl.read_parquet(out / "tiers.parquet")
    documents = pl.read_parquet(out / "documents.parquet")
    heldout_rows = documents.filter(pl.col("split") == "heldout")["row"]
    assert membership.filter(pl.col("tier") == "dedup")["row"].is_in(documents["row"].implode()).all()
    assert len(heldout_rows) and (np.load(out / "tokens" / "bytes" / "eval" / "heldout.npy") == BYTE_EOS_ID).sum() \
        == membership.filter((pl.col("tier") == "dedup") & pl.col("row").is_in(heldout_rows.implode())).height


def test_builds_are_deterministic_and_skipped_when_unchanged(tmp_path: Path) -> None:
    root = small_corpus(tmp_path / "src")
    first = build(small_spec(root, tokenizers=["bytes", "bpe-512"]), tmp_path / "a")
    second = build(small_spec(root, tokenizers=["bytes", "bpe-512"]), tmp_path / "b")
    assert first["build_id"] == second["build_id"]
    for name in ("documents.parquet", "tiers.parquet", "removed.parquet", "tokens/bytes/train/dedup.npy",
                 "tokens/bpe-512/train/dedup.npy", "tokenizers/bpe-512.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert build(small_spec(root, tokenizers=["bytes", "bpe-512"]), tmp_path / "a").get("skipped")
    (root / "delta" / "new.py").write_text(GOOD)
    assert build(small_spec(root, tokenizers=["bytes", "bpe-512"]), tmp_path / "a")["build_id"] != first["build_id"]


def test_failed_build_leaves_nothing_half_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = small_corpus(tmp_path / "src")
    build(small_spec(root), tmp_path / "data")
    before = (tmp_path / "data" / "report.json").read_text()
    (root / "delta" / "new.py").write_text(GOOD)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(build_lib, "tokenize_tiers", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        build(small_spec(root), tmp_path / "data")
    assert (tmp_path / "data" / "report.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "src"]


def test_build_never_replaces_a_folder_that_is_not_a_build(tmp_path: Path) -> None:
    root = small_corpus(tmp_path / "src")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a data build"):
        build(small_spec(root), tmp_path / "notes")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"
    spec_without_build = tmp_path / "run.toml"
    spec_without_build.write_text('[data]\ndir = "somewhere"\n')
    with pytest.raises(ConfigError, match=r"\[data.build\] table"):
        build_lib.load_build_spec(spec_without_build)


def test_corrupt_tier_is_synthetic_and_branches_from_its_base(tmp_path: Path) -> None:
    root = small_corpus(tmp_path / "src")
    tiers = [*[t.model_dump() for t in SMALL_TIERS], {"name": "dirty", "base": "dedup", "steps": ["corrupt:0.5"]}]
    report = build(small_spec(root, tiers=tiers), tmp_path / "data")
    assert report["tiers"]["dirty"]["synthetic"] and not report["tiers"]["dedup"]["synthetic"]
    assert report["tiers"]["dirty"]["documents"] == report["tiers"]["dedup"]["documents"]
    documents = pl.read_parquet(tmp_path / "data" / "documents.parquet")
    dirty_rows = pl.read_parquet(tmp_path / "data" / "tiers.parquet").filter(pl.col("tier") == "dirty")["row"]
    dirty = documents.filter(pl.col("row").is_in(dirty_rows.implode()))
    assert 0 < dirty["synthetic"].sum() < len(dirty)
    assert documents["row"].n_unique() == len(documents)


# --- the perplexity step's scorer, small corpora, output folders ---------------------------------


@dataclass
class UnigramReference:
    """A byte unigram model: a stand-in for the trainer's reference, quick and deterministic."""

    seq_len: int
    log_probs: np.ndarray
    run_dir: str = "unigram"
    training_flops: float = 1e6
    forward_flops_per_token: float = 2.0

    def window_nll(self, windows: np.ndarray, masks: np.ndarray, progress: object = None) -> np.ndarray:
        return (-self.log_probs[windows[:, 1:]] * masks).sum(axis=1)


@dataclass
class UnigramScorer:
    code_id: str = "unigram-1"
    requests: list[ReferenceRequest] = field(default_factory=list)

    def reference(self, request: ReferenceRequest) -> UnigramReference:
        self.requests.append(request)
        counts = np.bincount(request.streams.splits["train"], minlength=BYTE_VOCAB_SIZE) + 1.0
        return UnigramReference(request.seq_len, np.log(counts / counts.sum()))


PPL_TIERS = [*[t.model_dump() for t in SMALL_TIERS], {"name": "clean", "steps": ["perplexity"]}]


def fake_packages(root: Path, junk_bytes: int = 0) -> Path:
    """Three packages of stdlib modules (none small enough to hold out whole at 5%), and a package of
    `junk_bytes` of generated data in long lines."""
    files = {f"{package}/{name}.py": (STDLIB / f"{name}.py").read_bytes()
             for package, names in {"alpha": ["textwrap", "shlex", "keyword"], "beta": ["colorsys", "bisect", "heapq"],
                                    "gamma": ["fnmatch", "glob", "tabnanny"]}.items() for name in names}
    if junk_bytes:
        files["junk/blob.py"] = "".join(f'DATA{i} = "{"Q" * (junk_bytes // 10)}"\n' for i in range(10))
    return write_tree(root, files)


def test_a_perplexity_step_needs_a_scorer_and_its_code_enters_the_build_id(tmp_path: Path) -> None:
    root = small_corpus(tmp_path / "src")
    spec = small_spec(root, tiers=PPL_TIERS)
    with pytest.raises(ConfigError, match="tiers.clean: the perplexity step needs a reference scorer"):
        build(spec, tmp_path / "data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # refused before any work
    first = build(spec, tmp_path / "data", scorer=UnigramScorer("trainer-a"))
    assert build(spec, tmp_path / "data", scorer=UnigramScorer("trainer-a")).get("skipped")
    changed = build(spec, tmp_path / "data", scorer=UnigramScorer("trainer-b"))
    assert not changed.get("skipped") and changed["build_id"] != first["build_id"]
    manifest = pl.read_parquet(tmp_path / "data" / "manifest.parquet")
    assert build_lib.build_id_of(spec, manifest, "a") != build_lib.build_id_of(spec, manifest, "b")
    without = small_spec(root)  # no perplexity step: the scorer is neither needed nor hashed
    assert build(without, tmp_path / "plain")["build_id"] == build(without, tmp_path / "plain2",
                                                                    scorer=UnigramScorer("x"))["build_id"]
    step = next(s for s in changed["steps"] if s["step"] == "perplexity")
    assert step["removed"]["high-perplexity"]["documents"] > 0 and step["flops"] > 1e6


def test_the_trainers_scorer_hashes_the_trainer_and_model_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scaler.train import reference

    assert reference.TrainReferenceScorer().code_id == reference.reference_code_id()
    copy = tmp_path / "scaler"
    shutil.copytree(reference.PACKAGE_ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(reference, "PACKAGE_ROOT", copy)
    before = reference.reference_code_id()
    (copy / "model" / "family.py").write_text((copy / "model" / "family.py").read_text() + "\n# changed\n")
    assert reference.reference_code_id() != before
    (copy / "data" / "clean.py").write_text("# the data layer's code is in the build's own fingerprint\n")
    assert reference.TrainReferenceScorer().code_id == reference.reference_code_id() != before


def test_the_reference_trains_on_tokens_that_scale_with_the_corpus(tmp_path: Path) -> None:
    params = PerplexityParams()
    assert reference_training_tokens(params, 10_000) == params.reference_min_tokens
    assert reference_training_tokens(params, 1_000_000) == 500_000
    assert reference_training_tokens(params, 30_000_000) == params.reference_tokens == 1_500_000
    assert reference_training_tokens(PerplexityParams(reference_tokens=40_960), 10_000) == 40_960  # the cap rules
    root = small_corpus(tmp_path / "src")
    scorer = UnigramScorer()
    report = build(small_spec(root, tiers=PPL_TIERS, steps={"perplexity": {"reference_min_tokens": 1000}}),
                   tmp_path / "data", scorer=scorer)
    train_tokens = report["tokenizers"]["bytes"]["tiers"]["dedup"]["tokens"]
    assert len(scorer.requests[0].streams.splits["train"]) == train_tokens
    assert scorer.requests[0].tokens == math.ceil(0.5 * train_tokens)
    assert next(s for s in report["steps"] if s["step"] == "perplexity")["notes"]["reference_training_tokens"] \
        == scorer.requests[0].tokens


def test_a_small_corpus_holds_out_files_within_packages_and_says_so(tmp_path: Path) -> None:
    root = fake_packages(tmp_path / "src")
    spec = parse_build_spec({"sources": [f"dir:{root}"], "tiers": PPL_TIERS}, "test")
    report = build(spec, tmp_path / "data", scorer=UnigramScorer())
    assert len(report["notes"]) == 1 and "files" in report["notes"][0] and "within their packages" in report["notes"][0]
    assert read_report(tmp_path / "data").notes == report["notes"]
    documents = pl.read_parquet(tmp_path / "data" / "documents.parquet")
    held = documents.filter(pl.col("split") == "heldout")
    assert 0 < held["n_bytes"].sum() <= 0.05 * documents["n_bytes"].sum()
    assert set(held["package"]) <= set(documents.filter(pl.col("split") == "train")["package"])
    assert all(tier["train_documents"] > 0 for tier in report["tiers"].values())
    split = assign_split(collect([f"dir:{root}"])[0], 0.05)
    assert split.unit == "file" and split.note == report["notes"][0]


def test_a_tier_left_without_training_tokens_names_the_tier_and_the_step(tmp_path: Path) -> None:
    root = fake_packages(tmp_path / "src", junk_bytes=2_000_000)  # the real packages all fit in 5% of the bytes
    spec = parse_build_spec({"sources": [f"dir:{root}"], "tiers": [t.model_dump() for t in SMALL_TIERS]}, "test")
    with pytest.raises(ConfigError, match=r"tier 'filtered': step 'heuristics' removed every training document .*junk"):
        build(spec, tmp_path / "data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_build_data_sets_the_heldout_fraction_and_checks_it(tmp_path: Path) -> None:
    root = small_corpus(tmp_path / "src")
    report = build_data(small_spec(root), tmp_path / "data", heldout_fraction=0.2)
    assert read_build_info(tmp_path / "data").spec["heldout_fraction"] == 0.2
    assert report["split"]["heldout"]["bytes"] <= 0.2 * report["bytes_read"]
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ConfigError, match="heldout_fraction"):
            build_data(small_spec(root), tmp_path / "other", heldout_fraction=bad)
    assert not (tmp_path / "other").exists()


def test_build_data_trains_a_reference_sized_to_the_corpus(tmp_path: Path) -> None:
    root = small_corpus(tmp_path / "src")
    steps = {"perplexity": {"reference_params": 20_000, "reference_seq_len": 64, "reference_batch_size": 16,
                            "reference_min_tokens": 8192}}
    report = build_data(small_spec(root, tiers=PPL_TIERS, steps=steps), tmp_path / "data")
    step = next(s for s in report["steps"] if s["step"] == "perplexity")
    train_tokens = report["tokenizers"]["bytes"]["tiers"]["dedup"]["tokens"]
    assert step["notes"]["reference_training_tokens"] == math.ceil(0.5 * train_tokens)
    assert step["flops"] > step["notes"]["reference_training_flops"] > 0
    assert step["notes"]["reference_run"].startswith("reference/")
    assert (tmp_path / "data" / step["notes"]["reference_run"] / "config.json").exists()
    assert step["removed"]["high-perplexity"]["documents"] == step["documents_in"] - step["documents_out"] > 0


def test_an_output_folder_through_a_file_or_unwritable_is_refused_before_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = small_corpus(tmp_path / "src")
    (tmp_path / "notes.txt").write_text("mine")
    given = tmp_path / "notes.txt" / "data"
    with pytest.raises(ConfigError) as err:
        build_data(small_spec(root), given)
    assert str(err.value) == f"{given}: cannot build data there: {tmp_path / 'notes.txt'} is a file, not a folder"

    def denied(*args: object, **kwargs: object) -> str:
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "locked"))

    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    with pytest.raises(ConfigError) as err:
        build_data(small_spec(root), tmp_path / "locked" / "deep" / "data")
    deep = tmp_path / "locked" / "deep"
    assert str(err.value) == f"{deep / 'data'}: cannot write in {deep}: Permission denied"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "src"]  # the folders it made are gone


def test_a_full_disk_names_the_output_path_and_the_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = small_corpus(tmp_path / "src")

    def full(path: Path, tokens: np.ndarray) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(build_lib, "_save_tokens", full)
    with pytest.raises(ConfigError) as err:
        build(small_spec(root), tmp_path / "out" / "data")
    assert str(err.value) == (f"{tmp_path / 'out' / 'data'}: the data build failed: No space left on device "
                              f"({tmp_path / 'out' / 'data' / 'tokens' / 'bytes' / 'train' / 'raw.npy'})")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


# --- the build folder, read back ----------------------------------------------------------------


def test_build_folder_readers_are_typed_and_name_what_is_missing(tmp_path: Path) -> None:
    root = small_corpus(tmp_path / "src")
    report = build(small_spec(root, tokenizers=["bytes", "bpe-512"]), tmp_path / "data")
    data = tmp_path / "data"
    info = read_build_info(data)
    assert is_built(data) and info.build_id == report["build_id"] and info.tokenizers == ["bytes", "bpe-512"]
    meta = read_token_meta(data, "bpe-512")
    assert meta.vocab_size == 512 and meta.tier_tokens()["dedup"] == report["tiers"]["dedup"]["bpe-512_train_tokens"]
    typed = read_report(data)
    assert typed.tiers["dedup"].train_tokens("bytes") == report["tiers"]["dedup"]["bytes_train_tokens"]
    assert typed.steps[0].step == "min-size" and typed.split["heldout"].documents > 0
    with pytest.raises(BuildFolderError, match=r"tokenizer 'bpe-64' was not built .*built: \['bytes', 'bpe-512'\]"):
        read_token_meta(data, "bpe-64")
    with pytest.raises(BuildFolderError, match="not a data folder written by `scaler data build`"):
        read_build_info(tmp_path / "src")
    path = data / "tokens" / "bytes" / "meta.json"
    path.write_text(json.dumps({"tiers": {"raw": {"tokens": 3}}}))
    with pytest.raises(BuildFolderError) as err:
        read_token_meta(data, "bytes")
    assert str(err.value).startswith(f"{path}: malformed: vocab_size is missing; eos_id is missing")
    (data / "report.json").write_text("{")
    with pytest.raises(BuildFolderError, match=r"report.json: unreadable"):
        read_report(data)


# --- the mix sampler ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("mix")
    root = small_corpus(tmp / "src")
    build(small_spec(root, tokenizers=["bytes", "bpe-512"]), tmp / "data")
    return tmp / "data"


def test_batches_are_pure_functions_of_seed_and_index(built: Path) -> None:
    a = MixSource(built, {"raw": 1, "dedup": 1})
    b = MixSource(built, {"raw": 1, "dedup": 1})
    in_order = [a.train_batch(7, i, 4, 32) for i in range(6)]
    assert np.array_equal(b.train_batch(7, 5, 4, 32), in_order[5])  # a fresh source jumps straight to 5
    assert np.array_equal(b.train_batch(7, 2, 4, 32), in_order[2])  # and back
    assert not np.array_equal(a.train_batch(8, 5, 4, 32), in_order[5])
    assert in_order[0].dtype == np.int32 and in_order[0].shape == (4, 33)


def test_epoch_accounting_is_exact(built: Path) -> None:
    source = MixSource(built, {"raw": 3, "dedup": 1}, unique_tokens={"dedup": 20 * 16 + 1})
    seq_len, batch, n_batches = 16, 8, 25
    windows = {t: source.n_windows(t, seq_len) for t in source.tiers}
    assert windows["dedup"] == 20
    stream = {t: np.asarray(source.streams[t]) for t in source.tiers}
    seen = {t: [] for t in source.tiers}
    for i in range(n_batches):
        tiers = slot_tiers(i * batch, (i + 1) * batch, 0, source.cumulative)
        for row, t in zip(source.train_batch(0, i, batch, seq_len), tiers, strict=True):
            window = _window_index(stream[source.tiers[t]], row, seq_len)
            assert window is not None
            seen[source.tiers[t]].append(window)
    usage = source.usage(0, n_batches, batch, seq_len)
    for tier in source.tiers:
        draws = len(seen[tier])
        assert usage[f"tokens_{tier}"] == draws * seq_len
        assert usage[f"epochs_{tier}"] == pytest.approx(draws / windows[tier])
    full, rest = divmod(len(seen["dedup"]), windows["dedup"])
    assert full >= 2  # the capped pool repeats
    counts = np.bincount(seen["dedup"], minlength=windows["dedup"])
    assert set(counts.tolist()) <= {full, full + 1} and (counts == full + 1).sum() == rest  # once per epoch
    assert len(seen["raw"]) / (n_batches * batch) == pytest.approx(0.75, abs=0.02)
    assert usage["data_tokens"] == n_batches * batch * seq_len


def _window_index(stream: np.ndarray, row: np.ndarray, seq_len: int) -> int | None:
    n = (len(stream) - 1) // seq_len
    for w in range(n):
        if np.array_equal(stream[w * seq_len : w * seq_len + seq_len + 1], row):
            return w
    return None


def test_mix_errors(built: Path) -> None:
    with pytest.raises(MixError, match="unknown tier 'shiny'"):
        MixSource(built, {"shiny": 1.0})
    with pytest.raises(MixError, match="positive"):
        MixSource(built, {"raw": 0.0})
    with pytest.raises(MixError, match="not built"):
        MixSource(built, {"raw": 1.0}, tokenizer="bpe-1024")
    with pytest.raises(MixError, match="fewer than one sequence"):
        MixSource(built, {"raw": 1.0}, unique_tokens={"raw": 40}).usage(0, 10, 4, 64)
    with pytest.raises(MixError, match="unknown eval set"):
        MixSource(built, {"raw": 1.0}).eval_set("mbpp", 64, 16)
    with pytest.raises(ConfigError, match="data.mix"):
        parse_run_config({"model": {"target_params": 30_000}, "train": {"tokens": 1 << 16, "batch_size": 8},
                          "data": {"dir": str(built), "mix": {"raw": -1.0}}})


def test_bpe_data_reports_bits_per_byte(built: Path) -> None:
    source = MixSource(built, {"dedup": 1.0}, tokenizer="bpe-512")
    assert source.vocab_size == 512 and source.bytes_per_token > 1.5
    assert source.eval_bytes_per_token("humaneval") > 1.5
    assert source.train_batch(0, 0, 2, 32).max() < 512


def test_a_run_trains_on_built_data_and_records_its_epochs(built: Path, tmp_path: Path) -> None:
    from scaler.store import Store, load_runs
    from scaler.train.loop import train_run

    config = parse_run_config({
        "model": {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 96, "vocab_size": 257, "seq_len": 32},
        "train": {"tokens": 20 * 8 * 32, "batch_size": 8, "lr": 1e-2, "eval_tokens": 256},
        "data": {"dir": str(built), "mix": {"raw": 1, "dedup": 1}, "eval_sets": ["heldout", "humaneval"]},
    })
    result = train_run(config, Store(str(tmp_path)))
    assert result.state == "done" and math.isfinite(result.final["eval_humaneval_loss"])
    row = load_runs(str(tmp_path)).row(0, named=True)
    assert row["data_build_id"] == json.loads((built / "build.json").read_text())["build_id"]
    assert row["tokens_raw"] + row["tokens_dedup"] == 20 * 8 * 32
    assert row["epochs_dedup"] == pytest.approx(row["tokens_dedup"] / row["unique_tokens_dedup"])
    copy = tmp_path / "copy"  # rebuilt below: a copy, so the module's build stays as it is
    shutil.copytree(built, copy)
    on_copy = resolve(config.model_copy(update={"data": config.data.model_copy(update={"dir": str(copy)})}))
    (copy / "build.json").write_text(json.dumps({**json.loads((built / "build.json").read_text()),
                                                 "build_id": "different"}))  # the same tier contents, a new build id
    again = resolve(config.model_copy(update={"data": config.data.model_copy(update={"dir": str(copy)})}))
    assert again.data.build_id == "different" and run_id_of(again.identity()) == run_id_of(on_copy.identity())
    raw = copy / "tokens" / "bytes" / "train" / "raw.npy"
    np.save(raw, np.load(raw)[::-1].copy())  # now the raw tier's contents change
    with pytest.raises(ValueError, match=r"rebuilt with other contents.*tier:raw changed"):
        train_run(on_copy, Store(str(tmp_path / "other")))
    changed = resolve(config.model_copy(update={"data": config.data.model_copy(update={"dir": str(copy)})}))
    assert run_id_of(changed.identity()) != run_id_of(on_copy.identity())


# --- a real build over a slice of the standard library, through the CLI -------------------------


def test_cli_builds_a_stdlib_slice_with_the_default_tiers_and_inspects_it(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from scaler.cli import app

    root = tmp_path / "stdlib-slice"
    for package in ("json", "email", "asyncio", "importlib"):
        shutil.copytree(STDLIB / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "email" / "pasted.py").write_text(
        "import os\n\n" + build_lib.humaneval_texts()[0] + "\n\nprint(has_close_elements([1.0], 0.5))\n")
    spec = tmp_path / "sweep.toml"
    spec.write_text(f"""
[data]
dir = "{tmp_path / 'data'}"

[data.build]
sources = ["dir:{root}"]
tokenizers = ["bytes", "bpe-1024"]
heldout_fraction = 0.2

[data.build.steps.perplexity]
reference_params = 20000
reference_tokens = 40960
reference_seq_len = 64
reference_batch_size = 16
""")
    result = CliRunner().invoke(app, ["data", "build", str(spec)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "data" / "report.json").read_text())
    assert list(report["tiers"]) == ["raw", "filtered", "dedup", "clean"]
    decontaminate = next(s for s in report["steps"] if s["step"] == "decontaminate")
    assert [e["path"] for cases in decontaminate["examples"].values() for e in cases] == ["email/pasted.py"]
    ppl = next(s for s in report["steps"] if s["step"] == "perplexity")
    assert ppl["flops"] > ppl["notes"]["reference_training_flops"] > 0
    assert 0.25 < 1 - ppl["documents_out"] / ppl["documents_in"] < 0.4  # the tail third
    yields = [t["bpe-1024_yield"] for t in report["tiers"].values()]
    assert yields[0] == 1.0 and yields == sorted(yields, reverse=True)
    documents = pl.read_parquet(tmp_path / "data" / "documents.parquet")
    train, held = (set(documents.filter(pl.col("split") == s)["package"]) for s in ("train", "heldout"))
    assert held and not train & held

    shown = CliRunner().invoke(app, ["data", "inspect", str(tmp_path / "data")])
    assert shown.exit_code == 0 and "humaneval-" in shown.output and "high-perplexity" in shown.output
    again = CliRunner().invoke(app, ["data", "build", str(spec)])
    assert again.exit_code == 0 and "up to date" in again.output
    bad = CliRunner().invoke(app, ["data", "build", str(spec), "--tiers", "shiny"])
    assert bad.exit_code == 2 and "unknown tier 'shiny'" in bad.output


# --- the code-task eval: HumanEval solutions given their prompts ---------------------------------


def test_answer_windows_score_every_answer_token_once_after_its_prompt() -> None:
    eos, seq_len = 0, 8
    docs = [([5, 6, 7, 8, 9, 10, 11], [20, 21, 22, 23, 24, 25, 26, 27, 28, 29]), ([3], [40, 41])]
    stream = np.array([t for p, a in docs for t in (eos, *p, *a)], np.uint16)
    mask = np.array([m for p, a in docs for m in (0, *[0] * len(p), *[1] * len(a))], np.uint8)
    windows = answer_windows(stream, mask, seq_len, eos)
    assert windows.tokens_NT1.shape[1] == seq_len + 1 and windows.weights_NT.shape[1] == seq_len
    scored = windows.tokens_NT1[:, 1:][windows.weights_NT == 1]
    assert scored.tolist() == [t for _, a in docs for t in a]  # each answer token once, in order
    first = windows.tokens_NT1[0]  # the first chunk's window reaches back into the prompt
    assert first[:5].tolist() == [7, 8, 9, 10, 11] and first[1:][windows.weights_NT[0] == 1].tolist() == [20, 21, 22, 23]
    for tokens, weights in zip(windows.tokens_NT1, windows.weights_NT, strict=True):
        at = int(np.flatnonzero(weights)[0])
        assert at >= min(seq_len // 2, int(np.flatnonzero(tokens[1:] >= 20)[0]))  # context before every chunk
    assert windows.padded(4, eos).n_windows % 4 == 0 and windows.padded(4, eos).weights_NT.sum() == 12
    assert windows.every(2).n_windows == 2 and windows.every(99) is windows


def test_the_humaneval_solution_set_counts_only_the_solutions(built: Path, tmp_path: Path) -> None:
    from scaler.data.clean import load_humaneval
    from scaler.store import Store
    from scaler.train.loop import train_run

    eval_dir = built / "tokens" / "bytes" / "eval"
    stream, mask = np.load(eval_dir / "humaneval_solution.npy"), np.load(eval_dir / "humaneval_solution.mask.npy")
    problems = load_humaneval()
    solutions = "".join(p["canonical_solution"] for p in problems).encode()
    assert bytes(stream[mask == 1].astype(np.uint8)) == solutions  # byte tokens: the solutions, nothing else
    assert (stream == BYTE_EOS_ID).sum() == len(problems) == 164
    meta = json.loads((built / "tokens" / "bytes" / "meta.json").read_text())["eval"]["humaneval_solution"]
    assert meta["bytes"] == len(solutions) and meta["tokens"] == int(mask.sum())
    source = MixSource(built, {"raw": 1.0})
    assert source.eval_set("humaneval_solution", 10**9, 32).weights_NT.sum() == mask.sum()  # all: each once
    assert source.eval_set("humaneval_solution", 512, 32).n_windows == 32  # 512 scored tokens, 16 a window
    config = parse_run_config({
        "model": {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 96, "vocab_size": 257, "seq_len": 32},
        "train": {"tokens": 10 * 8 * 32, "batch_size": 8, "lr": 1e-2, "eval_tokens": 256, "final_eval_tokens": "all"},
        "data": {"dir": str(built), "mix": {"raw": 1}, "eval_sets": ["heldout", "humaneval_solution"]},
    })
    final = train_run(config, Store(str(tmp_path))).final
    assert math.isfinite(final["eval_humaneval_solution_loss"])
    assert final["eval_humaneval_solution_bpb"] == pytest.approx(final["eval_humaneval_solution_loss"] / math.log(2))
