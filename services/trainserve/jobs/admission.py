"""Admission: the server-side validation every submitted job spec passes before it is queued.

Structural checks of the spec live in the core (`core.spec`); this adds what needs the
training core's registries (architectures, datasets, losses), a search's space, the model
budget, the pinned upload or transfer source and the endpoint's serving options.
"""
from __future__ import annotations

from trainserve.core.errors import InvalidArgument
from trainserve.core.pb import spec_pb2
from trainserve.core.spec import architecture, check_name, check_scaling
from trainserve.core.tracking import check_tracking


def check_submission(spec: spec_pb2.JobSpec, cluster: dict | None = None,
                     uploaded=None, models=None) -> spec_pb2.JobSpec:
    """Validate a submitted spec and return it with every default applied.

    `cluster` is the resources the dispatcher last saw ({"CPU": 2.0, "GPU": 0.0}); a job that
    could never fit is refused now rather than left queued forever. `uploaded(name)` returns
    the `UploadedContent` of a user dataset of that name, or None. `models(name, version)`
    returns the artifact directory of a registered model version (0: latest), or None.
    """
    from trainserve.training.validate import check_spec

    spec = _pin_uploaded(spec, uploaded)
    spec = _pin_transfer(spec, models)
    full = check_spec(spec)
    if full.model.HasField("transfer"):
        from trainserve.training.transfer import check_shapes
        check_shapes(full)
    if not full.name:
        full.name = f"{full.dataset.name}-{architecture(full)}".replace("_", "-")
    check_name(full.name, "spec.name")
    check_scaling(full.scaling, cluster or {})
    check_tracking(full)
    _check_batch_per_worker(full)
    if full.HasField("search"):
        from trainserve.tune.validate import check_search
        check_search(full, check_spec)
    from trainserve.jobs.budget import check_model_budget
    check_model_budget(full)  # parameters and training memory of the whole network
    if full.HasField("deploy"):
        if not full.deploy.name:
            full.deploy.name = full.name
        check_name(full.deploy.name, "spec.deploy.name")
        _check_deploy_batching(full.deploy)
    return full


def _pin_uploaded(spec: spec_pb2.JobSpec, uploaded) -> spec_pb2.JobSpec:
    """Point a user dataset's name at its content now: later uploads under the same name must
    not change what this job trains on."""
    from trainserve.training.datasets import DATASETS

    name = spec.dataset.name
    if spec.dataset.HasField("uploaded"):
        raise InvalidArgument("set by the server; name the dataset instead",
                              field="spec.dataset.uploaded")
    if not name or name in DATASETS.names() or uploaded is None:
        return spec
    content = uploaded(name)
    if content is None:
        return spec  # check_spec reports the unknown name with the known ones
    from trainserve.training.userdata import schema_for_job

    out = spec_pb2.JobSpec()
    out.CopyFrom(spec)
    out.dataset.uploaded.CopyFrom(content)
    if content.HasField("schema"):
        out.dataset.uploaded.schema.CopyFrom(
            schema_for_job(content.schema, spec.dataset.target_column))
    return out


def _pin_transfer(spec: spec_pb2.JobSpec, models) -> spec_pb2.JobSpec:
    """Point `model.transfer` at the registered version's artifact now (like a dataset's
    upload), and check what the source's header says (`training.transfer.check_source`)."""
    if not spec.model.HasField("transfer"):
        return spec
    from trainserve.training import transfer

    out = spec_pb2.JobSpec()
    out.CopyFrom(spec)
    transfer.pin_source(out, models or (lambda name, version: None))
    transfer.check_source(out)
    return out


def _check_deploy_batching(deploy: spec_pb2.DeploySpec) -> None:
    """The endpoint's batching is checked now, not when the job ends and deploys."""
    from trainserve.registry.service import check_serving_options, serving_options_of
    try:
        check_serving_options(serving_options_of(deploy))
    except InvalidArgument as exc:
        raise InvalidArgument(exc.reason, field=exc.field.replace("options.", "spec.deploy.")) \
            from None


def _check_batch_per_worker(spec: spec_pb2.JobSpec) -> None:
    """Each DDP rank takes an equal share of a batch; batch norm needs two samples a rank."""
    from trainserve.training.zoo import uses_batch_norm

    workers, batch = spec.scaling.num_workers, spec.training.batch_size
    per_rank = 2 if uses_batch_norm(spec.model) else 1
    if batch < per_rank * workers:
        raise InvalidArgument(
            f"{batch} is too small for {workers} workers: each worker needs at least "
            f"{per_rank} sample(s) of every batch", field="spec.training.batch_size")
