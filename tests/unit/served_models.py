"""In-memory serving of freshly trained models, for the serving unit tests."""
from __future__ import annotations

import torch
from google.protobuf import json_format

from trainserve.core.pb import spec_pb2
from trainserve.serve.signature import version_record
from trainserve.serve.testing import LocalServing
from trainserve.training.artifacts import load_artifact
from trainserve.training.loop import train
from trainserve.training.reporting import NullReporter
from trainserve.training.validate import check_spec


def serve_trained(specs: dict[str, dict], tmp_path_factory) -> LocalServing:
    """Each spec of `specs` trained for one epoch and deployed under its key (version 1)."""
    torch.manual_seed(0)
    local = LocalServing(loader=load_artifact)
    for name, d in specs.items():
        spec = check_spec(json_format.ParseDict({**d, "training": {"epochs": 1}},
                                                spec_pb2.JobSpec()))
        result = train(spec, tmp_path_factory.mktemp(name), NullReporter())
        assert result.status == "succeeded", result
        meta = load_artifact(result.artifact_dir).meta
        local.models.put(version_record(name, 1, meta, str(result.artifact_dir)))
        local.deploy(name, name, 1)
    return local
