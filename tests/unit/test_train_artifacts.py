"""Artifacts: meta.json as documented, safetensors weights, identical outputs after loading."""
import json

import numpy as np
import pytest
import torch
from google.protobuf import json_format

from trainserve.core.pb import spec_pb2
from trainserve.training.artifacts import META_FILE, MODEL_FILE, load_artifact, save_artifact
from trainserve.training.data import Preprocessing
from trainserve.training.datasets import DatasetInfo
from trainserve.training.validate import check_spec
from trainserve.training.zoo import build_model

META_KEYS = {"spec", "task", "class_names", "input_shape", "output_dim", "preprocessing",
             "metrics", "dataset_hash", "seed"}


def _spec(d):
    return check_spec(json_format.ParseDict(d, spec_pb2.JobSpec()))


CASES = {
    "mlp-bn": ({"dataset": {"name": "iris"}, "training": {"seed": 5},
                "model": {"mlp": {"hidden": [8, 8], "batch_norm": True, "dropout": 0.3}}},
               DatasetInfo("iris", "classification", 3, ("a", "b", "c"), (4,), 150)),
    "lenet5": ({"dataset": {"name": "digits"}, "model": {"lenet5": {"dropout": 0.5}}},
               DatasetInfo("digits", "classification", 10, tuple("0123456789"), (1, 8, 8), 1797)),
    "regression": ({"dataset": {"name": "diabetes"}, "model": {"mlp": {}}},
                   DatasetInfo("diabetes", "regression", 0, (), (10,), 442)),
}


def _trained(spec, info):
    """A model whose weights and BatchNorm statistics are not the initial ones."""
    torch.manual_seed(0)
    model = build_model(spec, info)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(16, *info.input_shape)).square().mean().backward()
        opt.step()
    if info.task == "regression":
        model.target_scale.shift.fill_(150.0)
        model.target_scale.scale.fill_(75.0)
    return model


def _pre(n):
    return Preprocessing("standard", tuple(np.linspace(0, 1, n).tolist()), (2.0,) * n)


@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip_gives_identical_outputs(tmp_path, case):
    d, info = CASES[case]
    spec = _spec(d)
    model = _trained(spec, info)
    save_artifact(tmp_path / "a", model, spec, info, _pre(info.num_features), {"m": 1.0}, "h")
    loaded = load_artifact(tmp_path / "a")
    assert not loaded.module.training
    x = torch.randn(9, *info.input_shape)
    with torch.no_grad():
        assert torch.equal(loaded.module(x), model.eval()(x))
    assert loaded.spec == spec


def test_meta_json_matches_the_documented_layout(tmp_path):
    d, info = CASES["lenet5"]
    spec = _spec(d)
    pre = _pre(64)
    save_artifact(tmp_path / "a", _trained(spec, info), spec, info, pre,
                  {"test_accuracy": 0.98, "test_r2": float("nan")}, "abc123")
    meta = json.loads((tmp_path / "a" / META_FILE).read_text())
    assert set(meta) == META_KEYS
    assert json_format.ParseDict(meta["spec"], spec_pb2.JobSpec()) == spec
    assert meta["task"] == "classification" and meta["output_dim"] == 10
    assert meta["class_names"] == list("0123456789") and meta["input_shape"] == [1, 8, 8]
    assert meta["preprocessing"] == {"kind": "standard", "shift": list(pre.shift),
                                     "scale": list(pre.scale)}
    assert meta["metrics"] == {"test_accuracy": 0.98, "test_r2": None}  # JSON has no NaN
    assert meta["dataset_hash"] == "abc123" and meta["seed"] == 0
    assert load_artifact(tmp_path / "a").preprocessing == pre


def test_weights_are_safetensors_not_pickle(tmp_path):
    d, info = CASES["mlp-bn"]
    spec = _spec(d)
    save_artifact(tmp_path / "a", _trained(spec, info), spec, info, _pre(4), {})
    raw = (tmp_path / "a" / MODEL_FILE).read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + header_len])
    assert "fc1.weight" in header and "bn1.running_mean" in header


def test_saving_again_replaces_the_artifact_and_leaves_no_temp_dirs(tmp_path):
    d, info = CASES["mlp-bn"]
    spec = _spec(d)
    save_artifact(tmp_path / "a", _trained(spec, info), spec, info, _pre(4), {"v": 1.0})
    save_artifact(tmp_path / "a", _trained(spec, info), spec, info, _pre(4), {"v": 2.0})
    assert [p.name for p in tmp_path.iterdir()] == ["a"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [META_FILE, MODEL_FILE]
    assert load_artifact(tmp_path / "a").meta["metrics"] == {"v": 2.0}
