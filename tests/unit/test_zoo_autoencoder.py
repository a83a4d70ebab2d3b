"""Autoencoders: the model API (encode, decode, sample, penalties), the reconstruction task's
validation (each refusal names its field and the fix), registry signatures, and a short
training of each kind through the loop (one code path with the supervised tasks)."""
import pytest
import torch
from google.protobuf import json_format

from trainserve.core import errors
from trainserve.core.pb import spec_pb2
from trainserve.serve.signature import io_specs
from trainserve.training.datasets import DatasetInfo
from trainserve.training.loop import train
from trainserve.training.reporting import NullReporter
from trainserve.training.task_hooks import code_sparsity
from trainserve.training.tasks import task_info
from trainserve.training.validate import check_spec
from trainserve.training.zoo import build_model
from tests.unit.ddp import run_two_ranks

IMAGE, TABULAR = (1, 8, 8), (5,)


def _spec(autoencoder: dict | None = None, dataset: dict | None = None, **rest):
    return check_spec(json_format.ParseDict(
        {"dataset": dataset or {"name": "digits"}, "model": {"autoencoder": autoencoder or {}},
         **rest}, spec_pb2.JobSpec()))


def _model(shape, **fields):
    spec = _spec(fields)
    info = task_info(spec, DatasetInfo("t", "classification", 3, ("a", "b", "c"), shape, 100))
    return build_model(spec, info).eval()


def test_defaults_and_task():
    spec = _spec()
    ae = spec.model.autoencoder
    assert (list(ae.hidden), ae.latent_dim, ae.activation, ae.kind) == ([128], 8, "relu", "plain")
    assert spec.loss.name == "mse"
    assert _spec({"kind": "denoising"}).model.autoencoder.noise == 0.3
    sparse = _spec({"kind": "sparse", "sparsity": "kl"}).model.autoencoder
    assert (sparse.sparsity_weight, sparse.sparsity_target) == (0.1, 0.05)
    assert _spec({"kind": "variational"}).model.autoencoder.beta == 1.0


@pytest.mark.parametrize("kind", ["plain", "denoising", "sparse", "variational"])
@pytest.mark.parametrize("shape", [IMAGE, TABULAR])
def test_encode_decode_forward_shapes(kind, shape):
    model = _model(shape, kind=kind, hidden=[16, 12], latent_dim=3)
    x = torch.randn(4, *shape)
    z = model.encode(x)
    assert z.shape == (4, 3)
    assert model.decode(z).shape == (4, *shape)
    assert model(x).shape == (4, *shape)
    out, penalty = model(x, return_penalty=True)
    assert out.shape == (4, *shape) and penalty.shape == (4,)
    assert torch.equal(model(x), model.decode(z))  # eval: deterministic, through the mean


def test_vae_samples_and_others_refuse():
    model = _model(IMAGE, kind="variational", latent_dim=4)
    a = model.sample(5, torch.Generator().manual_seed(1))
    assert a.shape == (5, *IMAGE) and torch.isfinite(a).all()
    assert torch.equal(a, model.sample(5, torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="variational"):
        _model(IMAGE).sample(2)


def test_penalties():
    x = torch.randn(6, *TABULAR)
    assert (_model(TABULAR)(x, return_penalty=True)[1] == 0).all()
    l1 = _model(TABULAR, kind="sparse", sparsity_weight=0.5)
    assert torch.allclose(l1(x, return_penalty=True)[1], 0.5 * l1.encode(x).abs().sum(dim=1))
    kl = _model(TABULAR, kind="sparse", sparsity="kl")
    code = kl.encode(x)
    assert ((code > 0) & (code < 1)).all()  # a sigmoid code
    assert (kl(x, return_penalty=True)[1] > 0).all()
    assert (_model(TABULAR, kind="variational")(x, return_penalty=True)[1] >= 0).all()


REFUSALS = [
    ({"loss": {"name": "cross_entropy"}}, "spec.loss.name", "reconstruction MSE"),
    ({"loss": {"name": "mae"}}, "spec.loss.name", "set spec.loss.name to 'mse'"),
    ({"loss": {"class_weights": [1.0] * 10}}, "spec.loss.class_weights", "remove class_weights"),
    ({"training": {"early_stopping": {"metric": "val_accuracy"}}},
     "spec.training.early_stopping.metric", "known: train_loss, train_recon_mse, val_loss, "
                                            "val_recon_mse"),
    ({"autoencoder": {"noise": 0.2}}, "spec.model.autoencoder.noise", "set spec.model."
                                                                       "autoencoder.kind"),
    ({"autoencoder": {"beta": 2}}, "spec.model.autoencoder.beta", "'variational'"),
    ({"autoencoder": {"kind": "sparse", "sparsity": "l2"}}, "spec.model.autoencoder.sparsity",
     "known: kl, l1"),
    ({"autoencoder": {"kind": "sparse", "sparsity_target": 0.1}},
     "spec.model.autoencoder.sparsity_target", "set spec.model.autoencoder.sparsity to 'kl'"),
    ({"autoencoder": {"kind": "sparse", "sparsity": "kl", "sparsity_target": 1.5}},
     "spec.model.autoencoder.sparsity_target", "(0, 1)"),
    ({"autoencoder": {"kind": "gan"}}, "spec.model.autoencoder.kind", "known: denoising, plain"),
    ({"autoencoder": {"latent_dim": 0}}, "spec.model.autoencoder.latent_dim", "[1, "),
    ({"autoencoder": {"kind": "denoising", "noise": -1}}, "spec.model.autoencoder.noise",
     "(0, inf)"),
]


@pytest.mark.parametrize("fields,field,fragment", REFUSALS, ids=[r[1] + str(i) for i, r in
                                                                  enumerate(REFUSALS)])
def test_refusals_name_the_field_and_the_fix(fields, field, fragment):
    fields = dict(fields)
    with pytest.raises(errors.InvalidArgument) as info:
        _spec(fields.pop("autoencoder", None), **fields)
    assert info.value.field == field
    assert fragment in info.value.reason


def test_early_stopping_on_reconstruction_metrics_is_accepted():
    es = _spec(training={"early_stopping": {"metric": "val_recon_mse"}}).training.early_stopping
    assert es.mode == "min"


def test_io_specs_for_reconstruction():
    meta = {"task": "reconstruction", "input_shape": [1, 8, 8], "latent_dim": 5,
            "spec": {"model": {"autoencoder": {"latentDim": 5}}}}
    _, outputs = io_specs(meta)
    assert [(o.name, o.datatype, list(o.shape)) for o in outputs] == [
        ("reconstruction", "FP32", [-1, 1, 8, 8]), ("latent", "FP32", [-1, 5])]
    del meta["latent_dim"]
    assert list(io_specs(meta)[1][1].shape) == [-1, 5]


@pytest.mark.parametrize("fields", [{"kind": "sparse"}, {"kind": "sparse", "sparsity": "kl"},
                                    {"kind": "denoising"}, {"kind": "variational"}])
def test_each_kind_trains_and_reports_reconstruction_metrics(fields, tmp_path):
    spec = _spec({"hidden": [32], "latent_dim": 4, **fields},
                 dataset={"name": "iris"}, training={"epochs": 3})
    result = train(spec, tmp_path, NullReporter())
    assert result.status == "succeeded"
    expected = {"test_loss", "test_recon_mse", "test_code_sparsity"} | (
        {"test_denoise_mse"} if fields["kind"] == "denoising" else set())
    assert set(result.metrics) == expected
    assert all(v == v and v >= 0 for v in result.metrics.values())
    assert result.metrics["test_code_sparsity"] <= 1


def test_code_sparsity_counts_values_near_zero_relative_to_the_sample():
    codes = torch.tensor([[10.0, 0.5, 1.0, -3.0],    # 0.5 and 1.0 are off (<= 0.1 * 10)
                          [0.0, 0.0, 0.0, 0.0],      # all off
                          [-2.0, 2.0, 0.3, 0.1]])    # 0.1 is off
    assert code_sparsity(codes) == pytest.approx(7 / 12)
    assert code_sparsity(codes * 100) == pytest.approx(7 / 12)  # the scale does not matter
    assert code_sparsity(torch.ones(5, 3)) == 0.0
    assert code_sparsity(torch.zeros(0, 3)) == 0.0


AE_IRIS = {"hidden": [16], "latent_dim": 2}


def _ddp_worker(rank, port, job_dirs, queue):
    import os

    import torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        plain = train(_spec(AE_IRIS, dataset={"name": "iris"}, training={"epochs": 3}),
                      job_dirs[0], NullReporter(), rank=rank, world_size=2)
        vae = train(_spec(AE_IRIS | {"kind": "variational"}, dataset={"name": "iris"},
                          training={"epochs": 3}), job_dirs[1], NullReporter(), rank=rank,
                    world_size=2)
        queue.put((rank, plain.metrics, vae.metrics))
    finally:
        dist.destroy_process_group()


def test_ddp_two_ranks_match_one_process(tmp_path):
    """The reconstruction task through DDP (the penalty flag passes the wrapper): a plain
    autoencoder matches one process, and both ranks of a VAE report the same metrics."""
    results = run_two_ranks(_ddp_worker, [str(tmp_path / "plain"), str(tmp_path / "vae")])
    single = train(_spec(AE_IRIS, dataset={"name": "iris"}, training={"epochs": 3}),
                   tmp_path / "single", NullReporter())
    (_, plain0, vae0), (_, plain1, vae1) = results
    assert plain0 == plain1 and vae0 == vae1
    assert plain0 == pytest.approx(single.metrics, rel=1e-4)
