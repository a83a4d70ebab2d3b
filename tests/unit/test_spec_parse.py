import pytest

from trainserve.core.errors import InvalidArgument
from trainserve.core.spec import load_spec_file, parse_spec


def test_yaml_maps_by_field_name(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("dataset: {name: digits}\nmodel:\n  lenet5:\ntraining: {epochs: 3, batch_size: 64}\n"
                    "scaling: {num_workers: 2, cpusPerWorker: 1}\n")
    spec = load_spec_file(path)
    assert spec.dataset.name == "digits"
    assert spec.model.WhichOneof("arch") == "lenet5"
    assert spec.training.epochs == 3 and spec.scaling.cpus_per_worker == 1


def test_unknown_architecture_lists_known():
    with pytest.raises(InvalidArgument) as e:
        parse_spec({"model": {"resnet9000": {}}})
    assert e.value.field == "spec.model.resnet9000"
    assert "mlp" in e.value.message and "lenet5" in e.value.message


def test_unknown_field_names_its_path():
    with pytest.raises(InvalidArgument) as e:
        parse_spec({"training": {"epochz": 3}})
    assert e.value.field == "spec.training.epochz"
    assert "epochs" in e.value.message


def test_wrong_type_is_invalid_argument():
    with pytest.raises(InvalidArgument, match="epochs"):
        parse_spec({"training": {"epochs": "many"}})


def test_not_a_mapping():
    with pytest.raises(InvalidArgument):
        parse_spec(["a", "b"])


def test_missing_file():
    with pytest.raises(InvalidArgument, match="no such file"):
        load_spec_file("/nonexistent/spec.yaml")


@pytest.mark.parametrize("deploy,field", [({"max_batch_size": 5000}, "spec.deploy.max_batch_size"),
                                          ({"batch_wait_ms": -1}, "spec.deploy.batch_wait_ms")])
def test_deploy_batching_is_checked_at_submission(deploy, field):
    from trainserve.jobs.admission import check_submission
    with pytest.raises(InvalidArgument) as info:
        check_submission(parse_spec({"dataset": {"name": "xor"}, "model": {"mlp": {}},
                                     "deploy": deploy}))
    assert info.value.field == field
