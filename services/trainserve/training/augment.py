"""Image augmentation of training batches (`DatasetSpec.augmentation`), with torch ops only.

The loop holds normalized inputs; photometric and geometric transforms are defined on the
original pixel values (a translation of a per-pixel standardized image would move each pixel
away from the statistics it was normalized with, and an empty border should be black, not
"the mean"), so each batch is un-normalized, transformed, and normalized again. Gaussian
noise is added last, to the normalized input, as `AugmentationSpec` documents.

Per sample, with its own random draws: a horizontal / vertical flip (probability 1/2 each),
a rotation by a multiple of 90 degrees (each of the four equally likely; exact, square
images only), one affine warp (rotation, zoom, translation; bilinear `grid_sample`, zero padding), a
brightness factor (pixels times b) and a contrast factor (distance to the image mean times c).
Random numbers come from the generator the loop seeds per (seed, epoch, rank), so a resumed
run augments exactly like an uninterrupted one.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from trainserve.training.checks import check_range, fail

if TYPE_CHECKING:  # torch is imported where it is used: validation imports this module
    import torch

GEOMETRIC = ("rotation_degrees", "translate", "scale_min")
FIELDS = ("horizontal_flip", "vertical_flip", "rotate90", "rotation_degrees", "translate",
          "scale_min", "scale_max", "brightness", "contrast", "gaussian_noise")
MAX_ROTATION_DEGREES = 180.0
MAX_TRANSLATE = 0.5
MAX_SCALE = 4.0


def enabled(spec) -> bool:
    """Whether an `AugmentationSpec` asks for any transform."""
    return any(getattr(spec, f) for f in FIELDS)


def check_augmentation(aug, info, path: str = "spec.dataset.augmentation") -> None:
    """Validate an `AugmentationSpec` for a dataset (`DatasetInfo`): images only, every value
    in its range. Raises `InvalidArgument` with the field path."""
    if not enabled(aug):
        return
    if len(info.input_shape) != 3:
        first = next(f for f in FIELDS if getattr(aug, f))
        fail(f"{path}.{first}", f"augmentation needs image inputs (C, H, W); {info.name!r} has "
                                f"inputs of shape {tuple(info.input_shape)}: remove "
                                f"spec.dataset.augmentation")
    if aug.rotate90 and info.input_shape[1] != info.input_shape[2]:
        fail(f"{path}.rotate90", f"a quarter turn keeps the shape of square images only; "
                                 f"{info.name!r} has {info.input_shape[1]} x "
                                 f"{info.input_shape[2]} pixels")
    check_range(aug.rotation_degrees, f"{path}.rotation_degrees", low=0.0,
                high=MAX_ROTATION_DEGREES, high_open=False)
    check_range(aug.translate, f"{path}.translate", low=0.0, high=MAX_TRANSLATE)
    if aug.scale_min or aug.scale_max:
        if not (aug.scale_min and aug.scale_max):
            missing = "scale_min" if not aug.scale_min else "scale_max"
            fail(f"{path}.{missing}", "set scale_min and scale_max together, "
                                      "0 < scale_min <= scale_max (e.g. 0.9 and 1.1)")
        check_range(aug.scale_min, f"{path}.scale_min", low=0.0, high=MAX_SCALE,
                    low_open=True, high_open=False)
        check_range(aug.scale_max, f"{path}.scale_max", low=aug.scale_min, high=MAX_SCALE,
                    high_open=False)
    for name in ("brightness", "contrast"):
        check_range(getattr(aug, name), f"{path}.{name}", low=0.0, high=1.0)
    check_range(aug.gaussian_noise, f"{path}.gaussian_noise", low=0.0, high=math.inf)


class Augmenter:
    """Augments normalized image batches `(N, C, H, W)` for a checked `AugmentationSpec`.

    `shift` / `scale` are the input normalization (`Preprocessing`), flattened per value.
    """

    def __init__(self, spec, shift, scale, input_shape, device: "torch.device"):
        import torch
        self.spec = spec
        self.shift = torch.tensor(shift, dtype=torch.float32, device=device).reshape(input_shape)
        self.scale = torch.tensor(scale, dtype=torch.float32, device=device).reshape(input_shape)

    def __call__(self, x: "torch.Tensor", gen: "torch.Generator") -> "torch.Tensor":
        """An augmented copy of the normalized batch `x`, drawing from CPU generator `gen`."""
        import torch
        s, n = self.spec, len(x)
        raw = x * self.scale + self.shift
        if s.horizontal_flip:
            raw = torch.where(self._coin(n, gen), raw.flip(-1), raw)
        if s.vertical_flip:
            raw = torch.where(self._coin(n, gen), raw.flip(-2), raw)
        if s.rotate90:
            raw = self._quarter_turns(raw, gen)
        if any(getattr(s, f) for f in GEOMETRIC):
            raw = self._warp(raw, gen)
        if s.brightness:
            raw = raw * self._factor(n, s.brightness, gen)
        if s.contrast:
            mean = raw.mean(dim=(1, 2, 3), keepdim=True)
            raw = (raw - mean) * self._factor(n, s.contrast, gen) + mean
        out = (raw - self.shift) / self.scale
        if s.gaussian_noise:
            noise = torch.randn(out.shape, generator=gen).to(out.device)
            out = out + s.gaussian_noise * noise
        return out

    def _uniform(self, n: int, low: float, high: float, gen) -> "torch.Tensor":
        import torch
        return (low + (high - low) * torch.rand(n, generator=gen, dtype=torch.float32)).to(
            self.shift.device)

    def _coin(self, n: int, gen) -> "torch.Tensor":
        return (self._uniform(n, 0.0, 1.0, gen) < 0.5).view(n, 1, 1, 1)

    def _quarter_turns(self, raw: "torch.Tensor", gen) -> "torch.Tensor":
        """Each image turned by its own draw of 0-3 quarter turns (one rot90 per count)."""
        import torch
        turns = (self._uniform(len(raw), 0.0, 4.0, gen).floor().clamp(max=3)).view(-1, 1, 1, 1)
        out = raw
        for k in (1, 2, 3):
            out = torch.where(turns == k, torch.rot90(raw, k, dims=(-2, -1)), out)
        return out

    def _factor(self, n: int, spread: float, gen) -> "torch.Tensor":
        return self._uniform(n, 1 - spread, 1 + spread, gen).view(n, 1, 1, 1)

    def _warp(self, raw: "torch.Tensor", gen) -> "torch.Tensor":
        """One affine resampling per sample: rotation, zoom and translation together."""
        import torch
        import torch.nn.functional as F
        s, n = self.spec, len(raw)
        angle = self._uniform(n, -s.rotation_degrees, s.rotation_degrees, gen) * (math.pi / 180)
        zoom = self._uniform(n, s.scale_min, s.scale_max, gen) if s.scale_min \
            else torch.ones(n, device=raw.device)
        # Normalized grid coordinates span 2 units per image side, so a shift of t image
        # widths is 2t; theta maps output to input coordinates, so zoom divides.
        shift = self._uniform(2 * n, -s.translate, s.translate, gen).view(n, 2) * 2
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], dim=1),
                             torch.stack([sin, cos, shift[:, 1]], dim=1)], dim=1)
        grid = F.affine_grid(theta, list(raw.shape), align_corners=False)
        return F.grid_sample(raw, grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False)
