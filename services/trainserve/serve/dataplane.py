"""The inference data plane, independent of any transport.

REST and gRPC adapters turn wire messages into the types below (tensors as numpy arrays of
their declared OIP datatype) and back; `ModelSignature` checks a request against what the
model accepts. Every problem with a request raises `errors.InvalidArgument` whose message
names what was expected, so that both transports answer 400 / INVALID_ARGUMENT, never 500.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from trainserve.core.errors import InvalidArgument
from trainserve.core.oip import numpy_dtype
from trainserve.serve.task_io import ParamSpec, check_parameters

# Tensor names, shared with `serve.signature.io_specs` (ModelVersion.inputs / outputs).
INPUT = "input"
PROBABILITIES, LABEL, CLASS_NAME, PREDICTION = "probabilities", "label", "class_name", "prediction"
RECONSTRUCTION, LATENT = "reconstruction", "latent"

# numpy kinds that JSON values of each datatype family may decode to.
_JSON_KINDS = {"b": "b", "u": "iu", "i": "iu", "f": "iuf"}


# ---------------------------------------------------------------------------------- types


@dataclass
class InferInput:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class RequestedOutput:
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class InferRequest:
    inputs: list[InferInput]
    # Empty: every output of the model.
    outputs: list[RequestedOutput] = field(default_factory=list)
    id: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class InferOutput:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray


@dataclass
class InferResponse:
    model_name: str
    model_version: str
    outputs: list[InferOutput]
    id: str = ""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    # -1 marks a variable dimension; the first one is the batch.
    shape: tuple[int, ...]
    # Sent only when a request names it (`attention`); never among the default outputs.
    optional: bool = False

    def describe(self) -> str:
        return f"{self.datatype} {list(self.shape)}"


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def check_shape(shape: Any, where: str) -> tuple[int, ...]:
    """A declared tensor shape: a list of non-negative integers."""
    if not isinstance(shape, (list, tuple)) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InvalidArgument(f"{where}: shape must be a list of non-negative integers, "
                              f"got {shape!r}")
    return tuple(int(d) for d in shape)


def _count(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def decode_json(name: str, datatype: str, shape: tuple[int, ...], data: Any) -> np.ndarray:
    """The `data` of a JSON tensor, flat or nested in row-major order, as an array of `shape`."""
    dtype = numpy_dtype(datatype)
    where = f"input {name!r}"
    if datatype == "BYTES":
        arr = _decode_json_bytes(where, data)
    else:
        try:
            arr = np.asarray(data)
        except (ValueError, TypeError):  # ragged nesting
            raise InvalidArgument(f"{where}: data is not a regular (rectangular) array of "
                                  f"numbers") from None
        allowed = _JSON_KINDS[dtype.kind]
        if arr.size and arr.dtype.kind not in allowed:
            what = {"b": "true/false", "iu": "integers", "iuf": "numbers"}[allowed]
            raise InvalidArgument(f"{where}: datatype {datatype} needs {what} as data")
        if dtype.kind in "iu" and arr.size and (
                arr.min() < np.iinfo(dtype).min or arr.max() > np.iinfo(dtype).max):
            raise InvalidArgument(f"{where}: a value is out of range for {datatype}")
    if arr.size != _count(shape):
        raise InvalidArgument(f"{where}: shape {list(shape)} holds {_count(shape)} values, "
                              f"but data has {arr.size}")
    return arr.astype(dtype, copy=False).reshape(shape)


def _decode_json_bytes(where: str, data: Any) -> np.ndarray:
    flat: list[bytes] = []

    def walk(x: Any) -> None:
        if isinstance(x, list):
            for item in x:
                walk(item)
        elif isinstance(x, str):
            flat.append(x.encode("utf-8"))
        else:
            raise InvalidArgument(f"{where}: BYTES data must be strings")

    walk(data)
    arr = np.empty(len(flat), dtype=object)
    arr[:] = flat
    return arr


def decode_raw(name: str, datatype: str, shape: tuple[int, ...], raw: bytes) -> np.ndarray:
    """Raw little-endian tensor bytes (REST binary extension, gRPC raw contents)."""
    dtype = numpy_dtype(datatype)
    where = f"input {name!r}"
    n = _count(shape)
    if datatype == "BYTES":
        items = _split_bytes(where, raw)
        if len(items) != n:
            raise InvalidArgument(f"{where}: shape {list(shape)} holds {n} values, "
                                  f"but the raw data has {len(items)}")
        arr = np.empty(n, dtype=object)
        arr[:] = items
        return arr.reshape(shape)
    if len(raw) != n * dtype.itemsize:
        raise InvalidArgument(
            f"{where}: shape {list(shape)} of {datatype} needs {n * dtype.itemsize} bytes, "
            f"got {len(raw)}")
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(shape)


def _split_bytes(where: str, raw: bytes) -> list[bytes]:
    """BYTES elements, each a 4-byte little-endian length followed by that many bytes."""
    items, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise InvalidArgument(f"{where}: truncated BYTES element length")
        (size,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + size > len(raw):
            raise InvalidArgument(f"{where}: truncated BYTES element")
        items.append(bytes(raw[pos:pos + size]))
        pos += size
    return items


def encode_raw(arr: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(b)) + b for b in (_as_bytes(x) for x in arr.flat))
    dtype = numpy_dtype(datatype).newbyteorder("<")
    return np.ascontiguousarray(arr, dtype=dtype).tobytes()


def to_json_data(arr: np.ndarray, datatype: str) -> list:
    """Flat, row-major JSON values of a tensor."""
    if datatype == "BYTES":
        return [_as_bytes(x).decode("utf-8", "replace") for x in arr.flat]
    return arr.reshape(-1).tolist()


def _as_bytes(x: Any) -> bytes:
    return x if isinstance(x, bytes) else str(x).encode("utf-8")


# ------------------------------------------------------------------------------ signature


@dataclass(frozen=True)
class ModelSignature:
    """What a model accepts and returns, and the validation of requests against it.

    `forms`, when set, lists alternative requests: each input name with the outputs it
    produces; a request then sends exactly one of those inputs (a VAE: `input` to reconstruct,
    `num_samples` to generate). `parameters` are the request parameters the model reads;
    `check` runs task-specific value checks on the input arrays (see `serve.task_io`).
    """

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int = 1024
    forms: tuple[tuple[str, tuple[str, ...]], ...] = ()
    parameters: tuple[ParamSpec, ...] = ()
    check: Callable[[dict[str, np.ndarray]], None] | None = field(default=None, compare=False)

    def expected(self) -> str:
        """E.g. `input 'input' FP32 [-1, 4]`, for error messages."""
        sep = "; or " if self.forms else "; "
        return sep.join(f"input {s.name!r} {s.describe()}" for s in self.inputs)

    def validate_inputs(self, request: InferRequest) -> dict[str, np.ndarray]:
        """The request's input arrays by name, checked against the signature."""
        given = {t.name: t for t in request.inputs}
        if len(given) != len(request.inputs):
            raise InvalidArgument("an input name appears twice")
        wanted = self._wanted_inputs(given)
        if not wanted or set(given) != {s.name for s in wanted}:
            got = ", ".join(repr(n) for n in given) or "none"
            which = "one of " if self.forms else ""
            raise InvalidArgument(f"got inputs {got}; the model expects {which}"
                                  f"{self.expected()}")
        arrays = {s.name: self._check_tensor(s, given[s.name]) for s in wanted}
        batches = {a.shape[0] for a in arrays.values()}
        if len(batches) > 1:
            raise InvalidArgument(f"inputs disagree on the batch size: {sorted(batches)}")
        if self.check is not None:
            self.check(arrays)
        return arrays

    def _wanted_inputs(self, given: dict[str, InferInput]) -> list[TensorSpec]:
        """The inputs a request must send: all of them, or the one form it picked (none when
        it picks several, so that the request is refused)."""
        if not self.forms:
            return list(self.inputs)
        picked = [s for s in self.inputs if s.name in given]
        return picked if len(picked) == 1 else []

    def validate_parameters(self, request: InferRequest) -> dict[str, Any]:
        """The request parameters the model reads, checked, with their defaults."""
        return check_parameters(self.parameters, request.parameters)

    def _check_tensor(self, spec: TensorSpec, t: InferInput) -> np.ndarray:
        where = f"input {spec.name!r}"
        if t.datatype != spec.datatype:
            raise InvalidArgument(f"{where}: datatype {t.datatype}, expected {spec.describe()}")
        shape = tuple(t.shape)
        fits = len(shape) == len(spec.shape) and all(
            want in (-1, got) for want, got in zip(spec.shape, shape))
        if not fits:
            raise InvalidArgument(
                f"{where}: shape {list(shape)} does not match the expected {spec.describe()}")
        if not 1 <= shape[0] <= self.max_batch_size:
            raise InvalidArgument(f"{where}: batch size {shape[0]} is outside 1.."
                                  f"{self.max_batch_size} (expected {spec.describe()})")
        return t.data

    def select_outputs(self, requested: list[RequestedOutput],
                       inputs: Iterable[str] = ()) -> list[TensorSpec]:
        """The outputs to return: those requested, in request order, or all that are not
        optional; with `forms`, those the request's `inputs` produce (and the optional
        ones, which every form produces)."""
        by_name = {s.name: s for s in self.outputs}
        forms = dict(self.forms)
        produced = [n for name in inputs for n in forms.get(name, ())]
        if produced:
            by_name = {n: s for n, s in by_name.items() if n in produced or s.optional}
        if not requested:
            return [s for s in by_name.values() if not s.optional]
        selected = []
        for out in requested:
            if out.name not in by_name:
                known = ", ".join(repr(n) for n in by_name)
                whose = f"a request with input {list(inputs)[0]!r}" if produced else "the model"
                raise InvalidArgument(f"unknown output {out.name!r}; {whose} has {known}")
            if "classification" in out.parameters:
                raise InvalidArgument(f"output {out.name!r}: the classification extension is "
                                      "not supported; request 'probabilities' and 'label'")
            selected.append(by_name[out.name])
        return selected


def build_response(model_name: str, model_version: str, request_id: str,
                   specs: list[TensorSpec], values: dict[str, np.ndarray]) -> InferResponse:
    """The response carrying `values` (computed outputs by name) for the selected `specs`."""
    outputs = []
    for spec in specs:
        arr = values[spec.name]
        if spec.datatype != "BYTES":
            arr = np.asarray(arr, dtype=numpy_dtype(spec.datatype))
        outputs.append(InferOutput(spec.name, spec.datatype, tuple(arr.shape), arr))
    return InferResponse(model_name, model_version, outputs, request_id)
