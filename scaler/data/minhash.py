"""Near-duplicate detection: MinHash over word shingles, LSH banding, one survivor per cluster.

The pipeline, all vectorised in NumPy (no per-shingle Python work):

1. Shingles. A document's tokens are the maximal runs of `[A-Za-z_0-9]` (ASCII; the same tokens as
   `re.findall(r"[A-Za-z_0-9]+", text)`). Tokenising runs on the UTF-8 bytes of many documents
   at once: byte comparisons mark token bytes, token boundaries are where the mark flips.
   Each token is hashed from its bytes, 8 at a time (an unaligned little-endian uint64 view of the
   buffer, masked past the token's end; the length seeds the hash; a MurmurHash3 `fmix64` after
   each word), so token hashes depend on the token's bytes only: stable across processes and
   machines (Python's salted `hash()` is never used). A shingle is `shingle_words` consecutive
   tokens of one document: their hashes combined as a polynomial (uint64 wraparound) and finalised
   with `fmix64`. A document with fewer tokens than `shingle_words` has one shingle of all its
   tokens; a document with no token at all has no shingle, an empty set, and is never anyone's
   duplicate.

2. MinHash. Each shingle's top 32 bits go through `num_perm` affine permutations of the 32-bit
   integers, `x -> a x + b (mod 2^32)` with odd `a` (a bijection), `a` and `b` drawn from
   `np.random.default_rng(seed)`: the "affine32" scheme of datasketch 2.x (there after a fixed
   fmix premix; our shingle hashes are already finalised). A document's signature is the minimum of
   each permutation over its shingles, computed over blocks of 32k shingles, 4 permutations per
   NumPy call (a (4, 32768) uint32 temporary, 512 KB, that stays in cache: about 3x faster than one
   (num_perm, block) matrix, whose short rows cost NumPy loop overhead), the minima per document by
   `np.minimum.reduceat`, the blocks of one document merged with `np.minimum`; so memory is bounded
   whatever the document sizes. Documents are processed in chunks of about 4 MB of text on a thread
   pool (NumPy releases the GIL in its loops); the result depends neither on chunks nor on threads.
   An empty document's signature is all `EMPTY_SIGNATURE_VALUE` (2^32 - 1) and is left out of LSH.

3. LSH. `bands` bands of `rows` signature values; in each band the documents whose `rows` values
   agree (grouped through a 64-bit hash of the band, then a stable sort) form a bucket, and bucket
   members are candidate pairs. (bands, rows) default to the pair that minimises the false-positive
   plus false-negative probability integrals at the threshold, weights 0.5/0.5, as datasketch's
   `MinHashLSH` chooses them: (25, 10) for threshold 0.7 and 256 permutations.

4. Clusters. Candidate pairs become edges (after verification, by default: a pair is kept only if
   its signature-estimated Jaccard, the fraction of equal signature values, is >= threshold), and a
   cluster is a connected component of the edges (union-find, done by
   `scipy.sparse.csgraph.connected_components`). Its representative, the survivor, is its smallest
   document index: the first in the table's (deterministic) order.

   Which pairs of a bucket become candidates: without verification, linking every member to the
   bucket's first member gives the same components as all pairs, at O(size) cost. With
   verification that is not enough (two members may match each other but not the head), so a bucket
   of up to `ALL_PAIRS_MAX_BUCKET` members verifies all its pairs, exactly as querying an index
   and verifying every candidate would. A larger bucket (near-identical files by the hundred, e.g.
   generated modules) is clustered by leaders: its first member leads, every member is verified
   against it, the first member that matched no leader leads the next round, and so on, at most
   `MAX_LEADERS_PER_BUCKET` rounds. Pairs of two non-leaders that match each other but no common
   leader are then missed through that bucket (they usually meet again through another band); a
   bucket of many mutually dissimilar documents costs O(size * MAX_LEADERS_PER_BUCKET), never
   O(size^2).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from scaler.data.documents import StepOutput, empty_removed, removed_rows

EMPTY_SIGNATURE_VALUE = np.uint32(0xFFFFFFFF)  # every value of an empty document's signature
ALL_PAIRS_MAX_BUCKET = 32  # buckets up to this size verify all their pairs
MAX_LEADERS_PER_BUCKET = 64  # leader rounds in a larger bucket
_CHUNK_TEXT_BYTES = 4 << 20  # text per unit of work (shingling + MinHash of whole documents)
_BLOCK_SHINGLES = 32768  # shingles per MinHash block
_PERMS_PER_PASS = 4  # permutations applied per NumPy call: a (4, block) uint32 temporary (512 KB)
_VERIFY_PAIRS = 1 << 15  # candidate pairs compared at once

Progress = Callable[[int, int], None]


class NearDedupParams(BaseModel):
    """Parameters of the near-duplicate step (MinHash + LSH)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float = Field(
        0.7, gt=0.0, lt=1.0, description="Jaccard similarity of shingle sets above which two documents are duplicates"
    )
    num_perm: int = Field(256, ge=2, le=4096, description="MinHash permutations (signature length)")
    shingle_words: int = Field(5, ge=1, le=64, description="tokens ([A-Za-z_0-9]+ runs) per shingle")
    seed: int = Field(0, ge=0, description="seed of the MinHash permutations")
    verify: bool = Field(
        True, description="keep an LSH candidate pair only if its signature-estimated Jaccard is >= threshold"
    )
    bands: int | None = Field(
        None, ge=1, description="LSH bands; None: the optimum for threshold and num_perm (see `lsh_bands`)"
    )
    rows: int | None = Field(
        None, ge=1, description="signature values per LSH band; None: the optimum, or num_perm // bands"
    )

    @model_validator(mode="after")
    def _bands_fit(self) -> NearDedupParams:
        bands, rows = resolve_bands(self)
        if bands * rows > self.num_perm:
            raise ValueError(f"bands * rows = {bands} * {rows} exceeds num_perm = {self.num_perm}")
        return self


def resolve_bands(params: NearDedupParams) -> tuple[int, int]:
    """(bands, rows) of `params`: the overrides, completed or replaced by `lsh_bands`."""
    if params.bands is None and params.rows is None:
        return lsh_bands(params.threshold, params.num_perm)
    if params.bands is None:
        assert params.rows is not None
        return max(params.num_perm // params.rows, 1), params.rows
    if params.rows is None:
        return params.bands, max(params.num_perm // params.bands, 1)
    return params.bands, params.rows


# ---------------------------------------------------------------------------------------------
# Hashing primitives (uint64 wraparound arithmetic; NumPy array ops never warn on overflow)

_U64 = np.uint64
_FMIX_C1 = _U64(0xFF51AFD7ED558CCD)
_FMIX_C2 = _U64(0xC4CEB9FE1A85EC53)
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_SHINGLE_MULT = _U64(0x100000001B3 * 0x9E37 | 1)  # odd, fixed: polynomial base of shingles
_S33 = _U64(33)
_BYTE_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)
_SEP = b"\n"  # a non-token byte between documents (and padding after the last)


def _is_token_byte(x: np.ndarray) -> np.ndarray:
    """x in [A-Za-z0-9_], for a uint8 array (comparisons: faster than a lookup-table gather)."""
    letter = x | np.uint8(0x20)
    letter -= np.uint8(ord("a"))
    mask = letter < 26
    digit = x - np.uint8(ord("0"))
    mask |= digit < 10
    mask |= x == ord("_")
    return mask


def _fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, in place (a bijection of uint64 with full avalanche)."""
    x ^= x >> _S33
    x *= _FMIX_C1
    x ^= x >> _S33
    x *= _FMIX_C2
    x ^= x >> _S33
    return x


def _token_hashes(buf: bytes, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """uint64 hashes of the tokens buf[s:s+l], from their bytes and length only.

    `buf` must have at least 8 bytes after the last token (they are read and masked off).
    """
    # An unaligned little-endian uint64 at every byte offset: words[i] = buf[i:i+8].
    words = np.ndarray(shape=(len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))
    h = lengths.astype(np.uint64) * _GOLDEN
    h ^= words[starts] & _BYTE_MASKS[np.minimum(lengths, 8)]
    _fmix64(h)
    idx = np.flatnonzero(lengths > 8)  # tokens with another 8-byte word to mix in
    offset = 8
    while idx.size:
        rem = lengths[idx] - offset
        sub = h[idx]
        sub ^= words[starts[idx] + offset] & _BYTE_MASKS[np.minimum(rem, 8)]
        h[idx] = _fmix64(sub)
        idx = idx[rem > 8]
        offset += 8
    return h


def _as_bytes(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")


def _chunk_shingles(parts: Sequence[bytes], shingle_words: int) -> tuple[np.ndarray, np.ndarray]:
    """Shingle hashes of several documents: (uint64 hashes grouped by document in token order,
    int64 counts per document)."""
    n_docs = len(parts)
    k = shingle_words
    lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=n_docs)
    buf = _SEP + _SEP.join(parts) + _SEP * 8
    doc_start = np.empty(n_docs, dtype=np.int64)  # byte offset of each document in buf
    if n_docs:
        doc_start[0] = 1
        np.cumsum(lengths[:-1] + 1, out=doc_start[1:])
        doc_start[1:] += 1
    is_tok = _is_token_byte(np.frombuffer(buf, dtype=np.uint8))
    # buf starts and ends with non-token bytes: flips alternate token start, token end.
    flips = np.flatnonzero(is_tok[1:] != is_tok[:-1]) + 1
    del is_tok
    tok_start, tok_end = flips[0::2], flips[1::2]
    n_tok = len(tok_start)
    tok_hash = _token_hashes(buf, tok_start, tok_end - tok_start)
    first_tok = np.searchsorted(tok_start, doc_start)  # tokens never straddle documents
    tokens_per_doc = np.diff(np.r_[first_tok, n_tok])
    tok_doc = np.repeat(np.arange(n_docs), tokens_per_doc)

    # Full shingles: the polynomial of k consecutive token hashes, valid when all k share a doc.
    n_full = max(n_tok - k + 1, 0)
    acc = tok_hash[:n_full].copy()
    for j in range(1, k):
        acc *= _SHINGLE_MULT
        acc += tok_hash[j : j + n_full]
    valid = np.zeros(n_tok, dtype=bool)
    valid[:n_full] = tok_doc[:n_full] == tok_doc[k - 1 : k - 1 + n_full]
    values = np.zeros(n_tok, dtype=np.uint64)
    values[:n_full] = acc
    # A document with 1 <= tokens < k: one shingle of all its tokens, at its first token.
    short = np.flatnonzero((tokens_per_doc > 0) & (tokens_per_doc < k))
    if short.size:
        at = first_tok[short]
        count = tokens_per_doc[short]
        s_acc = tok_hash[at].copy()
        for j in range(1, k - 1):
            more = j < count
            s_acc[more] = s_acc[more] * _SHINGLE_MULT + tok_hash[at[more] + j]
        values[at] = s_acc
        valid[at] = True
    shingles = _fmix64(values[valid])
    counts = np.where(tokens_per_doc >= k, tokens_per_doc - k + 1, np.minimum(tokens_per_doc, 1))
    return shingles, counts


def shingle_hashes(text: str, shingle_words: int = 5) -> np.ndarray:
    """uint64 hashes of the shingles of `text`, one per shingle position in text order (a repeated
    shingle repeats: the shingle *set* is `set(...)` / `np.unique` of it).

    Tokens are the runs of `[A-Za-z_0-9]`; a shingle is `shingle_words` consecutive tokens; a text
    with fewer tokens has one shingle of all of them, and a text without tokens none. The hashes
    depend on the text only: the same in every process (no salted `hash()`).
    """
    shingles, _ = _chunk_shingles([_as_bytes(text)], shingle_words)
    return shingles


# ---------------------------------------------------------------------------------------------
# MinHash signatures


def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The affine permutations x -> a x + b (mod 2^32), odd a, as (num_perm, 1) uint32 columns."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 1 << 32, size=num_perm, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 1 << 32, size=num_perm, dtype=np.uint64)
    return a.astype(np.uint32)[:, None], b.astype(np.uint32)[:, None]


def _chunk_signatures(
    parts: Sequence[bytes], num_perm: int, shingle_words: int, a: np.ndarray, b: np.ndarray
) -> np.ndarray:
    shingles, counts = _chunk_shingles(parts, shingle_words)
    keys = (shingles >> np.uint64(32)).astype(np.uint32)
    del shingles
    n_docs = len(parts)
    sig_t = np.full((num_perm, n_docs), EMPTY_SIGNATURE_VALUE, dtype=np.uint32)
    offsets = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    nonempty = counts > 0
    tmp = np.empty((_PERMS_PER_PASS, _BLOCK_SHINGLES), dtype=np.uint32)
    for lo in range(0, len(keys), _BLOCK_SHINGLES):
        hi = min(lo + _BLOCK_SHINGLES, len(keys))
        x = keys[None, lo:hi]
        block = tmp[:, : hi - lo]
        d_first = int(np.searchsorted(offsets, lo, side="right")) - 1  # the document holding lo
        d_last = int(np.searchsorted(offsets, hi, side="left")) - 1  # the document holding hi - 1
        docs = np.arange(d_first, d_last + 1)
        docs = docs[nonempty[docs]]
        seg = np.maximum(offsets[docs], lo) - lo
        mins = np.empty((num_perm, len(docs)), dtype=np.uint32)
        for p in range(0, num_perm, _PERMS_PER_PASS):
            q = min(p + _PERMS_PER_PASS, num_perm)
            rows = block[: q - p]
            np.multiply(a[p:q], x, out=rows)
            rows += b[p:q]
            np.minimum.reduceat(rows, seg, axis=1, out=mins[p:q])
        sig_t[:, docs] = np.minimum(sig_t[:, docs], mins)
    return np.ascontiguousarray(sig_t.T)


def _chunks(sizes: Sequence[int], target: int) -> list[tuple[int, int]]:
    """Consecutive [lo, hi) ranges of documents with about `target` bytes each (at least one doc)."""
    out = []
    lo, acc = 0, 0
    for i, size in enumerate(sizes):
        acc += size
        if acc >= target:
            out.append((lo, i + 1))
            lo, acc = i + 1, 0
    if lo < len(sizes):
        out.append((lo, len(sizes)))
    return out


def minhash_signatures(
    texts: Sequence[str] | Sequence[bytes],
    num_perm: int = 256,
    shingle_words: int = 5,
    seed: int = 0,
    *,
    threads: int | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """MinHash signatures, uint32 of shape (len(texts), num_perm), of the shingle sets of `texts`
    (str, or their UTF-8 bytes). A text without tokens gets a row of `EMPTY_SIGNATURE_VALUE`.

    threads: worker threads (default: the CPU count); the result does not depend on it.
    progress: called as progress(done, total) with documents done, from the calling thread.
    """
    n = len(texts)
    parts = [_as_bytes(t) for t in texts]
    a, b = _permutations(num_perm, seed)
    out = np.empty((n, num_perm), dtype=np.uint32)
    ranges = _chunks([len(p) for p in parts], _CHUNK_TEXT_BYTES)
    workers = max(1, min(threads or os.cpu_count() or 1, len(ranges)))

    def work(r: tuple[int, int]) -> np.ndarray:
        return _chunk_signatures(parts[r[0] : r[1]], num_perm, shingle_words, a, b)

    if progress:
        progress(0, n)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for (lo, hi), sig in zip(ranges, pool.map(work, ranges)):
            out[lo:hi] = sig
            if progress:
                progress(hi, n)
    return out


def estimated_jaccard(signatures: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Signature-estimated Jaccard of the pairs (i[k], j[k]): the fraction of equal values."""
    out = np.empty(len(i), dtype=np.float64)
    num_perm = signatures.shape[1]
    for lo in range(0, len(i), _VERIFY_PAIRS):
        hi = lo + _VERIFY_PAIRS
        eq = signatures[i[lo:hi]] == signatures[j[lo:hi]]
        out[lo:hi] = np.count_nonzero(eq, axis=1) / num_perm
    return out


# ---------------------------------------------------------------------------------------------
# LSH


@lru_cache(maxsize=64)
def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) minimising 0.5 * P(false positive) + 0.5 * P(false negative): the integrals
    over s in [0, threshold] of 1 - (1 - s^r)^b and over [threshold, 1] of (1 - s^r)^b, as
    datasketch's `MinHashLSH` computes them (`_optimal_param`), here for all (b, r) with b r <=
    num_perm at once with composite Gauss-Legendre quadrature; ties go to the first (b, r) in
    datasketch's order (b, then r, ascending)."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    nodes, weights = np.polynomial.legendre.leggauss(24)
    panels = 64

    def grid(lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
        edges = np.linspace(lo, hi, panels + 1)
        half = (edges[1:] - edges[:-1])[:, None] / 2
        mid = (edges[1:] + edges[:-1])[:, None] / 2
        return (mid + half * nodes).ravel(), (half * weights).ravel()

    s_fp, w_fp = grid(0.0, threshold)
    s_fn, w_fn = grid(threshold, 1.0)
    pairs = np.array([(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)])
    error = np.empty(len(pairs))
    for lo in range(0, len(pairs), 1024):  # (1024, 3072) float64 temporaries
        bs, rs = (pairs[lo : lo + 1024, k, None].astype(np.float64) for k in (0, 1))
        fp = (1.0 - (1.0 - s_fp[None, :] ** rs) ** bs) @ w_fp
        fn = ((1.0 - s_fn[None, :] ** rs) ** bs) @ w_fn
        error[lo : lo + 1024] = 0.5 * fp + 0.5 * fn
    b, r = pairs[int(np.argmin(error))]
    return int(b), int(r)


@dataclass(frozen=True)
class ClusterResult:
    representative: np.ndarray  # int64 (n,): smallest document index of each document's cluster
    candidate_pairs: int  # distinct document pairs examined (verified, or linked unverified)
    verified_pairs: int  # distinct pairs kept as edges
    empty_documents: int  # documents without shingles (never duplicates)


def _band_keys(band: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of a (n, rows) uint32 band."""
    key = np.full(band.shape[0], _GOLDEN, dtype=np.uint64)
    for col in range(band.shape[1]):
        key ^= band[:, col].astype(np.uint64)
        _fmix64(key)
    return key


def _pair_codes(i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    return lo * np.int64(n) + hi


def cluster_signatures(
    signatures: np.ndarray, threshold: float, bands: int, rows: int, verify: bool = True
) -> ClusterResult:
    """`duplicate_clusters` with counts for a report."""
    n, num_perm = signatures.shape
    if bands * rows > num_perm:
        raise ValueError(f"bands * rows = {bands} * {rows} exceeds the signature length {num_perm}")
    live = np.flatnonzero(signatures.min(axis=1, initial=EMPTY_SIGNATURE_VALUE) != EMPTY_SIGNATURE_VALUE)
    small_pairs: list[np.ndarray] = []  # pair codes to verify (or link) later
    leader_edges: list[np.ndarray] = []  # pair codes already verified
    examined: list[np.ndarray] = []  # pair codes compared in leader rounds
    for band in range(bands):
        keys = _band_keys(signatures[live, band * rows : (band + 1) * rows])
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        members = live[order]  # ascending document index within a bucket
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        sizes = np.diff(np.r_[starts, len(members)])
        if not verify:
            head = np.repeat(members[starts], sizes)
            linked = head != members
            small_pairs.append(_pair_codes(head[linked], members[linked], n))
            continue
        for size in np.unique(sizes[(sizes >= 2) & (sizes <= ALL_PAIRS_MAX_BUCKET)]):
            u, v = np.triu_indices(int(size), 1)
            first = starts[sizes == size][:, None]
            small_pairs.append(_pair_codes(members[first + u].ravel(), members[first + v].ravel(), n))
        for start, size in zip(starts[sizes > ALL_PAIRS_MAX_BUCKET], sizes[sizes > ALL_PAIRS_MAX_BUCKET]):
            bucket = members[start : start + size]
            pending = np.ones(size, dtype=bool)
            for _ in range(MAX_LEADERS_PER_BUCKET):
                left = np.flatnonzero(pending)
                if left.size == 0:
                    break
                leader = int(left[0])
                pending[leader] = False
                others = np.delete(np.arange(size), leader)
                sim = np.count_nonzero(signatures[bucket[others]] == signatures[bucket[leader]], axis=1) / num_perm
                match = others[sim >= threshold]
                pending[match] = False
                examined.append(_pair_codes(np.full(len(others), bucket[leader]), bucket[others], n))
                leader_edges.append(_pair_codes(np.full(len(match), bucket[leader]), bucket[match], n))

    empty = np.empty(0, dtype=np.int64)
    candidates = np.unique(np.concatenate(small_pairs or [empty]))
    if verify:
        i, j = candidates // n, candidates % n
        edges = candidates[estimated_jaccard(signatures, i, j) >= threshold]
        edges = np.unique(np.concatenate([edges, *leader_edges]))
        n_candidates = len(np.unique(np.concatenate([candidates, *examined])))
    else:
        edges, n_candidates = candidates, len(candidates)
    return ClusterResult(
        representative=_component_minimum(n, edges // n, edges % n),
        candidate_pairs=n_candidates,
        verified_pairs=len(edges),
        empty_documents=n - len(live),
    )


def _component_minimum(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """For each node of the undirected graph (n nodes, edges i-j): the smallest node of its
    connected component."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if n == 0:
        return np.empty(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    smallest = np.full(labels.max() + 1, n, dtype=np.int64)
    np.minimum.at(smallest, labels, np.arange(n, dtype=np.int64))
    return smallest[labels]


def duplicate_clusters(
    signatures: np.ndarray, threshold: float, bands: int, rows: int, verify: bool = True
) -> np.ndarray:
    """For each document (row of `signatures`), the index of its cluster's representative: the
    smallest document index of its connected component of LSH candidate pairs (verified ones only
    when `verify`: signature-estimated Jaccard >= threshold). A document is its own representative
    when it has no duplicate; documents without shingles always are. int64, length n."""
    return cluster_signatures(signatures, threshold, bands, rows, verify).representative


# ---------------------------------------------------------------------------------------------
# The cleaning step


def near_dedup(docs: pl.DataFrame, params: NearDedupParams, *, progress: Progress | None = None) -> StepOutput:
    """Remove near-duplicates: of each cluster of documents with shingle-set Jaccard >= threshold
    (MinHash + LSH), keep the first in table order. Removed rows: reason "near-duplicate", detail
    "<survivor id> (jaccard ~0.83)" with the signature-estimated Jaccard to the survivor.

    progress: called as progress(done, total) with documents signed, for a progress bar.
    """
    n = docs.height
    bands, rows = resolve_bands(params)
    texts = docs["text"].cast(pl.Binary).to_list()
    signatures = minhash_signatures(
        texts, params.num_perm, params.shingle_words, params.seed, progress=progress
    )
    result = cluster_signatures(signatures, params.threshold, bands, rows, params.verify)
    rep = result.representative
    removed_idx = np.flatnonzero(rep != np.arange(n))
    cluster_reps = np.unique(rep[removed_idx])
    notes = {
        "clusters": len(cluster_reps),
        "bands": bands,
        "rows": rows,
        "candidate_pairs": result.candidate_pairs,
        "verified_pairs": result.verified_pairs,
        "empty_documents": result.empty_documents,
    }
    if removed_idx.size == 0:
        return StepOutput(kept=docs, removed=empty_removed(), notes=notes)
    ids = docs["id"]
    survivors = rep[removed_idx]
    jaccard = estimated_jaccard(signatures, removed_idx, survivors)
    survivor_ids = ids.gather(survivors).to_list()
    details = [f"{sid} (jaccard ~{jac:.2f})" for sid, jac in zip(survivor_ids, jaccard)]
    removed = removed_rows(ids.gather(removed_idx).to_list(), ["near-duplicate"] * len(details), details)
    keep = np.ones(n, dtype=bool)
    keep[removed_idx] = False
    return StepOutput(kept=docs.filter(pl.Series(keep)), removed=removed, notes=notes)
