"""What a training step backpropagates and counts: the fused batch-mean losses equal the mean
of the per-sample ones, and the epoch sums agree whichever a step used."""
import pytest
import torch

from trainserve.core.pb import spec_pb2
from trainserve.training.datasets import DatasetInfo
from trainserve.training.loop import _EpochSums
from trainserve.training.losses import build_loss, build_mean_loss
from trainserve.training.task_hooks import SupervisedTask

CLASSES = DatasetInfo("c", "classification", 2, ("a", "b"), (4,), 64)
REGRESSION = DatasetInfo("r", "regression", 0, (), (4,), 64, num_targets=3)


def _batch(info, n=37):
    g = torch.Generator().manual_seed(0)
    if info.task == "classification":
        return torch.randn(n, info.num_classes, generator=g), \
            torch.randint(0, info.num_classes, (n,), generator=g)
    return torch.randn(n, info.num_targets, generator=g), \
        torch.randn(n, info.num_targets, generator=g)


@pytest.mark.parametrize("name,info,delta", [
    ("cross_entropy", CLASSES, None), ("bce", CLASSES, None), ("mse", REGRESSION, None),
    ("mae", REGRESSION, None), ("huber", REGRESSION, None), ("huber", REGRESSION, 0.3)])
def test_the_fused_mean_equals_the_mean_of_the_per_sample_losses(name, info, delta):
    spec = spec_pb2.LossSpec(name=name)
    if delta is not None:
        spec.huber_delta = delta
    out, y = _batch(info)
    out.requires_grad_(True)
    fused = build_mean_loss(spec, info)(out, y)
    (g_fused,) = torch.autograd.grad(fused, out)
    reference = build_loss(spec, info)(out, y).mean()
    (g_ref,) = torch.autograd.grad(reference, out)
    torch.testing.assert_close(fused, reference)
    torch.testing.assert_close(g_fused, g_ref)


def test_losses_without_a_fused_mean_form_have_none():
    assert build_mean_loss(spec_pb2.LossSpec(name="perceptron"), CLASSES) is None
    weighted = spec_pb2.LossSpec(name="cross_entropy", class_weights=[1.0, 3.0])
    assert build_mean_loss(weighted, CLASSES) is None


@pytest.mark.parametrize("info", [CLASSES, REGRESSION])
def test_epoch_sums_agree_with_and_without_the_fused_mean(info):
    spec = spec_pb2.LossSpec(name="cross_entropy" if info.task == "classification" else "mse")
    task = SupervisedTask(info, build_loss(spec, info))
    torch.manual_seed(0)
    model = torch.nn.Linear(4, info.num_classes or info.num_targets)
    x = torch.randn(100, 4)
    y = _batch(info, 100)[1]
    totals, grads = [], []
    for mean_loss in (build_mean_loss(spec, info), None):
        sums = _EpochSums(task, torch.device("cpu"), mean_loss)
        model.zero_grad()
        for start in range(0, 100, 32):  # batches of 32, 32, 32 and 4
            sums.step(model, x[start:start + 32], y[start:start + 32], None).backward()
        totals.append(sums.total())
        grads.append(model.weight.grad.clone())
    torch.testing.assert_close(totals[0], totals[1])
    torch.testing.assert_close(grads[0], grads[1])
    with torch.no_grad():
        expected_loss = float(task.loss_fn(model(x), y).sum())
    assert float(totals[0][0]) == pytest.approx(expected_loss, rel=1e-5)
    assert float(totals[0][1]) == 100
