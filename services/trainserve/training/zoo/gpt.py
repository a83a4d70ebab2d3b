"""GPT-style decoder-only transformer over characters (`GPTSpec`).

Only for text datasets (task "language_model", e.g. `corpus`); trained by `training.seq_tasks`
on next-character cross-entropy. `model(ids)` gives logits `(N, L, V)`;
`model.generate(prompt_ids, n, temperature, generator)` samples a continuation.
"""
from __future__ import annotations

from trainserve.training.checks import check_range, fail
from trainserve.training.zoo import Architecture, register_architecture

DEFAULT_D_MODEL, DEFAULT_HEADS, DEFAULT_LAYERS = 64, 4, 2
MAX_D_MODEL, MAX_LAYERS, MAX_CONTEXT = 4096, 32, 4096


def apply_defaults(msg) -> None:
    if not msg.HasField("d_model"):
        msg.d_model = DEFAULT_D_MODEL
    if not msg.HasField("num_heads"):
        msg.num_heads = DEFAULT_HEADS
    if not msg.HasField("num_layers"):
        msg.num_layers = DEFAULT_LAYERS


def check(msg, path: str, info, spec) -> None:
    if info.task != "language_model":
        fail(path, f"gpt needs a text dataset (task language_model, e.g. corpus); "
                   f"{info.name!r} is {info.task}")
    t = info.input_shape[0]
    if not msg.HasField("context_length"):
        msg.context_length = t
    if not 1 <= msg.d_model <= MAX_D_MODEL:
        fail(f"{path}.d_model", f"must be in [1, {MAX_D_MODEL}], got {msg.d_model}")
    if not 1 <= msg.num_heads <= msg.d_model or msg.d_model % msg.num_heads:
        fail(f"{path}.num_heads", f"must divide d_model ({msg.d_model}), got {msg.num_heads}")
    if not 1 <= msg.num_layers <= MAX_LAYERS:
        fail(f"{path}.num_layers", f"must be in [1, {MAX_LAYERS}], got {msg.num_layers}")
    if not t <= msg.context_length <= MAX_CONTEXT:
        fail(f"{path}.context_length", f"must be in [sequence_length = {t}, {MAX_CONTEXT}], "
                                       f"got {msg.context_length}; raise it or lower "
                                       f"spec.dataset.sequence_length")
    check_range(msg.dropout, f"{path}.dropout", low=0.0, high=1.0)


def build(msg, info):
    from trainserve.training.zoo.nets.gpt import GPT
    return GPT(len(info.class_names), msg.context_length or info.input_shape[0], msg.d_model,
               msg.num_heads, msg.num_layers, msg.dropout)


register_architecture("gpt", Architecture(apply_defaults, check, build))
