"""The mix sampler: training batches drawn from a built data folder's tiers with weights.

Batch i of a run is a pure function of (seed, i), so resuming needs only the step:

- sequence slot j (= i * batch_size + b) goes to a tier by a low-discrepancy sequence:
  u_j = frac((j + offset(seed)) / golden ratio), and tier t owns an interval of [0, 1) as wide as
  its weight. Over any stretch of slots each tier's share stays within a few slots of its weight
  (no sampling noise in the mix), and which tier a slot reads never depends on the others;
- tier t's k-th draw reads window perm_{seed, t, e}[k mod W_t] of epoch e = k // W_t (the order
  depends on the tier's name, not on the mix it is in), where the
  tier's stream (documents, EOS between them, optionally capped at `unique_tokens`) is cut into
  W_t windows of seq_len + 1 tokens at a stride of seq_len: every window is read once per epoch,
  in a fresh order each epoch, as the data-constrained experiments of Muennighoff et al. do;
- k (the number of earlier draws from tier t) is counted over the earlier slots, vectorised, and
  cached, so reading batches in order costs nothing extra and a resume costs one count.

`usage()` gives the exact tokens drawn, unique tokens and epochs per tier that a run of n batches
reads; runs record them (the data-constrained and quality laws need them).
"""

from __future__ import annotations

import functools
import math
import zlib
from pathlib import Path

import numpy as np

from scaler.config import ConfigError
from scaler.data.folder import meta_path, read_build_info, read_token_meta
from scaler.data.source import EvalWindows, answer_windows, even_windows

GOLDEN_UINT64 = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio, odd
COUNT_CHUNK = 1 << 20


class MixError(ConfigError):
    """A mix that cannot be drawn from this data (unknown tier, bad weights, tier too small)."""


def normalise_weights(weights: dict[str, float], where: str = "data.mix") -> dict[str, float]:
    bad = {t: w for t, w in weights.items() if not (isinstance(w, int | float) and math.isfinite(w) and w >= 0)}
    if bad:
        raise MixError(f"{where}: weights must be finite numbers >= 0 (got {bad})")
    total = float(sum(weights.values()))
    if total <= 0:
        raise MixError(f"{where}: weights must sum to a positive number (got {weights})")
    return {t: w / total for t, w in weights.items() if w > 0}


def _splitmix64(x: int) -> np.uint64:
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return np.uint64(x ^ (x >> 31))


def slot_tiers(start: int, stop: int, seed: int, cumulative: np.ndarray) -> np.ndarray:
    """Tier index of each slot in [start, stop)."""
    slots = np.arange(start, stop, dtype=np.uint64) + _splitmix64(seed)
    with np.errstate(over="ignore"):
        u = (slots * GOLDEN_UINT64) >> np.uint64(11)
    frac = u.astype(np.float64) * 2.0**-53
    return np.searchsorted(cumulative, frac, side="right").astype(np.int64)


class MixSource:
    """A TokenSource over the tiers of a built data folder, mixed by weight."""

    def __init__(
        self,
        data_dir: str | Path,
        mix: dict[str, float],
        tokenizer: str = "bytes",
        unique_tokens: dict[str, int] | None = None,
    ):
        self.data_dir = Path(data_dir)
        build = read_build_info(self.data_dir)
        token_dir = meta_path(self.data_dir, tokenizer).parent
        if tokenizer not in build.tokenizers:
            raise MixError(f"data.tokenizer: {tokenizer!r} was not built in {data_dir} (built: {build.tokenizers})")
        self.meta = read_token_meta(self.data_dir, tokenizer)
        weights = normalise_weights(mix)
        unknown = sorted(set(mix) - set(self.meta.tiers))
        if unknown:
            raise MixError(f"data.mix: unknown tier {unknown[0]!r}; {data_dir} has tiers {sorted(self.meta.tiers)}")
        caps = unique_tokens or {}
        bad_caps = sorted(set(caps) - set(weights))
        if bad_caps:
            raise MixError(f"data.unique_tokens: {bad_caps[0]!r} is not a tier of this mix {sorted(weights)}")
        self.tiers = sorted(weights)
        self.weights = np.array([weights[t] for t in self.tiers])
        self.cumulative = np.cumsum(self.weights)[:-1]
        self.streams = {t: self._open(token_dir / "train" / f"{t}.npy", caps.get(t)) for t in self.tiers}
        self.eval_dir = token_dir / "eval"
        self.name = f"{self.data_dir.name}:{'+'.join(self.tiers)}"
        self.tokenizer = tokenizer
        self.vocab_size = self.meta.vocab_size
        self.eos_id = self.meta.eos_id
        self.build_id = build.build_id
        self._cursor: tuple[int, int, np.ndarray] | None = None  # (seed, next slot, draws per tier so far)

    @staticmethod
    def _open(path: Path, cap: int | None) -> np.ndarray:
        tokens = np.load(path, mmap_mode="r")
        return tokens[:cap] if cap is not None else tokens

    @property
    def bytes_per_token(self) -> float:
        tiers = self.meta.tiers
        return float(sum(w * tiers[t].bytes_per_token for t, w in zip(self.tiers, self.weights, strict=True)))

    def eval_bytes_per_token(self, name: str) -> float:
        return self.meta.eval[name].bytes_per_token

    def eval_set_tokens(self, name: str) -> int:
        return self.meta.eval[name].tokens

    def n_windows(self, tier: str, seq_len: int) -> int:
        return max(0, (len(self.streams[tier]) - 1) // seq_len)

    def check_windows(self, seq_len: int) -> None:
        for tier in self.tiers:
            if self.n_windows(tier, seq_len) < 1:
                raise MixError(
                    f"data.mix: tier {tier!r} has {len(self.streams[tier])} tokens in {self.data_dir}, "
                    f"fewer than one sequence (seq_len + 1 = {seq_len + 1})"
                )

    def _draws_before(self, seed: int, slot: int) -> np.ndarray:
        """Draws from each tier in slots [0, slot), continuing from the cached cursor when possible."""
        if self._cursor is not None and self._cursor[0] == seed and self._cursor[1] <= slot:
            _, start, counts = self._cursor
            counts = counts.copy()
        else:
            start, counts = 0, np.zeros(len(self.tiers), np.int64)
        for lo in range(start, slot, COUNT_CHUNK):
            hi = min(slot, lo + COUNT_CHUNK)
            counts += np.bincount(slot_tiers(lo, hi, seed, self.cumulative), minlength=len(self.tiers))
        return counts

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one source per run; a few epochs' orders per tier
    def _order(self, seed: int, tier: str, epoch: int, n_windows: int) -> np.ndarray:
        """Window order of one epoch of a tier: the same for a tier whatever mix it is in."""
        return np.random.default_rng([seed, zlib.crc32(tier.encode()), epoch]).permutation(n_windows)

    def train_batch(self, seed: int, index: int, batch_size: int, seq_len: int) -> np.ndarray:
        self.check_windows(seq_len)
        first = index * batch_size
        counts = self._draws_before(seed, first)
        tiers = slot_tiers(first, first + batch_size, seed, self.cumulative)
        batch = np.empty((batch_size, seq_len + 1), np.int32)
        for b, t in enumerate(tiers):
            name = self.tiers[t]
            n_windows = self.n_windows(name, seq_len)
            epoch, k = divmod(int(counts[t]), n_windows)
            start = int(self._order(seed, name, epoch, n_windows)[k]) * seq_len
            batch[b] = self.streams[name][start : start + seq_len + 1]
            counts[t] += 1
        self._cursor = (seed, first + batch_size, counts)
        return batch

    def eval_set(self, name: str, n_tokens: int, seq_len: int) -> EvalWindows:
        """A stream set: windows spread evenly over it. An answer set (a `<name>.mask.npy` beside
        it marks the answer tokens): `answer_windows`, at most n_tokens scored tokens' worth
        (n_tokens / (seq_len // 2) windows, spread evenly), all of them from eval_set_tokens(name) on."""
        path = self.eval_dir / f"{name}.npy"
        if not path.exists():
            known = sorted(p.name.removesuffix(".npy") for p in self.eval_dir.glob("*.npy") if not p.name.endswith(".mask.npy"))
            raise MixError(f"data.eval_sets: unknown eval set {name!r}; {self.data_dir} has {known}")
        stream = np.load(path)
        mask_path = self.eval_dir / f"{name}.mask.npy"
        if mask_path.exists():
            windows = answer_windows(stream, np.load(mask_path), seq_len, self.eos_id)
            wanted = windows.n_windows if n_tokens >= self.eval_set_tokens(name) else math.ceil(n_tokens / max(1, seq_len // 2))
            return windows.every(wanted)
        if len(stream) < seq_len + 1:
            raise MixError(f"eval set {name!r} has {len(stream)} tokens, fewer than seq_len + 1")
        return EvalWindows.every_token(even_windows(stream, math.ceil(n_tokens / seq_len), seq_len + 1))

    def usage(self, seed: int, n_batches: int, batch_size: int, seq_len: int) -> dict[str, float]:
        self.check_windows(seq_len)
        draws = self._draws_before(seed, n_batches * batch_size)
        out: dict[str, float] = {}
        for t, name in enumerate(self.tiers):
            windows = self.n_windows(name, seq_len)
            out[f"tokens_{name}"] = int(draws[t]) * seq_len
            out[f"unique_tokens_{name}"] = windows * seq_len
            out[f"epochs_{name}"] = int(draws[t]) / windows
        tokens = int(draws.sum()) * seq_len
        unique = sum(self.n_windows(name, seq_len) for name in self.tiers) * seq_len
        return {**out, "data_tokens": tokens, "unique_tokens": unique, "epochs": tokens / unique}

    def describe(self) -> dict[str, object]:
        return {
            "source": str(self.data_dir),
            "build_id": self.build_id,
            "tokenizer": self.tokenizer,
            "vocab_size": self.vocab_size,
            "mix": dict(zip(self.tiers, self.weights.tolist(), strict=True)),
            "bytes_per_token": self.bytes_per_token,
        }
