"""Job specs: YAML/JSON documents mapped onto `trainserve.v1.JobSpec` by field name, and the
server-side validation every submission passes (one set of field paths in every error)."""
from __future__ import annotations

from pathlib import Path

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

from trainserve.errors import InvalidArgument
from trainserve.pb import spec_pb2
from trainserve.tenancy import NAME_RE



def check_name(name: str, field: str) -> None:
    """Names of models, endpoints and datasets: they appear in URLs and Redis keys."""
    if not NAME_RE.fullmatch(name):  # whole string: `$` would let "prod\n" through
        raise InvalidArgument("must be lowercase letters, digits, '.', '_' or '-' "
                              "(at most 63, starting with a letter or digit)", field=field)


def load_spec_file(path: str | Path) -> spec_pb2.JobSpec:
    """Read a YAML or JSON spec file."""
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InvalidArgument(f"no such file: {path}") from None
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{path} is not valid YAML/JSON: {exc}") from None
    return parse_spec(doc, str(path))


def parse_spec(doc, source: str = "spec") -> spec_pb2.JobSpec:
    """Map a dict onto JobSpec; unknown keys and wrong types name their field path."""
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{source} must be a mapping of spec fields", field="spec")
    doc = _check_keys(doc, spec_pb2.JobSpec.DESCRIPTOR, "spec")
    _check_space_values(doc.get("search"))
    try:
        return json_format.ParseDict(doc, spec_pb2.JobSpec())
    except json_format.ParseError as exc:
        raise InvalidArgument(_clean_parse_error(str(exc)), field="spec") from None


def _check_space_values(search) -> None:
    """Search-space entries are strings; YAML's flow style (`{lr: loguniform(1e-4, 1e-1)}`)
    splits them at the comma, which protobuf would report without a path."""
    space = search.get("space") if isinstance(search, dict) else None
    items = list(space.items()) if isinstance(space, dict) else []
    cut = [(p, v) for p, v in items if isinstance(v, str) and v.count("(") != v.count(")")]
    for path, value in cut + [(p, v) for p, v in items if not isinstance(v, str)]:
        raise InvalidArgument(
            f"expected a distribution as text, e.g. \"loguniform(1e-4, 1e-1)\", got "
            f"{value!r}; inside YAML braces {{...}} quote it (a comma ends a value there)",
            field=f'spec.search.space["{path}"]')


def _check_keys(doc: dict, desc, path: str) -> dict:
    """Validate keys recursively (protobuf's own error names no path) and turn YAML's empty
    values (`lenet5:` with nothing after it) into empty messages."""
    fields = {f.name: f for f in desc.fields} | {f.json_name: f for f in desc.fields}
    out = {}
    for key, value in doc.items():
        field = fields.get(key)
        if field is None:
            raise InvalidArgument(_unknown_key_message(desc, key), field=f"{path}.{key}")
        is_msg = field.type == FieldDescriptor.TYPE_MESSAGE and not _is_map(field)
        if is_msg and value is None:
            value = {}
        if is_msg and not _is_repeated(field):
            if not isinstance(value, dict):
                raise InvalidArgument("expected a mapping", field=f"{path}.{field.name}")
            value = _check_keys(value, field.message_type, f"{path}.{field.name}")
        out[key] = value
    return out


def _unknown_key_message(desc, key: str) -> str:
    if desc.full_name == "trainserve.v1.ModelSpec":
        known = ", ".join(f.name for f in desc.oneofs_by_name["arch"].fields)
        return f"unknown architecture {key!r}; known architectures: {known}"
    known = ", ".join(f.name for f in desc.fields)
    return f"unknown field {key!r}; known fields: {known}"


def _is_repeated(field) -> bool:
    return field.is_repeated


def _is_map(field) -> bool:
    return _is_repeated(field) and field.message_type.GetOptions().map_entry


def _clean_parse_error(text: str) -> str:
    return text.replace("trainserve.v1.", "")


def architecture(spec: spec_pb2.JobSpec) -> str:
    return spec.model.WhichOneof("arch") or ""


def check_submission(spec: spec_pb2.JobSpec, cluster: dict | None = None,
                     uploaded=None, models=None) -> spec_pb2.JobSpec:
    """Validate a submitted spec and return it with every default applied.

    `cluster` is the resources the dispatcher last saw ({"CPU": 2.0, "GPU": 0.0}); a job that
    could never fit is refused now rather than left queued forever. `uploaded(name)` returns
    the `UploadedContent` of a user dataset of that name, or None. `models(name, version)`
    returns the artifact directory of a registered model version (0: latest), or None.
    """
    from trainserve.train.validate import check_spec

    spec = _pin_uploaded(spec, uploaded)
    spec = _pin_transfer(spec, models)
    full = check_spec(spec)
    if full.model.HasField("transfer"):
        from trainserve.train.transfer import check_shapes
        check_shapes(full)
    if not full.name:
        full.name = f"{full.dataset.name}-{architecture(full)}".replace("_", "-")
    check_name(full.name, "spec.name")
    _check_scaling(full.scaling, cluster or {})
    _check_batch_per_worker(full)
    if full.HasField("search"):
        from trainserve.tune.validate import check_search
        check_search(full, check_spec)
    from trainserve.train.budget import check_model_budget
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
    from trainserve.train.datasets import DATASETS

    name = spec.dataset.name
    if spec.dataset.HasField("uploaded"):
        raise InvalidArgument("set by the server; name the dataset instead",
                              field="spec.dataset.uploaded")
    if not name or name in DATASETS.names() or uploaded is None:
        return spec
    content = uploaded(name)
    if content is None:
        return spec  # check_spec reports the unknown name with the known ones
    from trainserve.train.userdata import schema_for_job

    out = spec_pb2.JobSpec()
    out.CopyFrom(spec)
    out.dataset.uploaded.CopyFrom(content)
    if content.HasField("schema"):
        out.dataset.uploaded.schema.CopyFrom(
            schema_for_job(content.schema, spec.dataset.target_column))
    return out


def _pin_transfer(spec: spec_pb2.JobSpec, models) -> spec_pb2.JobSpec:
    """Point `model.transfer` at the registered version's artifact now (like a dataset's
    upload), and check what the source's header says (`train.transfer.check_source`)."""
    if not spec.model.HasField("transfer"):
        return spec
    from trainserve.train import transfer

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
    from trainserve.train.zoo import uses_batch_norm

    workers, batch = spec.scaling.num_workers, spec.training.batch_size
    per_rank = 2 if uses_batch_norm(spec.model) else 1
    if batch < per_rank * workers:
        raise InvalidArgument(
            f"{batch} is too small for {workers} workers: each worker needs at least "
            f"{per_rank} sample(s) of every batch", field="spec.training.batch_size")


def _check_scaling(scaling: spec_pb2.ScalingSpec, cluster: dict) -> None:
    if not scaling.HasField("num_workers"):
        scaling.num_workers = 1
    if not scaling.HasField("cpus_per_worker"):
        scaling.cpus_per_worker = 1.0
    if scaling.num_workers < 1:
        raise InvalidArgument("must be at least 1", field="spec.scaling.num_workers")
    if scaling.num_workers > 256:
        raise InvalidArgument("must be at most 256", field="spec.scaling.num_workers")
    if not 0 < scaling.cpus_per_worker <= 1024:
        raise InvalidArgument("must be > 0", field="spec.scaling.cpus_per_worker")
    need_cpu = scaling.num_workers * scaling.cpus_per_worker
    have_cpu = cluster.get("CPU")
    if have_cpu is not None and need_cpu > have_cpu + 1e-9:
        raise InvalidArgument(
            f"needs {need_cpu:g} CPUs ({scaling.num_workers} workers × "
            f"{scaling.cpus_per_worker:g} CPU) but the cluster has {have_cpu:g} CPUs in all",
            field="spec.scaling.num_workers")
    have_gpu = cluster.get("GPU")
    if scaling.use_gpu and have_gpu is not None and scaling.num_workers > have_gpu:
        raise InvalidArgument(
            f"needs {scaling.num_workers} GPUs but the cluster has {have_gpu:g}",
            field="spec.scaling.use_gpu")
