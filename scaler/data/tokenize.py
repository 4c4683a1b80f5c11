"""Tokenizers and packing: documents -> one uint16 token stream, EOS after every document.

`bytes`: the UTF-8 bytes (ids 0-255) and EOS = 256, nothing to train.
`bpe-N`: byte-level BPE with exactly N ids (the last one EOS) trained with the `tokenizers`
package on the training split of the build's eval tier (`clean` by default) only, saved as
`tokenizers/bpe-N.json` with the data. A literal "<|endoftext|>" in a document stays text.

Each stream records bytes per token so that a loss in nats per token converts to bits per byte:
bpb = loss / ln 2 / bytes_per_token.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scaler.config import ConfigError
from scaler.data.folder import write_file

BYTE_VOCAB_SIZE = 257  # 256 byte values + EOS
BYTE_EOS_ID = 256
EOS_TOKEN = "<|endoftext|>"
MAX_UINT16_VOCAB = 65_535

ProgressFn = Callable[[int, int], None]


class TokenizerError(ConfigError):
    pass


def parse_tokenizer_name(name: str) -> int | None:
    """None for `bytes`, the vocabulary size for `bpe-N`."""
    if name == "bytes":
        return None
    match = re.fullmatch(r"bpe-(\d+)", name)
    if not match:
        raise TokenizerError(f"unknown tokenizer {name!r}: expected 'bytes' or 'bpe-N' (e.g. bpe-8192)")
    vocab = int(match.group(1))
    if not 512 <= vocab <= MAX_UINT16_VOCAB:
        raise TokenizerError(f"tokenizer {name!r}: vocabulary must be 512 to {MAX_UINT16_VOCAB} (uint16 shards)")
    return vocab


@dataclass(frozen=True)
class ByteTokenizer:
    name: str = "bytes"
    vocab_size: int = BYTE_VOCAB_SIZE
    eos_id: int = BYTE_EOS_ID

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [np.frombuffer(t.encode("utf-8", "surrogatepass"), np.uint8).astype(np.uint16) for t in texts]


@dataclass(frozen=True)
class BpeTokenizer:
    name: str
    tokenizer: object  # tokenizers.Tokenizer
    vocab_size: int
    eos_id: int

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.uint16) for e in encodings]


Tokenizer = ByteTokenizer | BpeTokenizer


def train_bpe(name: str, texts: Sequence[str]) -> BpeTokenizer:
    """Byte-level BPE with `vocab_size` ids, EOS the last; deterministic for the same texts."""
    from tokenizers import Tokenizer as HfTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    vocab_size = parse_tokenizer_name(name)
    if vocab_size is None:
        raise TokenizerError("bytes needs no training")
    tokenizer = HfTokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.add_special_tokens([EOS_TOKEN])
    if tokenizer.get_vocab_size() != vocab_size:
        raise TokenizerError(
            f"tokenizer {name!r}: the training text ({sum(map(len, texts)):,} characters) yields only "
            f"{tokenizer.get_vocab_size()} ids; train on more text or choose a smaller vocabulary"
        )
    return _bpe(name, tokenizer)


def _bpe(name: str, tokenizer) -> BpeTokenizer:
    tokenizer.encode_special_tokens = True  # a document's literal "<|endoftext|>" is text, not EOS
    eos = tokenizer.token_to_id(EOS_TOKEN)
    return BpeTokenizer(name, tokenizer, vocab_size=tokenizer.get_vocab_size(), eos_id=eos)


def save_tokenizer(tokenizer: Tokenizer, folder: Path) -> None:
    """A BPE tokenizer's JSON (written here, not by `tokenizers`, whose errors do not say why)."""
    if isinstance(tokenizer, BpeTokenizer):
        write_file(folder / f"{tokenizer.name}.json", tokenizer.tokenizer.to_str(pretty=True).encode())


def load_tokenizer(name: str, folder: Path) -> Tokenizer:
    if parse_tokenizer_name(name) is None:
        return ByteTokenizer()
    from tokenizers import Tokenizer as HfTokenizer

    path = folder / f"{name}.json"
    if not path.exists():
        raise TokenizerError(f"{path}: tokenizer {name!r} was not built with this data")
    return _bpe(name, HfTokenizer.from_file(str(path)))


def pack(
    tokenizer: Tokenizer, texts: Sequence[str], progress: ProgressFn | None = None, chunk: int = 2_000
) -> np.ndarray:
    """All texts as one uint16 stream, EOS after each document."""
    eos = np.array([tokenizer.eos_id], np.uint16)
    parts: list[np.ndarray] = []
    for start in range(0, len(texts), chunk):
        for ids in tokenizer.encode(texts[start : start + chunk]):
            parts.append(ids)
            parts.append(eos)
        if progress:
            progress(min(start + chunk, len(texts)), len(texts))
    return np.concatenate(parts) if parts else np.zeros(0, np.uint16)
