"""Token datasets: inputs are sequences of token ids (stored as float32 like every input, exact
for these small vocabularies), targets int64 token ids. `normalize` must be "none" (a token id
is a class index, not a measurement); it is the default for these sets.

- `digit_reversal` (task "seq2seq"): input `sequence_length` (default 20) random digits 0..9,
  target the same digits reversed; `x (N, T)`, `y (N, T)`. Vocabulary: the 10 digits.
- `corpus` (task "language_model"): character-level text, the package's own documentation
  (`training/datasets/corpus.txt`). Samples are windows of `sequence_length + 1` characters starting
  every `sequence_length // 2` characters (windows overlap by half); `x` is the first
  `sequence_length` character ids, `y` the next character at each position (`x` shifted by
  one). Vocabulary: the sorted distinct characters of the corpus (`class_names`).

`DatasetInfo` of both: `input_shape (T,)`, `class_names` the vocabulary (its size is what the
models build on, also when rebuilt from an artifact's meta), `num_targets = T`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainserve.training.checks import fail
from trainserve.training.datasets import (Dataset, DatasetInfo, data_rng, num_samples_of,
                                       optional_field, register_dataset, sequence_length_of)

SEQ2SEQ = "seq2seq"
LANGUAGE_MODEL = "language_model"
TOKEN_TASKS = (SEQ2SEQ, LANGUAGE_MODEL)
DIGITS = tuple(str(d) for d in range(10))
CORPUS_FILE = Path(__file__).resolve().parent / "corpus.txt"
DEFAULT_REVERSAL_LENGTH = 20
DEFAULT_CORPUS_LENGTH = 64


@dataclass(frozen=True)
class TokenDataset(Dataset):
    """A dataset of token ids; `default_normalize` is filled in when the spec leaves it unset."""
    default_normalize: str = "none"


def _check_normalize(spec) -> None:
    if spec.normalize not in ("", "none"):
        fail("spec.dataset.normalize", f"{spec.name!r} holds token ids (class indices), which "
                                       f"must not be normalized; set normalize to 'none' or "
                                       f"leave it unset")


# --- digit_reversal ----------------------------------------------------------------------------

def _reversal_info(spec) -> DatasetInfo:
    t = sequence_length_of(spec)
    return DatasetInfo("digit_reversal", SEQ2SEQ, len(DIGITS), DIGITS, (t,),
                       num_samples_of(spec), num_targets=t)


def _reversal_load(spec) -> tuple[np.ndarray, np.ndarray]:
    rng = data_rng("digit_reversal")
    x = rng.integers(0, 10, size=(num_samples_of(spec), sequence_length_of(spec)))
    return x.astype(np.float32), np.ascontiguousarray(x[:, ::-1]).astype(np.int64)


def _reversal_check(spec) -> None:
    _check_normalize(spec)
    if spec.noise:
        fail("spec.dataset.noise", "digit_reversal takes no noise; remove it")


register_dataset("digit_reversal", TokenDataset(
    _reversal_info, _reversal_load, synthetic=True, default_num_samples=4000,
    default_sequence_length=DEFAULT_REVERSAL_LENGTH, check=_reversal_check))


# --- corpus ------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def corpus_text() -> str:
    return CORPUS_FILE.read_text(encoding="utf-8")


@functools.lru_cache(maxsize=None)
def corpus_vocab() -> tuple[str, ...]:
    return tuple(sorted(set(corpus_text())))


def encode(text: str) -> np.ndarray:
    """Character ids of `text` in the corpus vocabulary (`ValueError` on an unknown char)."""
    index = {c: i for i, c in enumerate(corpus_vocab())}
    try:
        return np.asarray([index[c] for c in text], dtype=np.int64)
    except KeyError as e:
        raise ValueError(f"character {e.args[0]!r} is not in the corpus vocabulary") from None


def decode(ids) -> str:
    vocab = corpus_vocab()
    return "".join(vocab[int(i)] for i in ids)


def _windows(t: int) -> int:
    return max(0, (len(corpus_text()) - t - 1) // max(1, t // 2) + 1)


def _corpus_info(spec) -> DatasetInfo:
    t = sequence_length_of(spec)
    return DatasetInfo("corpus", LANGUAGE_MODEL, len(corpus_vocab()), corpus_vocab(), (t,),
                       _windows(t), num_targets=t)


def _corpus_load(spec) -> tuple[np.ndarray, np.ndarray]:
    t = sequence_length_of(spec)
    ids = encode(corpus_text())
    starts = np.arange(_windows(t)) * max(1, t // 2)
    win = ids[starts[:, None] + np.arange(t + 1)]
    return win[:, :-1].astype(np.float32), np.ascontiguousarray(win[:, 1:])


def _corpus_check(spec) -> None:
    _check_normalize(spec)
    t = optional_field(spec, "sequence_length", DEFAULT_CORPUS_LENGTH)
    if _windows(t) < 20:
        fail("spec.dataset.sequence_length", f"the corpus ({len(corpus_text())} characters) "
                                             f"gives fewer than 20 windows of {t}; lower it")


register_dataset("corpus", TokenDataset(
    _corpus_info, _corpus_load, default_sequence_length=DEFAULT_CORPUS_LENGTH,
    check=_corpus_check))
