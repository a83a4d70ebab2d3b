"""bench/tune.py's functions on a tiny search (2 trials x 2 epochs) on an in-process Ray."""
from __future__ import annotations

import pytest

from bench import tune as bench_tune


def test_max_concurrent_counts_overlaps():
    assert bench_tune.max_concurrent([]) == 0
    assert bench_tune.max_concurrent([(0, 2), (1, 3), (2, 4)]) == 2  # an end precedes a start
    assert bench_tune.max_concurrent([(0, 5), (1, 2), (1.5, 3)]) == 3


def test_measure_and_compare_on_a_tiny_search(tmp_path):
    from tests.ray_head import connected_head  # a head of its own: free ports, own token
    with connected_head():
        m = bench_tune.measure("asha", tmp_path, trials=2, epochs=2, grace_period=1,
                               reduction_factor=2)
    assert m["trials"] == 2 and 1 <= m["trials_finished"] <= 2
    assert 2 + 1 <= m["epochs"] <= 2 * 2 and len(m["epochs_per_trial"]) == 2
    assert 0.0 <= m["best_val_accuracy"] <= 1.0
    assert 1 <= m["max_concurrent"] <= 2 and m["wall_s"] > 0
    rows = bench_tune.compare([m], [m, m])
    assert all(r["ratio"] == pytest.approx(1.0) for r in rows)
