"""The model-size bound (`train.budget`): parameters and training memory estimated from the
whole spec at submission, and the refusal of what no worker could train."""
import dataclasses
import time
from pathlib import Path

import pytest

from trainserve.core.errors import ResourceExhausted
from trainserve.core.spec import load_spec_file, parse_spec
from trainserve.jobs.admission import check_submission
from trainserve.jobs import budget
from trainserve.training.datasets import dataset_info
from trainserve.training.tasks import task_info
from trainserve.training.validate import check_spec

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))
GIANT_MLP = {"dataset": {"name": "digits"}, "model": {"mlp": {"hidden": [16384] * 64}},
             "training": {"batch_size": 64}}


def checked(doc: dict):
    return check_spec(parse_spec(doc))


def info_of(spec):
    return task_info(spec, dataset_info(spec.dataset))


def test_small_mlp_parameter_count_is_exact():
    from trainserve.training.zoo import build_model
    spec = checked({"dataset": {"name": "moons"}, "model": {"mlp": {"hidden": [8, 5]}}})
    real = sum(p.numel() for p in build_model(spec, info_of(spec)).parameters())
    assert real == (2 * 8 + 8) + (8 * 5 + 5) + (5 * 2 + 2)  # moons: 2 features, 2 classes
    est = budget.estimate(spec)
    assert est.params == real
    # Adam: weights, gradients and two moments, float32.
    assert (est.weight_bytes, est.grad_bytes, est.optimizer_bytes) == (4 * real, 4 * real,
                                                                       8 * real)


def _real_step_peak(spec) -> int:
    """Bytes torch's CPU allocator holds at the peak of one real training step (forward,
    backward, Adam step) of `spec`'s network, weights and optimizer state included."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from trainserve.training.optimizers import build_optimizer
    from trainserve.training.zoo import build_model
    info = info_of(spec)
    model = build_model(spec, info)
    opt = build_optimizer(model.parameters(), spec.optimizer)
    batch = budget.batch_per_worker(spec, info)
    x, y = torch.randn(batch, *info.input_shape), torch.randint(0, info.num_classes, (batch,))

    def step():
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
    step()  # gradients and Adam's moments now exist: they are part of what a worker holds
    held = sum(t.numel() * t.element_size() for t in
               [*model.parameters(), *(p.grad for p in model.parameters()),
                *(v for s in opt.state.values() for v in s.values() if v.dim())])
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    now = peak = 0
    for event in events:  # allocations (> 0) and frees (< 0) in time order
        now += event.nbytes()
        peak = max(peak, now)
    return held + peak


def test_cnn_memory_estimate_within_a_factor_two_of_torch_allocations():
    spec = checked({"dataset": {"name": "digits"},
                    "model": {"cnn": {"channels": [16, 32], "hidden": [64]}},
                    "training": {"batch_size": 128}})
    real = _real_step_peak(spec)
    est = budget.estimate(spec)
    assert est.activations_exact
    assert real / 2 <= est.total_bytes <= real * 2, (est, real)
    assert est.activation_bytes > est.weight_bytes  # the batch dominates, as it should here


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_passes_with_a_wide_margin(path):
    spec = check_spec(load_spec_file(path))
    if spec.HasField("search"):
        from trainserve.tune.validate import check_search
        check_search(spec, check_spec)
    est = budget.check_model_budget(spec)
    assert est.params * 100 < budget.DEFAULT_MAX_PARAMS
    assert est.total_bytes * 50 < budget.DEFAULT_MAX_TRAIN_BYTES
    assert est.activations_exact


def test_giant_mlp_is_refused_with_its_numbers():
    with pytest.raises(ResourceExhausted) as e:
        check_submission(parse_spec(GIANT_MLP))
    msg = e.value.message
    assert msg.startswith("spec.model: the model has 16.9 billion parameters and needs ~253 GiB")
    assert "GiB to train at batch 64 per worker" in msg
    assert "the server's limit is 100 million parameters / 8 GiB per worker" in msg
    est = budget.estimate(checked(GIANT_MLP))
    width = 16384  # digits: 64 inputs, 10 classes
    assert est.params == (64 + 1) * width + 63 * (width + 1) * width + (width + 1) * 10
    assert 16 * est.params < est.total_bytes < 17 * est.params  # weights, grads, Adam moments


def test_limits_are_the_callers_to_set():
    spec = checked({"dataset": {"name": "digits"}, "model": {"mlp": {"hidden": [256]}}})
    est = budget.check_model_budget(spec)
    with pytest.raises(ResourceExhausted, match="limit is 10 000 parameters"):
        budget.check_model_budget(spec, max_params=10_000)
    with pytest.raises(ResourceExhausted, match=r"/ 64 KiB per worker"):
        budget.check_model_budget(spec, max_train_bytes=64 << 10)
    assert budget.check_model_budget(spec, max_params=est.params,
                                     max_train_bytes=est.total_bytes) == est


def test_activations_alone_can_exceed_the_memory_limit():
    # Few parameters, but attention over 4096 steps at batch 256: scores of 256 x 4 x 4096^2.
    spec = checked({"dataset": {"name": "sine", "num_samples": 2000, "sequence_length": 4096},
                    "model": {"transformer": {"d_model": 16, "num_heads": 4, "num_layers": 1}},
                    "training": {"batch_size": 256}})
    est = budget.estimate(spec)
    assert est.params < 100_000 and est.activation_bytes > 8 << 30
    with pytest.raises(ResourceExhausted, match="activations"):
        budget.check_model_budget(spec)


def test_activations_grow_with_the_batch_per_worker_and_reuse_the_build():
    one = checked({"dataset": {"name": "digits"}, "model": {"lenet5": {}},
                   "training": {"batch_size": 64}})
    budget.estimate(one)
    builds = budget._profile.cache_info().misses
    two = checked({"dataset": {"name": "digits"}, "model": {"lenet5": {}},
                   "training": {"batch_size": 128}, "scaling": {"num_workers": 2}})
    four = checked({"dataset": {"name": "digits"}, "model": {"lenet5": {}},
                    "training": {"batch_size": 256}})
    a, b, c = (budget.estimate(s) for s in (one, two, four))
    assert budget._profile.cache_info().misses == builds  # batch and workers: no rebuild
    assert (a.batch, b.batch, c.batch) == (64, 64, 256)
    assert a.activation_bytes == b.activation_bytes < c.activation_bytes
    assert b.grad_bytes == 2 * a.grad_bytes  # DDP's gradient buckets on 2 workers


def test_full_batch_gd_counts_the_whole_training_split():
    spec = checked({"dataset": {"name": "digits"}, "model": {"mlp": {}},
                    "optimizer": {"name": "gd"}, "training": {"batch_size": 8}})
    est = budget.estimate(spec)
    assert est.batch == 1257  # 1797 digits less the 20 % test and 10 % validation splits
    assert est.optimizer_bytes == 0  # plain gradient descent keeps no state


@pytest.mark.parametrize("model", [
    {"gan": {"generator_hidden": [16384] * 40}},
    {"autoencoder": {"hidden": [16384] * 40}},
    {"cnn": {"channels": [1024] * 3, "hidden": [16384] * 8}},
    {"resnet": {"channels": [1024] * 8, "blocks_per_stage": 16}},
], ids=lambda m: next(iter(m)))
def test_each_family_of_large_networks_is_refused(model):
    with pytest.raises(ResourceExhausted, match="parameters"):
        check_submission(parse_spec({"dataset": {"name": "digits"}, "model": model,
                                     "training": {"batch_size": 64}}))


def test_token_models_are_estimated_and_refused():
    gpt = {"dataset": {"name": "corpus"},
           "model": {"gpt": {"d_model": 4096, "num_heads": 32, "num_layers": 32}}}
    seq = {"dataset": {"name": "digit_reversal"},
           "model": {"seq2seq": {"hidden_size": 4096, "num_layers": 16, "attention": True}}}
    for doc in (gpt, seq):
        with pytest.raises(ResourceExhausted, match="billion parameters"):
            check_submission(parse_spec(doc))


def test_long_recurrent_sequences_are_estimated_without_unrolling():
    spec = checked({"dataset": {"name": "sine", "sequence_length": 4096},
                    "model": {"rnn": {"cell": "lstm", "hidden_size": 512, "num_layers": 8}},
                    "training": {"batch_size": 1024}})
    start = time.perf_counter()
    est = budget.estimate(spec)
    assert time.perf_counter() - start < 2.0
    # 20 values a unit, step, layer and sample: 1024 x 4096 x 8 x 512 x 20 x 4 bytes.
    assert est.activation_bytes >= 1024 * 4096 * 8 * 512 * 20 * 4
    with pytest.raises(ResourceExhausted, match="activations"):
        budget.check_model_budget(spec)


def test_transfer_is_estimated_on_the_network_it_builds():
    spec = checked(GIANT_MLP)
    spec.model.transfer.model = "some-pretrained"
    spec.model.transfer.rename["encoder."] = ""
    with pytest.raises(ResourceExhausted, match="16.9 billion parameters"):
        budget.check_model_budget(spec)


def test_a_search_is_checked_at_its_largest_point():
    doc = {"dataset": {"name": "digits"}, "model": {"mlp": {"hidden": [64]}},
           "search": {"space": {"model.mlp.hidden": "choice([[64], [8192, 8192, 8192]])",
                                "training.batch_size": "choice([16, 64])"},
                      "num_samples": 2}}
    budget.check_model_budget(checked(doc), max_params=10**9)  # its base is small
    with pytest.raises(ResourceExhausted) as e:
        check_submission(parse_spec(doc))
    assert "the search's largest trial, model.mlp.hidden = [8192, 8192, 8192], " \
           "training.batch_size = 64" in e.value.message
    assert "135 million parameters" in e.value.message


def test_a_network_meta_cannot_run_is_checked_on_its_parameters(monkeypatch):
    def broken(*args):
        raise NotImplementedError("no meta kernel")
    monkeypatch.setattr(budget, "_activation_bytes", broken)
    budget._profile.cache_clear()
    spec = checked({"dataset": {"name": "digits"}, "model": {"mlp": {"hidden": [77]}}})
    est = budget.estimate(spec)
    assert not est.activations_exact and est.activation_bytes == 0
    assert est.params == 64 * 77 + 77 + 77 * 10 + 10
    with pytest.raises(ResourceExhausted, match="activations not estimated"):
        budget.check_model_budget(spec, max_params=1000)
    budget._profile.cache_clear()  # no broken estimate left for the tests after


def test_a_network_meta_cannot_build_is_let_through_and_logged(monkeypatch, caplog):
    import trainserve.training.zoo as zoo

    def broken(*args):
        raise NotImplementedError("no meta kernel")
    monkeypatch.setattr(zoo, "build_model", broken)
    budget._profile.cache_clear()
    est = budget.check_model_budget(checked(GIANT_MLP))
    assert not est.built and "could not build mlp on meta" in caplog.text
    budget._profile.cache_clear()


def test_a_class_can_train_a_resnet_on_28x28_images():
    spec = checked({"dataset": {"name": "digits"},
                    "model": {"resnet": {"channels": [64, 128, 256, 512]}},
                    "training": {"batch_size": 128}})
    mnist = dataclasses.replace(info_of(spec), input_shape=(1, 28, 28), num_samples=70_000)
    est = budget.estimate(spec, mnist)  # a ResNet-18-sized network on MNIST-sized images
    assert est.params < budget.DEFAULT_MAX_PARAMS / 4
    assert est.total_bytes < budget.DEFAULT_MAX_TRAIN_BYTES / 4


def test_env_overrides_are_read_as_positive_numbers(monkeypatch):
    monkeypatch.setenv(budget.ENV_MAX_PARAMS, "2e8")
    assert budget._env_int(budget.ENV_MAX_PARAMS, 5) == 200_000_000
    monkeypatch.setenv(budget.ENV_MAX_PARAMS, "")
    assert budget._env_int(budget.ENV_MAX_PARAMS, 5) == 5
    for bad in ("0", "-3", "lots"):
        monkeypatch.setenv(budget.ENV_MAX_PARAMS, bad)
        with pytest.raises(ValueError, match=budget.ENV_MAX_PARAMS):
            budget._env_int(budget.ENV_MAX_PARAMS, 5)


def test_wording_of_counts_and_sizes():
    assert budget._count(17_180_000_000) == "17.2 billion"
    assert budget._count(100_000_000) == "100 million"
    assert budget._count(12_345) == "12 345"
    assert budget._size(8 << 30) == "8 GiB" and budget._size(1536 << 10) == "1.5 MiB"
