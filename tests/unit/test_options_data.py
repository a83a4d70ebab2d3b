"""Data preparation details the options rely on: sequence normalization, empty splits."""
import numpy as np
import pytest

from trainserve.training.data import fit_preprocessing


def test_sequences_are_normalized_per_feature_over_all_steps():
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(5, 2, (200, 6)), rng.normal(-1, 0.5, (200, 6))], axis=2)  # N,T,F
    pre = fit_preprocessing("standard", x)
    assert len(pre.shift) == 6 * 2  # one per flattened value, as serving applies it
    assert pre.shift[0::2] == pytest.approx([x[..., 0].mean()] * 6)
    assert pre.scale[1::2] == pytest.approx([x[..., 1].std()] * 6)
    out = pre.apply(x)
    assert out.shape == x.shape
    assert out[..., 0].mean() == pytest.approx(0, abs=1e-5)
    assert out[..., 1].std() == pytest.approx(1, abs=1e-4)


@pytest.mark.parametrize("shape", [(4,), (1, 8, 8)])
def test_an_empty_split_normalizes_to_an_empty_array(shape):
    pre = fit_preprocessing("standard", np.ones((3, *shape)))
    assert pre.apply(np.zeros((0, *shape))).shape == (0, *shape)
