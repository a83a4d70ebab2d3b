"""The vanishing-gradient examples show what docs/interpretability.md says they show, at seed
0: in epoch 1 the first of eleven weight layers gets about 1e-9 of the last one's gradient with
sigmoid units, about 1e-4 with ReLU units and PyTorch's default initialization, and within
about an order of magnitude with He initialization, the only one of them that learns."""
from __future__ import annotations

from pathlib import Path

import pytest

from trainserve.core.spec import load_spec_file
from trainserve.training.diagnostics import GRAD_NORM, split_name
from trainserve.training.loop import train
from trainserve.training.reporting import ListReporter
from trainserve.training.validate import check_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(name: str, tmp_path: Path, epochs: int | None = None):
    spec = load_spec_file(EXAMPLES / f"{name}.yaml")
    if epochs:
        spec.training.epochs = epochs
    reporter = ListReporter()
    result = train(check_spec(spec), tmp_path / name, reporter)
    first = reporter.epochs[0].metrics
    norms = [first[k] for k in sorted(first) if (split_name(k) or ("",))[0] == GRAD_NORM]
    assert len(norms) == 11  # ten hidden layers and the output layer
    return result.metrics["test_accuracy"], norms[0] / norms[-1]


@pytest.mark.parametrize("name,low,high", [("vanishing_gradients_sigmoid", 0, 1e-7),
                                           ("vanishing_gradients_sigmoid_xavier", 0, 1e-5),
                                           ("vanishing_gradients_relu", 1e-6, 1e-2)])
def test_the_gradient_vanishes_towards_the_input(name, low, high, tmp_path):
    accuracy, ratio = run(name, tmp_path, epochs=3)
    assert low < ratio < high, ratio
    assert accuracy == 0.5  # two balanced classes: chance


def test_he_initialization_keeps_the_gradient_and_learns(tmp_path):
    accuracy, ratio = run("vanishing_gradients_relu_he", tmp_path)
    assert ratio > 1e-2, ratio
    assert accuracy >= 0.8, accuracy
