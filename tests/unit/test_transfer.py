"""Transfer learning (`ModelSpec.transfer`) and `DatasetSpec.label_fraction`: mapping,
freezing, refusals at submission and at training."""
import numpy as np
import pytest
import torch
from google.protobuf import json_format

from trainserve.core import errors
from trainserve.jobs.admission import check_submission
from trainserve.core.pb import spec_pb2
from trainserve.training.artifacts import save_artifact
from trainserve.training.data import Preprocessing, prepare_data
from trainserve.training.datasets import DatasetInfo
from trainserve.training.loop import train
from trainserve.training.reporting import NullReporter
from trainserve.training.transfer import (apply_transfer, check_source, map_name,
                                       read_source_shapes)
from trainserve.training.validate import check_spec
from trainserve.training.zoo import build_model

DIGITS = DatasetInfo("digits", "classification", 10, tuple("0123456789"), (1, 8, 8), 1797)
DIGITS_AE = DatasetInfo("digits", "reconstruction", 0, (), (1, 8, 8), 1797)


def _spec(d):
    return check_spec(json_format.ParseDict(d, spec_pb2.JobSpec()))


def _clf(transfer=None, hidden=(16,), **dataset):
    d = {"dataset": {"name": "digits", **dataset}, "model": {"mlp": {"hidden": list(hidden)}},
         "training": {"epochs": 2, "seed": 0}}
    if transfer is not None:
        d["model"]["transfer"] = transfer
    return json_format.ParseDict(d, spec_pb2.JobSpec())


@pytest.fixture(scope="module")
def ae_artifact(tmp_path_factory):
    """An (untrained) autoencoder artifact: encoder.fc1 [16, 64], code [4, 16], decoder."""
    spec = _spec({"dataset": {"name": "digits"},
                  "model": {"autoencoder": {"hidden": [16], "latent_dim": 4}}})
    torch.manual_seed(1)
    model = build_model(spec, DIGITS_AE)
    pre = Preprocessing("none", (0.0,) * 64, (1.0,) * 64)
    return save_artifact(tmp_path_factory.mktemp("ae") / "artifact", model, spec, DIGITS_AE,
                         pre, {})


def _pinned(ae_artifact, hidden=(16,), **transfer):
    return check_spec(_clf({"model": "ae", "artifact_path": str(ae_artifact), **transfer},
                           hidden=hidden))


def test_map_name_takes_the_longest_prefix():
    rename = {"encoder.": "", "encoder.fc2.": "fc9."}
    assert map_name("encoder.fc1.weight", rename) == ("fc1.weight", True)
    assert map_name("encoder.fc2.bias", rename) == ("fc9.bias", True)
    assert map_name("out.weight", rename) == ("out.weight", False)


def test_header_shapes_without_loading(ae_artifact):
    shapes = read_source_shapes(ae_artifact)
    assert shapes["encoder.fc1.weight"] == (16, 64) and shapes["code.weight"] == (4, 16)


def test_encoder_initializes_the_first_layer_and_the_head_stays_fresh(ae_artifact):
    from safetensors.torch import load_file
    spec = _pinned(ae_artifact, rename={"encoder.": ""})
    torch.manual_seed(0)
    model = build_model(spec, DIGITS)
    head = model.out.weight.detach().clone()
    report = apply_transfer(spec, model)
    source = load_file(str(ae_artifact / "model.safetensors"))
    assert set(report.loaded) == {"fc1.weight", "fc1.bias"}
    assert torch.equal(model.fc1.weight, source["encoder.fc1.weight"])
    assert torch.equal(model.out.weight, head)
    assert "decoder.out.weight" in report.skipped and not report.frozen


def test_rename_can_put_the_code_layer_on_a_second_hidden_layer(ae_artifact):
    spec = _pinned(ae_artifact, hidden=(16, 4), rename={"encoder.": "", "code.": "fc2."})
    report = apply_transfer(spec, build_model(spec, DIGITS))
    assert set(report.loaded) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}


def test_same_architecture_other_head_skips_the_mismatched_head(tmp_path):
    spec = _spec({"dataset": {"name": "iris"}, "model": {"mlp": {"hidden": [4]}}})
    iris = DatasetInfo("iris", "classification", 3, ("a", "b", "c"), (4,), 150)
    art = save_artifact(tmp_path / "a", build_model(spec, iris), spec, iris,
                        Preprocessing("none", (0.0,) * 4, (1.0,) * 4), {})
    spec.model.transfer.model, spec.model.transfer.artifact_path = "m", str(art)
    two = DatasetInfo("iris2", "classification", 2, ("a", "b"), (4,), 100)
    report = apply_transfer(spec, build_model(spec, two))
    assert set(report.loaded) == {"fc1.weight", "fc1.bias"}
    assert report.skipped["out.weight"] == "shape [3, 4] here [2, 4]"


def test_freeze_keeps_the_frozen_layer_out_of_training(ae_artifact, tmp_path):
    from safetensors.torch import load_file
    spec = _pinned(ae_artifact, rename={"encoder.": ""}, freeze=["fc1."])
    result = train(spec, tmp_path / "job", NullReporter())
    assert result.status == "succeeded"
    trained = load_file(str(tmp_path / "job" / "artifact" / "model.safetensors"))
    source = load_file(str(ae_artifact / "model.safetensors"))
    assert torch.equal(trained["fc1.weight"], source["encoder.fc1.weight"])
    assert torch.equal(trained["fc1.bias"], source["encoder.fc1.bias"])


def test_refusals_at_training(ae_artifact):
    with pytest.raises(errors.TrainingError, match="no tensor of the source.*rename"):
        spec = _pinned(ae_artifact)  # no rename: encoder.fc1 is not fc1
        apply_transfer(spec, build_model(spec, DIGITS))
    wide = check_spec(_clf({"model": "ae", "artifact_path": str(ae_artifact),
                            "rename": {"encoder.": ""}}, hidden=(32,)))
    with pytest.raises(errors.TrainingError, match="shapes differ"):
        apply_transfer(wide, build_model(wide, DIGITS))
    typo = _pinned(ae_artifact, rename={"encoder.": ""}, freeze=["fc_1."])
    with pytest.raises(errors.TrainingError, match=r"freeze\[0\].*matches no parameter"):
        apply_transfer(typo, build_model(typo, DIGITS))
    everything = _pinned(ae_artifact, rename={"encoder.": ""}, freeze=["fc1.", "out."])
    with pytest.raises(errors.TrainingError, match="every parameter"):
        apply_transfer(everything, build_model(everything, DIGITS))


def _submit(spec, models):
    return check_submission(spec, {}, None, models)


def test_submission_pins_the_registered_artifact(ae_artifact):
    asked = []

    def models(name, version):
        asked.append((name, version))
        return str(ae_artifact) if name == "ae" else None
    full = _submit(_clf({"model": "ae", "rename": {"encoder.": ""}}), models)
    assert full.model.transfer.artifact_path == str(ae_artifact) and asked == [("ae", 0)]


@pytest.mark.parametrize("transfer,field,text", [
    ({"model": "nope"}, "spec.model.transfer.model", "not registered"),
    ({"model": "ae", "version": 3}, "spec.model.transfer.model", "version 3"),
    ({}, "spec.model.transfer.model", "required"),
    ({"model": "ae", "artifact_path": "/x"}, "spec.model.transfer.artifact_path",
     "set by the server"),
    ({"model": "ae", "rename": {"enc.": ""}}, "spec.model.transfer.rename", "encoder."),
    ({"model": "ae", "freeze": [""]}, "spec.model.transfer.freeze[0]", "empty"),
])
def test_submission_refusals_name_the_field(ae_artifact, transfer, field, text):
    def models(name, version):
        return str(ae_artifact) if name == "ae" and version == 0 else None
    with pytest.raises(errors.InvalidArgument) as exc:
        _submit(_clf(transfer), models)
    assert exc.value.field == field and text in str(exc.value)


def test_submission_refuses_an_unreadable_source(tmp_path):
    with pytest.raises(errors.InvalidArgument) as exc:
        _submit(_clf({"model": "ae"}), lambda n, v: str(tmp_path / "gone"))
    assert exc.value.field == "spec.model.transfer.model" and "cannot be read" in str(exc.value)


# --- label_fraction -------------------------------------------------------------------------

def test_label_fraction_subsamples_train_only_stratified_and_seeded():
    full = prepare_data(check_spec(_clf()))
    few = prepare_data(check_spec(_clf(label_fraction=0.1)))
    again = prepare_data(check_spec(_clf(label_fraction=0.1)))
    assert len(few.x_train) == int(np.ceil(0.1 * len(full.x_train)))
    assert np.array_equal(few.y_train, again.y_train)
    assert set(few.y_train.tolist()) == set(range(10))  # stratified: every class present
    assert np.array_equal(few.y_test, full.y_test) and np.array_equal(few.y_val, full.y_val)
    assert few.preprocessing == full.preprocessing  # fitted on the whole split's inputs


@pytest.mark.parametrize("fraction,text", [(0.0, "must be in (0, 1]"), (1.5, "must be in"),
                                           (0.001, "one per class")])
def test_label_fraction_refusals(fraction, text):
    with pytest.raises(errors.InvalidArgument) as exc:
        check_spec(_clf(label_fraction=fraction))
    assert exc.value.field == "spec.dataset.label_fraction" and text in str(exc.value)
