"""Synthetic 2-D classification sets: moons, circles, spirals (2 arms), spirals3 (3 arms) and
rings (8 Gaussian modes on a circle, the usual GAN toy distribution).

Each reads `num_samples` and `noise` (the standard deviation of Gaussian noise added to the
inputs; labels never change with it) from the `DatasetSpec`. The samples are drawn from a
generator fixed per dataset (`datasets.data_rng`), so a spec always yields the same data.
Classes are balanced: counts differ by at most one.
"""
from __future__ import annotations

import math

import numpy as np

from trainserve.training.datasets import (Dataset, DatasetInfo, data_rng, num_samples_of,
                                       register_dataset)

# Turns of each spiral arm: enough that no straight boundary separates the arms, few enough
# that a small MLP learns them in seconds.
SPIRAL_TURNS = 1.5
RING_MODES = 8
RING_RADIUS = 2.0


def _balanced_labels(rng: np.random.Generator, n: int, classes: int) -> np.ndarray:
    """Shuffled class indices with equal counts (up to one) per class."""
    return rng.permutation(np.arange(n) % classes).astype(np.int64)


def _noisy(rng: np.random.Generator, x: np.ndarray, noise: float) -> np.ndarray:
    # Drawn after everything else, so the clean points of a spec do not depend on `noise`.
    if noise > 0:
        x = x + rng.normal(0.0, noise, size=x.shape)
    return x.astype(np.float32)


def _moons(spec) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_moons
    seed = int(data_rng("moons").integers(2**31))
    x, y = make_moons(num_samples_of(spec), noise=spec.noise or None, random_state=seed)
    return x.astype(np.float32), y.astype(np.int64)


def _circles(spec) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_circles
    seed = int(data_rng("circles").integers(2**31))
    # factor: inner radius / outer radius; 0.5 leaves a clear gap at noise 0.
    x, y = make_circles(num_samples_of(spec), noise=spec.noise or None, factor=0.5,
                        random_state=seed)
    return x.astype(np.float32), y.astype(np.int64)


def _spirals(name: str, arms: int):
    def load(spec) -> tuple[np.ndarray, np.ndarray]:
        rng = data_rng(name)
        n = num_samples_of(spec)
        y = _balanced_labels(rng, n, arms)
        # Position along the arm; starting at 0.1 keeps the arms apart at the centre.
        t = rng.uniform(0.1, 1.0, size=n)
        theta = 2 * math.pi * (SPIRAL_TURNS * t + y / arms)
        x = np.stack([t * np.cos(theta), t * np.sin(theta)], axis=1)
        return _noisy(rng, x, spec.noise), y
    return load


def _rings(spec) -> tuple[np.ndarray, np.ndarray]:
    rng = data_rng("rings")
    y = _balanced_labels(rng, num_samples_of(spec), RING_MODES)
    angle = 2 * math.pi * y / RING_MODES
    x = RING_RADIUS * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return _noisy(rng, x, spec.noise), y


def _register(name: str, load, class_names: tuple[str, ...], default_samples: int) -> None:
    def info(spec) -> DatasetInfo:
        return DatasetInfo(name, "classification", len(class_names), class_names, (2,),
                           num_samples_of(spec))
    register_dataset(name, Dataset(info, load, synthetic=True,
                                   default_num_samples=default_samples))


_register("moons", _moons, ("0", "1"), 500)
_register("circles", _circles, ("outer", "inner"), 500)
_register("spirals", _spirals("spirals", 2), ("0", "1"), 600)
_register("spirals3", _spirals("spirals3", 3), ("0", "1", "2"), 600)
_register("rings", _rings, tuple(str(m) for m in range(RING_MODES)), 800)
