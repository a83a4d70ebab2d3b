"""Search spaces: `SearchSpec.space` entries, parsed, checked against the base spec, turned into
Ray Tune's domains and applied back onto the base spec. No Ray import at module level.

An entry maps a field path of the base `JobSpec` (e.g. "optimizer.lr") to a distribution
written as a call: `choice([..])`, `grid([..])`, `uniform(a, b)`, `loguniform(a, b)`,
`randint(a, b)`, `quniform(a, b, q)`. Arguments are literals (parsed with `ast.literal_eval`,
never evaluated as code). Tune sees `choice` and `grid` as the *index* of a value, so values
may be lists or objects that searchers such as Optuna cannot hold; `decode` maps indices back.
"""
from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

from trainserve.core.errors import InvalidArgument
from trainserve.core.pb import spec_pb2

_CALL = re.compile(r"^\s*([a-z_]+)\s*\((.*)\)\s*$", re.S)
MAX_VALUES = 1000
# Fields a trial may not change: they name the job or are set by the server.
FORBIDDEN_PREFIXES = ("search", "name", "deploy", "description", "labels", "dataset.uploaded",
                      "model.transfer.artifact_path")


@dataclass(frozen=True)
class Axis:
    """One parsed entry: `kind` and its arguments (`values` for choice/grid, else bounds)."""
    path: str
    kind: str
    values: tuple = ()
    low: float = 0.0
    high: float = 0.0
    q: float = 0.0

    @property
    def categorical(self) -> bool:
        return self.kind in ("choice", "grid")

    def candidates(self) -> list[Any]:
        """Values every trial's spec must accept: all of a categorical axis, else the bounds."""
        if self.categorical:
            return list(self.values)
        if self.kind == "randint":
            return [int(self.low), int(self.high) - 1]
        return [self.low, self.high]


def field_of(path: str) -> str:
    return f'spec.search.space["{path}"]'


def parse_axis(path: str, text: str) -> Axis:
    """Parse one entry; `InvalidArgument` naming `spec.search.space["<path>"]` if malformed."""
    field = field_of(path)
    m = _CALL.match(text or "")
    if not m:
        raise InvalidArgument(f"expected a distribution such as choice([...]) or "
                              f"loguniform(1e-4, 1e-1), got {text!r}", field=field)
    kind, args = m.group(1), _literal_args(m.group(2), field)
    parser = _PARSERS.get(kind)
    if parser is None:
        raise InvalidArgument(f"unknown distribution {kind!r}; known: "
                              f"{', '.join(sorted(_PARSERS))}", field=field)
    return parser(path, args, field)


def _literal_args(text: str, field: str) -> tuple:
    try:
        value = ast.literal_eval(f"({text},)") if text.strip() else ()
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise InvalidArgument(f"arguments must be literals (numbers, strings, lists), got "
                              f"{text!r}", field=field) from None
    return tuple(value)


def _values_axis(path: str, kind: str, args: tuple, field: str) -> Axis:
    if len(args) != 1 or not isinstance(args[0], (list, tuple)):
        raise InvalidArgument(f"{kind} takes one list of values, e.g. {kind}([32, 64])",
                              field=field)
    values = tuple(args[0])
    if not values:
        raise InvalidArgument(f"{kind} needs at least one value, got an empty list", field=field)
    if len(values) > MAX_VALUES:
        raise InvalidArgument(f"{kind} takes at most {MAX_VALUES} values", field=field)
    return Axis(path, kind, values=values)


def _bounds(path: str, kind: str, args: tuple, field: str, n: int = 2) -> Axis:
    if len(args) != n or not all(_is_number(a) for a in args):
        shape = "low, high, q" if n == 3 else "low, high"
        raise InvalidArgument(f"{kind} takes {n} numbers ({shape}), got {list(args)}",
                              field=field)
    low, high = float(args[0]), float(args[1])
    if not low < high:
        raise InvalidArgument(f"{kind} needs low < high, got low {args[0]} > = high {args[1]}"
                              .replace("> =", ">="), field=field)
    if kind == "loguniform" and low <= 0:
        raise InvalidArgument(f"loguniform needs low > 0 (it samples log(x)), got {args[0]}",
                              field=field)
    if kind == "randint" and not all(float(a).is_integer() for a in args):
        raise InvalidArgument(f"randint takes integer bounds, got {list(args)}", field=field)
    q = float(args[2]) if n == 3 else 0.0
    if n == 3 and not q > 0:
        raise InvalidArgument(f"quniform needs q > 0, got {args[2]}", field=field)
    return Axis(path, kind, low=low, high=high, q=q)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


_PARSERS = {
    "choice": lambda p, a, f: _values_axis(p, "choice", a, f),
    "grid": lambda p, a, f: _values_axis(p, "grid", a, f),
    "uniform": lambda p, a, f: _bounds(p, "uniform", a, f),
    "loguniform": lambda p, a, f: _bounds(p, "loguniform", a, f),
    "randint": lambda p, a, f: _bounds(p, "randint", a, f),
    "quniform": lambda p, a, f: _bounds(p, "quniform", a, f, n=3),
}


def parse_space(search: spec_pb2.SearchSpec) -> list[Axis]:
    """Every entry of `search.space`, parsed, in path order (deterministic)."""
    if not search.space:
        raise InvalidArgument("a search needs at least one entry, e.g. "
                              "optimizer.lr: loguniform(1e-4, 1e-1)", field="spec.search.space")
    return [parse_axis(path, search.space[path]) for path in sorted(search.space)]


# --- paths in the base spec ----------------------------------------------------------------

def check_path(base: spec_pb2.JobSpec, path: str) -> None:
    """`path` must name a field of the JobSpec schema, through messages the base spec uses
    (a oneof member it did not choose, e.g. model.cnn under an mlp, is refused)."""
    field = field_of(path)
    if any(path == p or path.startswith(p + ".") for p in FORBIDDEN_PREFIXES):
        raise InvalidArgument(f"{path!r} cannot vary between trials", field=field)
    msg = base
    parts = path.split(".")
    for i, name in enumerate(parts):
        fd = msg.DESCRIPTOR.fields_by_name.get(name)
        where = ".".join(parts[:i]) or "the spec"
        if fd is None:
            known = ", ".join(sorted(msg.DESCRIPTOR.fields_by_name))
            raise InvalidArgument(f"{where} has no field {name!r}; known: {known}", field=field)
        oneof = fd.containing_oneof
        if oneof is not None and msg.WhichOneof(oneof.name) not in (None, name):
            raise InvalidArgument(f"the base spec uses {where}.{msg.WhichOneof(oneof.name)}, "
                                  f"not {name!r}: search that one's fields, or choose the "
                                  f"whole {where} with choice([{{...}}, ...])", field=field)
        last = i == len(parts) - 1
        if not last:
            if fd.type != FieldDescriptor.TYPE_MESSAGE or _is_repeated(fd):
                raise InvalidArgument(f"{'.'.join(parts[:i + 1])} is a value, it has no "
                                      f"field {parts[i + 1]!r}", field=field)
            msg = getattr(msg, name)


def _is_repeated(fd) -> bool:
    return fd.is_repeated


def apply_values(base: spec_pb2.JobSpec, values: dict[str, Any]) -> spec_pb2.JobSpec:
    """A copy of `base` (without `search`) with each path set to its value. Raises
    `InvalidArgument` naming the entry when a value does not fit its field's type."""
    out = spec_pb2.JobSpec()
    out.CopyFrom(base)
    out.ClearField("search")
    for path in sorted(values):
        _set(out, path, values[path])
    return out


def _set(spec: spec_pb2.JobSpec, path: str, value: Any) -> None:
    *parents, name = path.split(".")
    msg = spec
    for p in parents:
        msg = getattr(msg, p)
    fd = msg.DESCRIPTOR.fields_by_name[name]
    try:
        if fd.type == FieldDescriptor.TYPE_MESSAGE and not _is_repeated(fd):
            target = getattr(msg, name)
            target.Clear()
            json_format.ParseDict(value, target)
            target.SetInParent()
        elif _is_repeated(fd):  # lists and maps replace the base's
            msg.ClearField(name)
            json_format.ParseDict({fd.json_name: value}, msg)
        else:
            _set_scalar(msg, fd, value)
    except (json_format.ParseError, TypeError, ValueError) as exc:
        raise InvalidArgument(f"value {json.dumps(value)} does not fit {path}: {exc}",
                              field=field_of(path)) from None


def _set_scalar(msg, fd, value) -> None:
    if fd.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64) and \
            isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{value} is not an integer")
        value = int(value)
    if fd.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT) and \
            isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    setattr(msg, fd.name, value)
