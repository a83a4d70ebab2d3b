"""Synthetic CT-like phantoms with or without a lesion: images a medical-physics resident knows.

Each image is a slice through an elliptical body phantom (in the spirit of Shepp-Logan): a
dense rim (bone) around soft tissue, two low-attenuation inner ellipses (ventricles or
organs) and, in half of the images, a small round hyperdense lesion of random size, contrast
and position inside the tissue. The slice is blurred by a Gaussian point-spread function and
gets Gaussian noise whose standard deviation plays the role of the dose (lower dose, more
noise). Every shape is jittered per image (size, rotation, position), so a network must find
the lesion rather than memorize a template.

Built-in datasets (classification "normal" / "lesion", balanced, input `(1, H, W)`):
`phantoms` (32 x 32) and `phantoms64` (64 x 64). They read `num_samples` (default 2000) and
`noise` (default `DEFAULT_NOISE` when 0) from the `DatasetSpec`; the samples come from a
generator fixed per dataset name (`datasets.data_rng`), so a spec always yields the same data.

`phantoms_size` (32 x 32, regression): the same phantoms, every one with a lesion, and the
target its diameter in pixels (`diameter_px`: 2.8 to 5.0 at 32 x 32, uniform in the radius).
Only lesion-bearing images: a size is a measurement of a lesion that is there, and a target
of 0 for "no lesion" would let a network score by detecting presence alone (the detection
task is `phantoms`). The diameter is the drawn disc's, before blur and noise: what a
radiologist's caliper would be asked to recover.

`make_phantoms(n, size, seed, noise)` and `make_lesion_sizes(n, size, seed, noise)` are the
generators themselves, and
`python -m trainserve.training.datasets.phantoms --out FILE.npz --seed 7 --noise 0.3` writes an
NPZ to upload (e.g. "another hospital's scanner": another seed, dose and blur) with `x` float32
`(N, 1, H, W)` (or `(N, H, W)` with `--no-channel-axis`) and `y` the class names as text.
"""
from __future__ import annotations

import argparse
import math

import numpy as np

from trainserve.training.datasets import (Dataset, DatasetInfo, data_rng, num_samples_of,
                                          register_dataset)

CLASS_NAMES = ("normal", "lesion")
DEFAULT_SAMPLES = 2000
DEFAULT_NOISE = 0.2     # std of the noise, in units of the soft tissue's intensity
DEFAULT_BLUR_PX = 0.6   # std of the Gaussian PSF, in pixels at 32 x 32 (scaled with the size)
TISSUE, RIM, INNER = 1.0, 2.0, 0.55          # intensities (a CT window of sorts)
LESION_RADIUS = (0.09, 0.16)                 # fraction of the field of view
LESION_CONTRAST = (0.4, 0.8)                 # added to the tissue's intensity
SIZES = {"phantoms": 32, "phantoms64": 64}
SIZE_TASKS = {"phantoms_size": 32, "phantoms64_size": 64}  # lesion-size regression


def make_phantoms(n: int, size: int = 32, seed: int = 0, noise: float = DEFAULT_NOISE,
                  blur_px: float = DEFAULT_BLUR_PX) -> tuple[np.ndarray, np.ndarray]:
    """`n` phantoms, `x` float32 `(n, 1, size, size)` and `y` int64 (1: a lesion), classes
    balanced; deterministic in all arguments. `blur_px` is the PSF's std at 32 x 32."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 2).astype(np.int64)
    x, _ = _render(rng, y.astype(bool), size, noise, blur_px)
    return x, y


def make_lesion_sizes(n: int, size: int = 32, seed: int = 0, noise: float = DEFAULT_NOISE,
                      blur_px: float = DEFAULT_BLUR_PX) -> tuple[np.ndarray, np.ndarray]:
    """`n` phantoms that all carry a lesion, `x` float32 `(n, 1, size, size)`, and `y` float32
    `(n,)` each lesion's diameter in pixels; deterministic in all arguments."""
    rng = np.random.default_rng(seed)
    x, radius = _render(rng, np.ones(n, dtype=bool), size, noise, blur_px)
    return x, diameter_px(radius, size).astype(np.float32)


def diameter_px(radius: np.ndarray, size: int) -> np.ndarray:
    """A radius in field-of-view units (the image spans [-1, 1], `size` pixel centres) as a
    diameter in pixels: 2r over the pixel pitch 2 / (size - 1)."""
    return np.asarray(radius, np.float64) * (size - 1)


def _render(rng: np.random.Generator, lesion: np.ndarray, size: int, noise: float,
            blur_px: float) -> tuple[np.ndarray, np.ndarray]:
    """The slices with a lesion where `lesion` says, blurred and noisy, `(n, 1, size, size)`
    float32, and every slice's drawn lesion radius (drawn for all, so that both tasks take
    the same random numbers per slice)."""
    grid = np.linspace(-1.0, 1.0, size, dtype=np.float64)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    slices = [_slice(rng, xx, yy, bool(has)) for has in lesion]
    x = np.stack([img for img, _ in slices]) if slices else np.zeros((0, size, size))
    x = _blur(x, blur_px * size / 32)
    if noise > 0:
        x = x + rng.normal(0.0, noise, size=x.shape)
    return x[:, None].astype(np.float32), np.array([r for _, r in slices], np.float64)


def _ellipse(xx, yy, cx, cy, a, b, theta) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _slice(rng: np.random.Generator, xx, yy, lesion: bool) -> tuple[np.ndarray, float]:
    """One noiseless slice: body with rim, two inner ellipses, maybe a lesion; and the
    lesion's radius (drawn whether or not the lesion is drawn)."""
    cx, cy = rng.uniform(-0.05, 0.05, 2)
    a, b = rng.uniform(0.72, 0.9), rng.uniform(0.6, 0.8)
    theta = rng.uniform(-0.3, 0.3)
    img = np.where(_ellipse(xx, yy, cx, cy, a, b, theta), RIM, 0.0)
    img[_ellipse(xx, yy, cx, cy, a - 0.08, b - 0.08, theta)] = TISSUE
    for side in (-1, 1):  # a pair of inner structures, left and right
        ix, iy = cx + side * rng.uniform(0.15, 0.3), cy + rng.uniform(-0.15, 0.15)
        img[_ellipse(xx, yy, ix, iy, rng.uniform(0.08, 0.16), rng.uniform(0.15, 0.3),
                     rng.uniform(-0.5, 0.5))] = INNER
    r = rng.uniform(*LESION_RADIUS)
    contrast = rng.uniform(*LESION_CONTRAST)
    # Inside the tissue, off the rim: a point of the inner ellipse scaled by at most 0.6.
    t, rho = rng.uniform(0, 2 * math.pi), 0.6 * math.sqrt(rng.uniform())
    lx = cx + rho * (a - 0.15) * math.cos(t) * math.cos(theta) - \
        rho * (b - 0.15) * math.sin(t) * math.sin(theta)
    ly = cy + rho * (a - 0.15) * math.cos(t) * math.sin(theta) + \
        rho * (b - 0.15) * math.sin(t) * math.cos(theta)
    if lesion:
        img[(xx - lx) ** 2 + (yy - ly) ** 2 <= r * r] += contrast
    return img, r


def _blur(x: np.ndarray, sigma_px: float) -> np.ndarray:
    """A separable Gaussian blur of every image of `x` `(n, H, W)`; edges padded by repeat."""
    if sigma_px <= 0:
        return x
    half = max(1, int(math.ceil(3 * sigma_px)))
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma_px) ** 2)
    k /= k.sum()
    padded = np.pad(x, ((0, 0), (half, half), (half, half)), mode="edge")
    h, w = x.shape[1:]
    rows = sum(k[i] * padded[:, i:i + h, :] for i in range(len(k)))
    return sum(k[i] * rows[:, :, i:i + w] for i in range(len(k)))


def _info(name: str):
    size = SIZES[name]

    def info(spec) -> DatasetInfo:
        return DatasetInfo(name, "classification", 2, CLASS_NAMES, (1, size, size),
                           num_samples_of(spec))
    return info


def _load(name: str):
    def load(spec) -> tuple[np.ndarray, np.ndarray]:
        seed = int(data_rng(name).integers(2**31))
        return make_phantoms(num_samples_of(spec), SIZES[name], seed,
                             spec.noise or DEFAULT_NOISE)
    return load


def _size_info(name: str):
    size = SIZE_TASKS[name]

    def info(spec) -> DatasetInfo:
        return DatasetInfo(name, "regression", 0, (), (1, size, size), num_samples_of(spec))
    return info


def _size_load(name: str):
    def load(spec) -> tuple[np.ndarray, np.ndarray]:
        seed = int(data_rng(name).integers(2**31))
        return make_lesion_sizes(num_samples_of(spec), SIZE_TASKS[name], seed,
                                 spec.noise or DEFAULT_NOISE)
    return load


for _name in SIZES:
    register_dataset(_name, Dataset(_info(_name), _load(_name), synthetic=True,
                                    default_num_samples=DEFAULT_SAMPLES))
for _name in SIZE_TASKS:
    register_dataset(_name, Dataset(_size_info(_name), _size_load(_name), synthetic=True,
                                    default_num_samples=DEFAULT_SAMPLES))


def write_npz(path: str, n: int, size: int, seed: int, noise: float, blur_px: float,
              channel_axis: bool = True) -> None:
    """An uploadable NPZ of `make_phantoms`: `x` float32, `y` the class names as text."""
    x, y = make_phantoms(n, size, seed, noise, blur_px)
    np.savez_compressed(path, x=x if channel_axis else x[:, 0],
                        y=np.array(CLASS_NAMES, dtype=np.str_)[y])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m trainserve.training.datasets.phantoms",
                                description="Write an NPZ of synthetic lesion phantoms.")
    p.add_argument("--out", required=True, help="the .npz file to write")
    p.add_argument("--num-samples", type=int, default=DEFAULT_SAMPLES)
    p.add_argument("--size", type=int, default=32, help="height and width in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", type=float, default=DEFAULT_NOISE, help="noise std (dose)")
    p.add_argument("--blur", type=float, default=DEFAULT_BLUR_PX, help="PSF std, px at 32x32")
    p.add_argument("--no-channel-axis", action="store_true", help="write x as (N, H, W)")
    a = p.parse_args(argv)
    write_npz(a.out, a.num_samples, a.size, a.seed, a.noise, a.blur, not a.no_channel_axis)


if __name__ == "__main__":
    main()
