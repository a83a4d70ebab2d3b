"""Job specs: YAML/JSON documents mapped onto `trainserve.v1.JobSpec` by field name, and the
server-side validation every submission passes (one set of field paths in every error)."""
from __future__ import annotations

from pathlib import Path

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

from trainserve.core.errors import InvalidArgument
from trainserve.core.pb import spec_pb2
from trainserve.core.tenancy import NAME_RE



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


def check_scaling(scaling: spec_pb2.ScalingSpec, cluster: dict) -> None:
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
