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
    return parse_spec(read_spec_doc(path), str(path))


def read_spec_doc(path: str | Path):
    """The document of a YAML or JSON spec file, as read (`parse_spec` checks it)."""
    import yaml

    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InvalidArgument(f"no such file: {path}") from None
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{path} is not valid YAML/JSON: {exc}") from None


def parse_spec(doc, source: str = "spec") -> spec_pb2.JobSpec:
    """Map a dict onto JobSpec; unknown keys and wrong types name their field path."""
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{source} must be a mapping of spec fields", field="spec")
    _check_space_values(doc.get("search"))  # before the types: its message says more
    doc = _check_keys(doc, spec_pb2.JobSpec.DESCRIPTOR, "spec")
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
    """Validate keys and value types recursively (protobuf's own errors name no path: "hidden:
    8" must read "spec.model.mlp.hidden: expected a list of integers, got 8") and turn
    YAML's empty values (`lenet5:` with nothing after it) into empty messages."""
    fields = {f.name: f for f in desc.fields} | {f.json_name: f for f in desc.fields}
    out = {}
    for key, value in doc.items():
        field = fields.get(key)
        if field is None:
            raise InvalidArgument(unknown_key_message(desc, key), field=f"{path}.{key}")
        out[key] = _check_field(field, value, f"{path}.{field.name}")
    return out


def _check_field(field, value, path: str):
    """`value` checked against `field` (a list for a repeated field, a mapping for a map or
    a message, a value of the scalar's kind); returned with empty messages filled in."""
    if _is_map(field):
        if not isinstance(value, dict):
            raise InvalidArgument(f"expected a mapping, got {_shown(value)}", field=path)
        item = field.message_type.fields_by_name["value"]
        return {k: _check_item(item, v, f'{path}["{k}"]') for k, v in value.items()}
    if _is_repeated(field):
        if not isinstance(value, list):
            raise InvalidArgument(f"expected a list of {_kind(field, plural=True)}, got "
                                  f"{_shown(value)}", field=path)
        return [_check_item(field, v, f"{path}[{i}]") for i, v in enumerate(value)]
    return _check_item(field, value, path)


def _check_item(field, value, path: str):
    """One value of `field`'s type (one item of a list or a map)."""
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        value = {} if value is None else value
        if not isinstance(value, dict):
            raise InvalidArgument(f"expected a mapping, got {_shown(value)}", field=path)
        return _check_keys(value, field.message_type, path)
    if not _scalar_ok(field, value):
        raise InvalidArgument(f"expected {_kind(field)}, got {_shown(value)}", field=path)
    return value


_INTEGERS = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT32,
             FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64,
             FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_FIXED64,
             FieldDescriptor.TYPE_SFIXED32, FieldDescriptor.TYPE_SFIXED64}
_FLOATS = {FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE}


def _scalar_ok(field, value) -> bool:
    """Whether proto3's JSON mapping takes `value` for `field` (numbers may be strings)."""
    t = field.type
    if t == FieldDescriptor.TYPE_BOOL:
        return isinstance(value, bool)
    if t in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
        return isinstance(value, str)
    if t == FieldDescriptor.TYPE_ENUM:
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, str) and value in field.enum_type.values_by_name)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return False
    if t in _INTEGERS:
        return _parses(int, value) and float(value) == int(float(value))
    return t not in _FLOATS or _parses(float, value)


def _parses(kind, value) -> bool:
    try:
        kind(value) if not isinstance(value, str) or kind is float else int(value)
    except (TypeError, ValueError, OverflowError):
        return False
    return True


def _kind(field, plural: bool = False) -> str:
    """What `field` takes, in words: "an integer" ("integers" with `plural`)."""
    t = field.type
    if t == FieldDescriptor.TYPE_ENUM:
        names = ", ".join(field.enum_type.values_by_name)
        return f"names among {names}" if plural else f"one of {names}"
    words = {FieldDescriptor.TYPE_BOOL: ("true or false", "true or false values"),
             FieldDescriptor.TYPE_STRING: ("a string", "strings"),
             FieldDescriptor.TYPE_BYTES: ("a string", "strings"),
             FieldDescriptor.TYPE_MESSAGE: ("a mapping", "mappings")}
    single, many = words.get(t, ("an integer", "integers") if t in _INTEGERS
                             else ("a number", "numbers"))
    return many if plural else single


def _shown(value) -> str:
    """`value` as the user wrote it in YAML/JSON: 8, 'yes', [1, 2], a mapping."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def unknown_key_message(desc, key: str) -> str:
    if desc.full_name == "trainserve.v1.ModelSpec":
        known = ", ".join(f.name for f in desc.oneofs_by_name["arch"].fields)
        return f"unknown architecture {key!r}; known architectures: {known}"
    known = ", ".join(f.name for f in desc.fields)
    return f"unknown field {key!r}; known fields: {known}"


def _is_repeated(field) -> bool:
    return field.is_repeated


def _is_map(field) -> bool:
    return (_is_repeated(field) and field.message_type is not None
            and field.message_type.GetOptions().map_entry)


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
