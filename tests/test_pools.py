"""Scarce data: pools cut from the first tier (scaler.data.folder.pool_caps), on a real build.

The build writes every tier in one shared order keyed by duplicate cluster, so a pool of U raw
tokens keeps, in every tier, exactly what that tier's cleaning keeps of the same raw documents,
and a duplicate never lands on the other side of the cut from its survivor."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from scaler.config import ConfigError
from scaler.data.build import build
from scaler.data.corpus import CorpusError, collect, source_kind
from scaler.data.folder import pool_caps
from scaler.data.tokenize import BYTE_EOS_ID
from scaler.sweep.spec import expand, parse_sweep_spec
from tests.test_data import small_spec, write_tree

STDLIB = Path(sysconfig.get_paths()["stdlib"])
MODULES = ["textwrap", "shlex", "colorsys", "bisect", "fnmatch", "glob", "keyword", "heapq", "calendar",
           "difflib", "string", "numbers", "operator", "queue", "sched", "stat", "tabnanny", "this"]


@pytest.fixture(scope="module")
def pooled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """18 stdlib modules in 6 packages, plus an exact and a near duplicate of two of them."""
    tmp = tmp_path_factory.mktemp("pools")
    files = {f"p{i % 6}/{name}.py": (STDLIB / f"{name}.py").read_bytes() for i, name in enumerate(MODULES)}
    files["p5/copy_of_textwrap.py"] = files["p0/textwrap.py"]  # exact
    files["p4/near_difflib.py"] = files["p3/difflib.py"].replace(b"SequenceMatcher", b"SeqMatcher", 3)  # near
    write_tree(tmp / "src", files)
    build(small_spec(tmp / "src", heldout_fraction=0.1), tmp / "data")
    return tmp / "data"


def _tier_docs(data: Path, tier: str) -> tuple[np.ndarray, np.ndarray]:
    folder = data / "tokens" / "bytes" / "train"
    return np.load(folder / f"{tier}.npy"), np.load(folder / f"{tier}.docs.npy")


def test_every_tier_is_written_in_one_key_order_with_its_document_ends(pooled: Path) -> None:
    for tier in ("raw", "filtered", "dedup"):
        tokens, docs = _tier_docs(pooled, tier)
        assert docs.dtype == np.int64 and docs.shape[1] == 2
        assert np.all(np.diff(docs[:, 0]) >= 0)  # sorted by pool key
        assert np.array_equal(docs[:, 1], np.flatnonzero(tokens == BYTE_EOS_ID) + 1)


def test_duplicates_share_their_survivors_key(pooled: Path) -> None:
    removed = pl.read_parquet(pooled / "removed.parquet")
    reasons = set(removed["reason"].to_list())
    assert {"exact-duplicate", "near-duplicate"} <= reasons
    _, counts = np.unique(_tier_docs(pooled, "raw")[1][:, 0], return_counts=True)
    assert sorted(counts.tolist())[-3:] == [1, 2, 2]  # each duplicate under its survivor's key
    filtered_keys = set(_tier_docs(pooled, "filtered")[1][:, 0].tolist())
    dedup_keys = _tier_docs(pooled, "dedup")[1][:, 0].tolist()
    assert len(set(dedup_keys)) == len(dedup_keys) and set(dedup_keys) == filtered_keys  # dedup drops no cluster


@pytest.mark.parametrize("share", [0.1, 0.3, 0.55, 0.8])
def test_a_pool_keeps_in_every_tier_what_cleaning_its_raw_documents_keeps(pooled: Path, share: float) -> None:
    raw_tokens, raw_docs = _tier_docs(pooled, "raw")
    cut = int(share * len(raw_tokens))
    caps = pool_caps(pooled, "bytes", cut)
    assert 0 < caps["raw"] <= cut and caps["raw"] in raw_docs[:, 1]
    in_raw_pool = set(raw_docs[raw_docs[:, 1] <= caps["raw"], 0].tolist())
    outside = set(raw_docs[raw_docs[:, 1] > caps["raw"], 0].tolist())
    assert not in_raw_pool & outside  # a cut never splits a duplicate cluster
    for tier in ("filtered", "dedup"):
        _, docs = _tier_docs(pooled, tier)
        kept = docs[docs[:, 1] <= caps[tier], 0]
        assert caps[tier] == 0 or caps[tier] in docs[:, 1]  # whole documents
        assert set(kept.tolist()) == in_raw_pool & set(docs[:, 0].tolist())
        assert caps[tier] <= caps["raw"]


def test_pools_grow_with_the_cut_and_a_cut_beyond_the_data_keeps_it_all(pooled: Path) -> None:
    raw_tokens, _ = _tier_docs(pooled, "raw")
    caps = [pool_caps(pooled, "bytes", int(s * len(raw_tokens))) for s in (0.2, 0.4, 0.6, 2.0)]
    for tier in ("raw", "filtered", "dedup"):
        sizes = [c[tier] for c in caps]
        assert sizes == sorted(sizes)
        assert sizes[-1] == len(_tier_docs(pooled, tier)[0])


def _spec(data: Path, **data_keys: object) -> dict:
    return {"name": "pools", "store": str(data.parent / "store"),
            "data": {"dir": str(data), **data_keys}, "model": {"seq_len": 16}, "train": {"batch_size": 2},
            "design": {"grid": {"sizes": [3000], "tokens": [640]}, "mixes": [{"raw": 1.0}, {"dedup": 1.0}]}}


def test_a_sweep_spec_cuts_every_tiers_pool_from_one_raw_pool(pooled: Path) -> None:
    raw_tokens, _ = _tier_docs(pooled, "raw")
    cut = len(raw_tokens) // 3
    runs = expand(parse_sweep_spec(_spec(pooled, raw_pool_tokens=cut), "pools.toml"))
    caps = pool_caps(pooled, "bytes", cut)
    assert {tuple(r.config.data.unique_tokens.items()) for r in runs} == {(("raw", caps["raw"]),),
                                                                        (("dedup", caps["dedup"]),)}
    plain = expand(parse_sweep_spec(_spec(pooled), "pools.toml"))
    assert {r.run_id for r in runs}.isdisjoint(r.run_id for r in plain)  # the pool is part of a run's identity
    both = expand(parse_sweep_spec(_spec(pooled, raw_pool_tokens=cut, unique_tokens={"dedup": 100}), "pools.toml"))
    assert [r.config.data.unique_tokens for r in both] == [{"raw": caps["raw"]}, {"dedup": 100}]


def test_pool_errors_name_the_key(pooled: Path) -> None:
    with pytest.raises(ConfigError, match=r"data.raw_pool_tokens: needs data.dir"):
        parse_sweep_spec({"name": "x", "data": {"raw_pool_tokens": 10}, "train": {"batch_size": 2},
                          "design": {"grid": {"sizes": [3000], "tokens": [640]}}}, "x.toml")
    with pytest.raises(ConfigError, match=r"^pools.toml: data.raw_pool_tokens: 1 raw tokens leave tier 'raw' no whole "):
        parse_sweep_spec(_spec(pooled, raw_pool_tokens=1), "pools.toml")


def test_site_packages_can_be_narrowed_to_named_packages() -> None:
    kind, names = source_kind("site-packages:pip")
    assert (kind, names) == ("site-packages", "pip")
    docs, _ = collect(["site-packages:pip"])
    assert len(docs) > 100 and set(docs["package"].to_list()) == {"pip"}
    assert docs.filter(pl.col("path").str.starts_with("pip/_vendor/")).height > 50  # vendored copies: real dirt
    with pytest.raises(CorpusError, match=r"no package or module 'no_such_package' in site-packages"):
        source_kind("site-packages:pip,no_such_package")
    with pytest.raises(CorpusError, match=r"distinct, non-empty names"):
        source_kind("site-packages:pip,,pip")
