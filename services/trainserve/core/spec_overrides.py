"""`--set key.path=value` on a job spec document (the dict a YAML spec file reads as), before
it is parsed: the path follows the JobSpec's fields, the value is read as a YAML scalar or flow
collection (`3`, `0.01`, `true`, `[16, 16]`, `{hidden: [8]}`), so it gets its type the way the
spec file's own values do. Checked against the schema, with the field path in every error."""
from __future__ import annotations

from typing import Any, Iterable

from google.protobuf.descriptor import FieldDescriptor

from trainserve.core.errors import InvalidArgument
from trainserve.core.pb import spec_pb2
from trainserve.core.spec import unknown_key_message

OPTION = "--set"


def apply_overrides(doc: dict, overrides: Iterable[str]) -> dict:
    """`doc` with each "key.path=value" of `overrides` set, in order (a copy; `doc` is left
    as it is). A map field takes the rest of the path as its key, so a search-space entry is
    `search.space.optimizer.lr=loguniform(1e-4, 1e-1)`."""
    out = _copy(doc)
    for text in overrides:
        path, value = _split(text)
        _set(out, spec_pb2.JobSpec.DESCRIPTOR, path.split("."), value, "spec")
    return out


def _split(text: str) -> tuple[str, str]:
    path, sep, value = text.partition("=")
    if not sep or not path or any(not part for part in path.split(".")):
        raise InvalidArgument(f"expected KEY.PATH=VALUE (e.g. training.epochs=50), got "
                              f"{text!r}", field=OPTION)
    return path.strip(), value.strip()


def _set(doc: dict, desc, parts: list[str], text: str, where: str) -> None:
    """Set `parts` (a field path below message `desc`, whose document is `doc`) to `text`."""
    field = _field(desc, parts[0], where)
    where = f"{where}.{field.name}"
    key = field.name if field.json_name not in doc else field.json_name
    if field.containing_oneof is not None:  # naming one architecture replaces another
        for other in field.containing_oneof.fields:
            if other is not field:
                doc.pop(other.name, None)
                doc.pop(other.json_name, None)
    if _is_map(field) and len(parts) > 1:
        entries = doc.get(key)
        doc[key] = entries = entries if isinstance(entries, dict) else {}
        entries[".".join(parts[1:])] = _value(field.message_type.fields_by_name["value"], text)
    elif len(parts) > 1:
        if field.type != FieldDescriptor.TYPE_MESSAGE or field.is_repeated:
            raise InvalidArgument(f"{field.name} has no fields (it is not a section)",
                                  field=f"{where}.{parts[1]}")
        child = doc.get(key)
        doc[key] = child = child if isinstance(child, dict) else {}
        _set(child, field.message_type, parts[1:], text, where)
    else:
        doc[key] = _value(field, text)


def _field(desc, name: str, where: str):
    field = desc.fields_by_name.get(name) or next(
        (f for f in desc.fields if f.json_name == name), None)
    if field is None:
        raise InvalidArgument(unknown_key_message(desc, name), field=f"{where}.{name}")
    return field


def _value(field, text: str) -> Any:
    """`text` read as YAML; a string field keeps the text itself (`name=007`, `week=3`)."""
    import yaml
    if field.type == FieldDescriptor.TYPE_STRING and not field.is_repeated:
        return text
    try:
        return yaml.safe_load(text) if text else None
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{text!r} is not a YAML value: {exc.problem or exc}",
                              field=OPTION) from None


def _is_map(field) -> bool:
    return (field.is_repeated and field.message_type is not None
            and field.message_type.GetOptions().map_entry)


def _copy(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _copy(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_copy(v) for v in doc]
    return doc
