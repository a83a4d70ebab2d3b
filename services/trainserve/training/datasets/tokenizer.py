"""The character tokenizer of the BERT models (`model.bert`), shipped with the package: no
download, no training, the same vocabulary wherever the package is installed.

Ids 0..4 are the special tokens `[PAD] [UNK] [CLS] [SEP] [MASK]`; then every distinct
character of the package's corpus (`training/datasets/corpus.txt`), sorted. A sequence of
length T is `[CLS]` followed by the first T - 1 characters (longer text is cut), then `[PAD]` up
to T. A character outside the corpus becomes `[UNK]`. `decode` drops the special tokens, so
`decode(encode(text, T)) == text` for corpus characters and `len(text) < T`.

numpy only (the API process validates specs with it; the serving predictor encodes text with it).
"""
from __future__ import annotations

import functools
from typing import Iterable, Sequence

import numpy as np

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
NAME = "char"


@functools.lru_cache(maxsize=None)
def vocabulary() -> tuple[str, ...]:
    """Every token, by id: the specials, then the corpus characters."""
    from trainserve.training.datasets.text import corpus_vocab
    return SPECIALS + tuple(corpus_vocab())


def vocab_size() -> int:
    return len(vocabulary())


@functools.lru_cache(maxsize=None)
def _index() -> dict[str, int]:
    return {c: i for i, c in enumerate(vocabulary()) if i >= len(SPECIALS)}


def encode(text: str, length: int) -> np.ndarray:
    """`[CLS]` + the ids of `text`'s first `length - 1` characters, padded with `[PAD]` to
    `length`; int64 `(length,)`."""
    if length < 2:
        raise ValueError(f"a sequence needs length >= 2 ([CLS] and one token), got {length}")
    index = _index()
    ids = np.full(length, PAD, dtype=np.int64)
    ids[0] = CLS
    body = [index.get(c, UNK) for c in text[:length - 1]]
    ids[1:1 + len(body)] = body
    return ids


def encode_batch(texts: Iterable[str], length: int) -> np.ndarray:
    """`encode` of each text, stacked: int64 `(N, length)`."""
    rows = [encode(t, length) for t in texts]
    return np.stack(rows) if rows else np.zeros((0, length), dtype=np.int64)


def decode(ids: Sequence[int]) -> str:
    """The characters of `ids`, special tokens dropped."""
    vocab = vocabulary()
    return "".join(vocab[int(i)] for i in ids if int(i) >= len(SPECIALS))


def padding_mask(ids) -> "np.ndarray":
    """True where `ids` is `[PAD]` (the positions attention must ignore)."""
    return np.asarray(ids) == PAD
