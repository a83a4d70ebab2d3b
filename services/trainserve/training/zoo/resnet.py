"""ResNet (He et al. 2015) for small images: a 3x3 conv stem, stages of basic residual blocks
(two 3x3 convs with batch norm, plus a skip connection), global average pooling and a linear
head. The first block of every stage after the first halves the map size (stride 2, with a 1x1
projection on the skip).

Presets: "small" = channels [16, 32, 64], 2 blocks a stage (8x8 -> 8, 4, 2; 28x28 -> 28, 14, 7;
about 175k parameters); "tiny" = [8, 16, 32], 1 block a stage. `channels` and
`blocks_per_stage` override the preset; `apply_defaults` writes the preset's values into the
spec, so a stored spec rebuilds the same network even if a preset changes.
"""
from __future__ import annotations

from trainserve.training.activations import ACTIVATIONS
from trainserve.training.checks import check_choice, check_range, fail
from trainserve.training.zoo import (Architecture, check_batch_norm_batch, register_architecture,
                                  require_input)

PRESETS = {"small": ((16, 32, 64), 2), "tiny": ((8, 16, 32), 1)}
DEFAULT_PRESET = "small"
DEFAULT_ACTIVATION = "relu"
MAX_STAGES, MAX_CHANNELS, MAX_BLOCKS = 8, 1024, 16


def apply_defaults(msg) -> None:
    msg.activation = msg.activation or DEFAULT_ACTIVATION
    msg.preset = msg.preset or DEFAULT_PRESET
    if msg.preset not in PRESETS:
        return  # check names the known presets
    channels, blocks = PRESETS[msg.preset]
    if not msg.channels:
        msg.channels.extend(channels)
    if not msg.HasField("blocks_per_stage"):
        msg.blocks_per_stage = blocks


def check(msg, path: str, info, spec) -> None:
    require_input(info, path, "resnet", ["image"])
    check_choice(msg.preset, PRESETS, f"{path}.preset", "resnet preset")
    if not 1 <= len(msg.channels) <= MAX_STAGES:
        fail(f"{path}.channels", f"1 to {MAX_STAGES} stages, got {len(msg.channels)}")
    for i, c in enumerate(msg.channels):
        if not 0 < c <= MAX_CHANNELS:
            fail(f"{path}.channels[{i}]", f"must be in [1, {MAX_CHANNELS}], got {c}")
    if not 1 <= msg.blocks_per_stage <= MAX_BLOCKS:
        fail(f"{path}.blocks_per_stage", f"must be in [1, {MAX_BLOCKS}], "
                                         f"got {msg.blocks_per_stage}")
    check_range(msg.dropout, f"{path}.dropout", low=0.0, high=1.0)
    check_choice(msg.activation, ACTIVATIONS, f"{path}.activation", "activation")
    check_batch_norm_batch(spec)  # every block normalizes over the batch
    _refuse_per_sample_steps(spec)


def _refuse_per_sample_steps(spec) -> None:
    # validate refuses per-sample optimizers for architectures with a `batch_norm` field;
    # ResNet has none because its batch norm is not optional.
    from trainserve.training.optimizers import OPTIMIZERS
    name = spec.optimizer.name
    if name in OPTIMIZERS and getattr(OPTIMIZERS.get(name), "steps", "") == "sample":
        fail("spec.optimizer.name", f"resnet normalizes over the batch in every block and "
                                    f"optimizer {name!r} steps on one sample; use adam or sgd")


def build(msg, info):
    from trainserve.training.zoo.nets.resnet import ResNet
    return ResNet(info.input_shape[0], list(msg.channels), msg.blocks_per_stage,
                  info.output_dim, msg.dropout, msg.activation or DEFAULT_ACTIVATION)


register_architecture("resnet", Architecture(apply_defaults, check, build,
                                              always_batch_norm=True))
