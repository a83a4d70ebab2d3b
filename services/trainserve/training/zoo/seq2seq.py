"""Sequence-to-sequence LSTM encoder-decoder, with or without attention (`Seq2SeqSpec`).

Only for sequence-to-sequence datasets (task "seq2seq", e.g. `digit_reversal`); trained by the
task in `training.seq_tasks` (teacher forcing, per-token cross-entropy; greedy decoding at
evaluation). `model(src, tgt)` gives logits `(N, T, V)`; `model(src)` the greedy tokens `(N, T)`.
"""
from __future__ import annotations

from trainserve.training.checks import check_choice, fail
from trainserve.training.zoo import Architecture, register_architecture

DEFAULT_EMBEDDING_DIM, DEFAULT_HIDDEN_SIZE, DEFAULT_NUM_LAYERS = 32, 64, 1
SCORES = ("additive", "dot")
MAX_WIDTH, MAX_LAYERS = 4096, 16


def apply_defaults(msg) -> None:
    if not msg.HasField("embedding_dim"):
        msg.embedding_dim = DEFAULT_EMBEDDING_DIM
    if not msg.HasField("hidden_size"):
        msg.hidden_size = DEFAULT_HIDDEN_SIZE
    if not msg.HasField("num_layers"):
        msg.num_layers = DEFAULT_NUM_LAYERS
    if msg.attention and not msg.score:
        msg.score = "additive"


def check(msg, path: str, info, spec) -> None:
    if info.task != "seq2seq":
        fail(path, f"seq2seq needs a sequence-to-sequence dataset (e.g. digit_reversal); "
                   f"{info.name!r} is {info.task}")
    for field, high in (("embedding_dim", MAX_WIDTH), ("hidden_size", MAX_WIDTH),
                        ("num_layers", MAX_LAYERS)):
        value = getattr(msg, field)
        if not 1 <= value <= high:
            fail(f"{path}.{field}", f"must be in [1, {high}], got {value}")
    if msg.score and not msg.attention:
        fail(f"{path}.score", "score is the attention score; set attention: true or remove it")
    if msg.attention:
        check_choice(msg.score, SCORES, f"{path}.score", "attention score")


def build(msg, info):
    from trainserve.training.zoo.nets.seq2seq import Seq2Seq
    return Seq2Seq(len(info.class_names), info.input_shape[0], msg.embedding_dim,
                   msg.hidden_size, msg.num_layers, msg.attention, msg.score or "additive")


register_architecture("seq2seq", Architecture(apply_defaults, check, build))
