"""The lesion-phantom examples keep the claims of their rows in examples/README.md ("Lesion
phantoms", made by examples/phantom_measure.py): each row's run at seed 0, in-process on one
thread, as the script measures."""
from __future__ import annotations

import pytest


def _rows():
    from examples.phantom_measure import ROWS
    return ROWS


@pytest.mark.parametrize("row", _rows(), ids=lambda row: row.key)
def test_phantom_examples_show_what_their_row_claims(row, tmp_path, one_thread):
    values = row.run(0, tmp_path)
    assert row.check(values), (row.target, values)


def test_the_size_baseline_is_the_training_mean_on_the_test_split():
    """The mean predictor's MAE is about a quarter of the diameter range (uniform radii),
    so a network below 0.7 x of it has learnt sizes, not their average."""
    from examples.phantom_measure import mean_predictor_mae, spec_of
    from trainserve.training.datasets.phantoms import LESION_RADIUS
    base = mean_predictor_mae(spec_of("phantom_size_cnn", 0))
    spread = (LESION_RADIUS[1] - LESION_RADIUS[0]) * 63
    assert 0.2 * spread < base < 0.3 * spread
