"""Synthetic sequence sets, inputs `(T, 1)` with `T = sequence_length`:

- `sine`: forecasting. Each sample is its own series, a sum of `SINE_COMPONENTS` sines with
  random amplitude, frequency and phase; the input is `T` past values plus Gaussian noise of std
  `noise`, the target the next `horizon` values of the clean series (regression,
  `output_dim = horizon`; targets `(N,)` for horizon 1, `(N, horizon)` otherwise).
- `sine_classify`: which of `len(CLASSIFY_FREQUENCIES)` frequencies a noisy sine of random
  amplitude and phase has (classification).

Samples come from a generator fixed per dataset (`datasets.data_rng`); clean signals are drawn
before the noise, so changing `noise` moves inputs, never the targets.
"""
from __future__ import annotations

import math

import numpy as np

from trainserve.training.datasets import (Dataset, DatasetInfo, data_rng, horizon_of,
                                       num_samples_of, register_dataset, sequence_length_of)

SINE_COMPONENTS = 2
# Cycles per step: periods of about 7 to 33 steps, so a default window (32 steps) holds at
# least one cycle of the slowest component, and the fastest is far above the Nyquist limit.
SINE_FREQUENCIES = (0.03, 0.15)
SINE_AMPLITUDES = (0.5, 1.0)
CLASSIFY_FREQUENCIES = (1 / 24, 1 / 12, 1 / 6)
CLASSIFY_NAMES = ("slow", "medium", "fast")
# Relative jitter of each class's frequency, so the classes are bands, not three exact tones.
CLASSIFY_JITTER = 0.1
DEFAULT_SEQUENCE_LENGTH = 32


def sine_series(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    """`n` clean series of `length` steps, each a sum of random sines; float64 `(n, length)`."""
    shape = (n, SINE_COMPONENTS, 1)
    freq = rng.uniform(*SINE_FREQUENCIES, size=shape)
    amp = rng.uniform(*SINE_AMPLITUDES, size=shape)
    phase = rng.uniform(0.0, 2 * math.pi, size=shape)
    t = np.arange(length)
    return (amp * np.sin(2 * math.pi * freq * t + phase)).sum(axis=1)


def _noisy_window(rng: np.random.Generator, clean: np.ndarray, noise: float) -> np.ndarray:
    x = clean + rng.normal(0.0, noise, size=clean.shape) if noise > 0 else clean
    return x[:, :, None].astype(np.float32)


def _sine_info(spec) -> DatasetInfo:
    return DatasetInfo("sine", "regression", 0, (), (sequence_length_of(spec), 1),
                       num_samples_of(spec), num_targets=horizon_of(spec))


def _sine_load(spec) -> tuple[np.ndarray, np.ndarray]:
    rng = data_rng("sine")
    steps, ahead = sequence_length_of(spec), horizon_of(spec)
    series = sine_series(rng, num_samples_of(spec), steps + ahead)
    y = series[:, steps:].astype(np.float32)
    return _noisy_window(rng, series[:, :steps], spec.noise), (y[:, 0] if ahead == 1 else y)


def _classify_info(spec) -> DatasetInfo:
    return DatasetInfo("sine_classify", "classification", len(CLASSIFY_NAMES), CLASSIFY_NAMES,
                       (sequence_length_of(spec), 1), num_samples_of(spec))


def _classify_load(spec) -> tuple[np.ndarray, np.ndarray]:
    rng = data_rng("sine_classify")
    n, steps = num_samples_of(spec), sequence_length_of(spec)
    y = rng.permutation(np.arange(n) % len(CLASSIFY_FREQUENCIES)).astype(np.int64)
    freq = np.asarray(CLASSIFY_FREQUENCIES)[y] * rng.uniform(1 - CLASSIFY_JITTER,
                                                               1 + CLASSIFY_JITTER, size=n)
    amp = rng.uniform(0.5, 1.5, size=n)
    phase = rng.uniform(0.0, 2 * math.pi, size=n)
    clean = amp[:, None] * np.sin(2 * math.pi * freq[:, None] * np.arange(steps) + phase[:, None])
    return _noisy_window(rng, clean, spec.noise), y


register_dataset("sine", Dataset(_sine_info, _sine_load, synthetic=True,
                                 default_num_samples=2000,
                                 default_sequence_length=DEFAULT_SEQUENCE_LENGTH,
                                 forecasting=True))
register_dataset("sine_classify", Dataset(_classify_info, _classify_load, synthetic=True,
                                          default_num_samples=900,
                                          default_sequence_length=DEFAULT_SEQUENCE_LENGTH))
