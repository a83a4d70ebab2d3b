"""The text datasets of the BERT models (`model.bert`), tokenized by `datasets.tokenizer`
(characters; `[CLS]` first, `[PAD]` after the text). Inputs are token ids stored as float32
like every input; `normalize` must be "none". `sequence_length` (default 64) counts the
`[CLS]` token.

- `corpus_mlm` (task "masked_lm"): the package's corpus (`corpus.txt`, its three documents)
  in windows of `sequence_length - 1` characters starting every quarter window (masks
  differ every step, so overlapping windows are not repeats); `x` the window's
  ids after `[CLS]`, `y` the same ids (the masked-language-model task masks `x` itself, see
  `training.mlm_task`). `class_names` is the tokenizer's vocabulary.
- `corpus_source` (classification): which document of the corpus a snippet comes from,
  `readme`, `architecture` or `training_options`. Each document (its title line removed, as
  it names the class) is cut into consecutive, non-overlapping snippets of 16 to
  `sequence_length - 1` characters, lengths drawn from a generator fixed by the dataset's
  name: the same snippets on every machine; shorter ones are padded. The snippets' text is
  also part of `corpus_mlm` (without labels): pre-training reads the domain, not the answers.
"""
from __future__ import annotations

import functools
import re

import numpy as np

from trainserve.training.datasets import tokenizer
from trainserve.training.checks import fail
from trainserve.training.datasets import (DatasetInfo, data_rng, optional_field,
                                          register_dataset, sequence_length_of)
from trainserve.training.datasets.text import TokenDataset, _check_normalize, corpus_text

MASKED_LM = "masked_lm"
DEFAULT_LENGTH = 64
MIN_SNIPPET = 16
SOURCES = ("readme", "architecture", "training_options")


def _length(spec) -> int:
    return sequence_length_of(spec)


# --- corpus_mlm ------------------------------------------------------------------------------

def _mlm_starts(t: int) -> np.ndarray:
    body = t - 1
    count = max(0, (len(corpus_text()) - body) // max(1, body // 4) + 1)
    return np.arange(count) * max(1, body // 4)


def _mlm_info(spec) -> DatasetInfo:
    t = _length(spec)
    vocab = tokenizer.vocabulary()  # the classes of every position, as for `corpus`
    return DatasetInfo("corpus_mlm", MASKED_LM, len(vocab), vocab, (t,),
                       len(_mlm_starts(t)), num_targets=t)


def _mlm_load(spec) -> tuple[np.ndarray, np.ndarray]:
    t = _length(spec)
    text = corpus_text()
    ids = tokenizer.encode_batch((text[s:s + t - 1] for s in _mlm_starts(t)), t)
    return ids.astype(np.float32), ids


def _mlm_check(spec) -> None:
    _check_normalize(spec)
    t = optional_field(spec, "sequence_length", DEFAULT_LENGTH)
    if len(_mlm_starts(t)) < 20:
        fail("spec.dataset.sequence_length", f"the corpus gives fewer than 20 windows of {t}; "
                                             f"lower it")


register_dataset("corpus_mlm", TokenDataset(
    _mlm_info, _mlm_load, default_sequence_length=DEFAULT_LENGTH, check=_mlm_check))


# --- corpus_source ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def documents() -> tuple[str, ...]:
    """The corpus's documents (split at its top-level `# ` headings), title lines removed."""
    parts = [p for p in re.split(r"(?m)^(?=# )", corpus_text()) if p.strip()]
    if len(parts) != len(SOURCES):
        raise RuntimeError(f"the corpus has {len(parts)} documents, expected {len(SOURCES)}")
    return tuple(p.split("\n", 1)[1] for p in parts)


@functools.lru_cache(maxsize=8)
def snippets(t: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The (text, source index) pairs of `corpus_source` at sequence length `t`."""
    rng = data_rng("corpus_source")
    texts, labels = [], []
    for label, doc in enumerate(documents()):
        pos = 0
        while len(doc) - pos >= MIN_SNIPPET:
            n = int(rng.integers(MIN_SNIPPET, max(MIN_SNIPPET, t - 1) + 1))
            texts.append(doc[pos:pos + n])
            labels.append(label)
            pos += n
    return tuple(texts), tuple(labels)


def _source_info(spec) -> DatasetInfo:
    t = _length(spec)
    return DatasetInfo("corpus_source", "classification", len(SOURCES), SOURCES, (t,),
                       len(snippets(t)[0]))


def _source_load(spec) -> tuple[np.ndarray, np.ndarray]:
    t = _length(spec)
    texts, labels = snippets(t)
    return (tokenizer.encode_batch(texts, t).astype(np.float32),
            np.asarray(labels, dtype=np.int64))


def _source_check(spec) -> None:
    _check_normalize(spec)
    t = optional_field(spec, "sequence_length", DEFAULT_LENGTH)
    if t - 1 < MIN_SNIPPET:
        fail("spec.dataset.sequence_length", f"must be >= {MIN_SNIPPET + 1} (snippets of at "
                                             f"least {MIN_SNIPPET} characters and [CLS]), "
                                             f"got {t}")


register_dataset("corpus_source", TokenDataset(
    _source_info, _source_load, default_sequence_length=DEFAULT_LENGTH, check=_source_check))

# The datasets whose inputs are this tokenizer's ids: what `model.bert` trains on.
BERT_DATASETS = ("corpus_mlm", "corpus_source")
