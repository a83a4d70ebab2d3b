"""BERT-style encoder over character tokens (`BERTSpec`, docs/bert.md).

Trains on the tokenizer's datasets only (`datasets.bert_text`: `corpus_mlm` for
masked-language-model pre-training, `corpus_source` for sequence classification). The
network (`zoo.nets.bert.BERT`): token + learned position embeddings, [CLS] first, padding
masked out of attention, pre-norm encoder layers, a masked-LM head or a [CLS] head.
"""
from __future__ import annotations

from trainserve.training.datasets import tokenizer
from trainserve.training.checks import check_choice, check_range, fail
from trainserve.training.zoo import Architecture, register_architecture
from trainserve.training.zoo.transformer import MAX_TOKENS as MAX_LENGTH
from trainserve.training.zoo.transformer import check_encoder_sizes

DEFAULT_D_MODEL, DEFAULT_HEADS, DEFAULT_LAYERS = 64, 4, 2
DEFAULT_MASK_PROBABILITY = 0.15
DEFAULT_POOLING = "cls"


def apply_defaults(msg) -> None:
    if not msg.HasField("d_model"):
        msg.d_model = DEFAULT_D_MODEL
    if not msg.HasField("num_heads"):
        msg.num_heads = DEFAULT_HEADS
    if not msg.HasField("num_layers"):
        msg.num_layers = DEFAULT_LAYERS
    if not msg.HasField("dim_feedforward"):
        msg.dim_feedforward = 4 * msg.d_model
    if not msg.HasField("mask_probability"):
        msg.mask_probability = DEFAULT_MASK_PROBABILITY
    if not msg.pooling:
        msg.pooling = DEFAULT_POOLING


def check(msg, path: str, info, spec) -> None:
    from trainserve.training.datasets.bert_text import BERT_DATASETS
    if info.name not in BERT_DATASETS or spec.dataset.HasField("uploaded"):
        fail(path, f"bert trains on the character-token datasets "
                   f"({', '.join(BERT_DATASETS)}); {info.name!r} is not one")
    t = info.input_shape[0]
    if not msg.HasField("max_length"):
        msg.max_length = t
    check_encoder_sizes(msg, path)
    if not t <= msg.max_length <= MAX_LENGTH:
        fail(f"{path}.max_length", f"must be in [sequence_length = {t}, {MAX_LENGTH}], got "
                                   f"{msg.max_length}; raise it or lower "
                                   f"spec.dataset.sequence_length")
    check_range(msg.dropout, f"{path}.dropout", low=0.0, high=1.0)
    check_range(msg.mask_probability, f"{path}.mask_probability", low=0.0, high=1.0,
                low_open=True)
    from trainserve.training.zoo.nets.bert import POOLINGS
    check_choice(msg.pooling, POOLINGS, f"{path}.pooling", "pooling")


def build(msg, info):
    from trainserve.training.zoo.nets.bert import BERT
    classes = info.num_classes if info.task == "classification" else 0
    return BERT(tokenizer.vocab_size(), msg.max_length or info.input_shape[0], msg.d_model,
                msg.num_heads, msg.num_layers, msg.dim_feedforward or 4 * msg.d_model,
                msg.dropout, classes, msg.pooling or DEFAULT_POOLING)


register_architecture("bert", Architecture(apply_defaults, check, build))
