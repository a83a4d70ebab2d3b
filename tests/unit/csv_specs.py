"""Job specs that pin an uploaded CSV as submission does, for the clinical-table unit tests."""
from __future__ import annotations

import hashlib

import pytest

from trainserve.core.errors import InvalidArgument
from trainserve.core.pb import spec_pb2
from trainserve.training import describe as d
from trainserve.training.userdata import schema_for_job
from trainserve.training.validate import check_spec


def pinned_spec(path, *, hidden: int, epochs: int, columns=None, **dataset):
    """A JobSpec pinning `path` as submission does (hash, path, the schema from upload): an
    MLP with one hidden layer of `hidden`, batch 16; `columns` the per-column options."""
    spec = spec_pb2.JobSpec(dataset=spec_pb2.DatasetSpec(name="mine", **dataset),
                            model=spec_pb2.ModelSpec(mlp=spec_pb2.MLPSpec(hidden=[hidden])),
                            training=spec_pb2.TrainingSpec(epochs=epochs, batch_size=16))
    for name, fields in (columns or {}).items():
        spec.dataset.columns[name].CopyFrom(spec_pb2.TableColumnSpec(**fields))
    schema = d.describe(path, "csv")[0]
    spec.dataset.uploaded.CopyFrom(spec_pb2.UploadedContent(
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(), format="csv", path=str(path),
        schema=schema_for_job(schema, spec.dataset.target_column)))
    return spec


def refusal(spec) -> InvalidArgument:
    """The InvalidArgument `check_spec` raises for `spec`."""
    with pytest.raises(InvalidArgument) as e:
        check_spec(spec)
    return e.value
