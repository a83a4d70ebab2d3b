"""`trainserve predict`: read instances from a .npy, .csv or .json file or inline JSON and shape
them as the endpoint's input tensor (`--input`); prompts (`--text`), a sample count
(`--num-samples`) and request parameters (`--param`)."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from trainserve.core.errors import InvalidArgument


def read_input(value: str) -> tuple[str, Any]:
    """('request', dict) for a complete OIP v2 request, else ('instances', array-like).

    `value` is a path (.npy, .csv, .json; other suffixes are read as JSON) or inline JSON:
    a list of instances, {"instances": [...]} (KServe v1) or an OIP request {"inputs": [...]}.
    """
    path = Path(value)
    if _is_file(path):
        suffix = path.suffix.lower()
        if suffix == ".npy":
            return "instances", _load_npy(path)
        if suffix == ".csv":
            return "instances", _load_csv(path)
        return _from_json(_load_json(path.read_text(), str(path)))
    if value.lstrip()[:1] in ("[", "{"):
        return _from_json(_load_json(value, "--input"))
    raise InvalidArgument(f"{value!r} is neither a file nor JSON (a list of instances or an "
                          "OIP request)", field="--input")


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # e.g. inline JSON longer than a file name may be
        return False


def _load_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"not valid JSON: {exc}", field=where) from None


def _from_json(doc: Any) -> tuple[str, Any]:
    if isinstance(doc, dict) and "inputs" in doc:
        return "request", doc
    if isinstance(doc, dict) and "instances" in doc:
        return "instances", doc["instances"]
    if isinstance(doc, list):
        return "instances", doc
    raise InvalidArgument("expected a list of instances, {\"instances\": [...]} or an OIP "
                          "request {\"inputs\": [...]}", field="--input")


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)  # never unpickle user files
    except (ValueError, OSError) as exc:
        raise InvalidArgument(f"cannot read {path} as a numpy array: {exc}",
                              field="--input") from None


def _load_csv(path: Path) -> np.ndarray:
    """Rows of numbers; a first row that is not numeric is taken as a header."""
    with open(path, newline="") as f:
        rows = [row for row in csv.reader(f) if row and any(cell.strip() for cell in row)]
    if rows and not _numeric(rows[0]):
        rows = rows[1:]
    try:
        values = [[float(cell) for cell in row] for row in rows]
    except ValueError as exc:
        raise InvalidArgument(f"{path}: {exc}", field="--input") from None
    if not values or len({len(r) for r in values}) != 1:
        raise InvalidArgument(f"{path} must hold rows of numbers of equal length",
                              field="--input")
    return np.asarray(values)


def _numeric(row: list[str]) -> bool:
    try:
        [float(cell) for cell in row]
        return True
    except ValueError:
        return False


def fit_to_signature(instances: Any, metadata: dict) -> tuple[np.ndarray, str, str]:
    """(array, input name, datatype) for the endpoint's single input: flat feature rows are
    reshaped to the declared instance shape (e.g. 64 values -> [1, 8, 8]) when the counts
    agree; anything else is sent as it is and the server names the mismatch."""
    inputs = metadata.get("inputs") or []
    spec = inputs[0] if len(inputs) == 1 else {}
    name, datatype = spec.get("name", "input"), spec.get("datatype", "FP32")
    arr = np.asarray(instances)
    if arr.dtype == object:
        raise InvalidArgument("instances must be a regular (rectangular) array of numbers",
                              field="--input")
    shape = [int(d) for d in spec.get("shape", [])][1:]
    if arr.ndim == len(shape):  # a single instance
        arr = arr[None, ...]
    if shape and all(d > 0 for d in shape) and arr.ndim >= 1 and list(arr.shape[1:]) != shape:
        per_instance = math.prod(arr.shape[1:])
        if per_instance == math.prod(shape):
            arr = arr.reshape([arr.shape[0], *shape])
    return arr, name, datatype


def parse_params(items: list[str]) -> dict[str, Any]:
    """`--param KEY=VALUE` items as OIP request parameters; a VALUE that is JSON (3, 0.7,
    true) is sent as that value, anything else as a string."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InvalidArgument(f"expected KEY=VALUE, got {item!r}", field="--param")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if isinstance(value, (list, dict)) or value is None:
            value = raw
        params[key.strip()] = value
    return params


def text_request(texts: list[str], metadata: dict) -> dict[str, Any]:
    """An OIP request with one prompt per row in the endpoint's BYTES input."""
    names = [i.get("name") for i in metadata.get("inputs") or [] if i.get("datatype") == "BYTES"]
    if not names:
        raise InvalidArgument("the endpoint takes no text input (BYTES); use --input",
                              field="--text")
    return {"inputs": [{"name": names[0], "datatype": "BYTES", "shape": [len(texts)],
                        "data": list(texts)}]}


def samples_request(n: int) -> dict[str, Any]:
    """An OIP request for `n` generated samples (GANs, VAEs)."""
    return {"inputs": [{"name": "num_samples", "datatype": "INT64", "shape": [1], "data": [n]}]}
