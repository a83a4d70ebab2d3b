"""The endpoint page's "try it" panel: which form a model's signature calls for, the Open
Inference Protocol request built from what the form posted, and the answer cut to what the
page shows.

The page posts plain JSON (`{"kind": "numbers", "values": [...]}` and the like); the request
to the endpoint is built here, from the model version's own inputs, so a page can ask only
for what the signature allows and no bigger than it.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from trainserve.core import errors

MAX_VALUES = 65_536        # numbers one request may carry (a 256x256 image)
MAX_PROMPT = 2_000         # characters of a prompt
MAX_NEW_TOKENS = 500       # what the prompt box lets a page ask for
MAX_SAMPLES = 16
MAX_SHOWN = 4_096          # numbers of an output the page is sent
MAX_CELL = 200             # characters of one cell of a raw table row


def panel(model: Mapping[str, Any]) -> dict[str, Any]:
    """The form for `model` (`registry_views.model_json`): `numbers` (tabular features, named
    when the spec listed them), `row` (a raw table row: text and category cells, for models
    that encode their clinical columns themselves),
    `image` (a drawing pad of H x W), `prompt` (text generation), `samples` (a generator) or
    `none` (a signature the panel does not build a form for)."""
    inputs = {t["name"]: t for t in model["inputs"]}
    if "prompt" in inputs:
        return {"kind": "prompt"}
    if "input" in inputs and inputs["input"]["datatype"] == "BYTES" and model.get("columns"):
        return {"kind": "row", "columns": model["columns"]}
    if "input" in inputs and inputs["input"]["datatype"] == "FP32":
        dims = inputs["input"]["shape"][1:]
        if len(dims) >= 2:
            return {"kind": "image", "height": dims[-2], "width": dims[-1],
                    "channels": dims[0] if len(dims) == 3 else 1,
                    "pixel_max": 16 if model.get("dataset") == "digits" else 1}
        if len(dims) == 1:
            names = model.get("feature_names") or []
            return {"kind": "numbers", "features": dims[0],
                    "names": names if len(names) == dims[0] else []}
    if "num_samples" in inputs:
        return {"kind": "samples"}
    return {"kind": "none"}


def oip_request(model: Mapping[str, Any], posted: Mapping[str, Any]) -> dict[str, Any]:
    """The OIP v2 request (batch of one) for what the panel posted; INVALID_ARGUMENT naming
    the field when it does not fit the signature."""
    kind = panel(model)["kind"]
    if posted.get("kind") != kind:
        raise errors.InvalidArgument(f"this model takes {kind!r} input", field="kind")
    if kind == "prompt":
        return _prompt_request(posted)
    if kind == "samples":
        count = _int(posted.get("num_samples", 1), "num_samples", 1, MAX_SAMPLES)
        return {"inputs": [{"name": "num_samples", "datatype": "INT64", "shape": [1],
                            "data": [count]}], **_seed(posted)}
    if kind == "row":
        columns = model["columns"]
        return {"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1, len(columns)],
                            "data": _cells(posted.get("cells"), columns)}]}
    if kind in ("numbers", "image"):
        dims = next(t["shape"][1:] for t in model["inputs"] if t["name"] == "input")
        return {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, *dims],
                            "data": _values(posted.get("values"), math.prod(dims))}]}
    raise errors.InvalidArgument("the try-it panel cannot build a request for this model",
                                 field="kind")


def _prompt_request(posted: Mapping[str, Any]) -> dict[str, Any]:
    prompt = posted.get("prompt")
    if not isinstance(prompt, str) or not prompt or len(prompt) > MAX_PROMPT:
        raise errors.InvalidArgument(f"1 to {MAX_PROMPT} characters", field="prompt")
    params: dict[str, Any] = {
        "max_new_tokens": _int(posted.get("max_new_tokens", 100), "max_new_tokens", 1,
                               MAX_NEW_TOKENS)}
    temperature = posted.get("temperature")
    if temperature not in (None, ""):
        value = _number(temperature, "temperature")
        if not 0 < value <= 100:
            raise errors.InvalidArgument("in (0, 100]", field="temperature")
        params["temperature"] = value
    request = {"inputs": [{"name": "prompt", "datatype": "BYTES", "shape": [1],
                           "data": [prompt]}], **_seed(posted)}
    request.setdefault("parameters", {}).update(params)
    return request


def _seed(posted: Mapping[str, Any]) -> dict[str, Any]:
    seed = posted.get("seed")
    if seed in (None, ""):
        return {}
    return {"parameters": {"seed": _int(seed, "seed", 0, 2**63 - 1)}}


def _values(values: Any, count: int) -> list[float]:
    if count > MAX_VALUES:
        raise errors.ResourceExhausted(f"values: the panel sends at most {MAX_VALUES} numbers")
    if not isinstance(values, list) or len(values) != count:
        raise errors.InvalidArgument(f"{count} numbers", field="values")
    return [_number(v, f"values[{i}]") for i, v in enumerate(values)]


def _cells(cells: Any, columns: list[Mapping[str, Any]]) -> list[str]:
    """One text cell per column of a raw table row ("" is a missing value: the model fills
    it, or refuses it, as it was trained to)."""
    if not isinstance(cells, list) or len(cells) != len(columns):
        raise errors.InvalidArgument(f"{len(columns)} cells, one per column", field="cells")
    for i, cell in enumerate(cells):
        if not isinstance(cell, str) or len(cell) > MAX_CELL:
            raise errors.InvalidArgument(f"text of at most {MAX_CELL} characters",
                                         field=f"cells[{i}]")
    return cells


def _number(value: Any, field: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise errors.InvalidArgument("a number", field=field) from None
    if not math.isfinite(number) or isinstance(value, bool):
        raise errors.InvalidArgument("a finite number", field=field)
    return number


def _int(value: Any, field: str, low: int, high: int) -> int:
    number = _number(value, field)
    if number != int(number) or not low <= number <= high:
        raise errors.InvalidArgument(f"an integer in [{low}, {high}]", field=field)
    return int(number)


def answer_json(response: Mapping[str, Any], class_names: list[str]) -> dict[str, Any]:
    """The endpoint's outputs by name (each cut to MAX_SHOWN numbers), and for a classifier
    its label with each class's probability."""
    outputs = {o["name"]: {"shape": o.get("shape"), "data": list(o.get("data", []))[:MAX_SHOWN]}
               for o in response.get("outputs", [])}
    answer: dict[str, Any] = {"outputs": outputs, "model_version": response.get("model_version")}
    probabilities = outputs.get("probabilities", {}).get("data")
    if probabilities and "label" in outputs:
        label = int(outputs["label"]["data"][0])
        names = class_names or [str(i) for i in range(len(probabilities))]
        answer["label"] = names[label] if label < len(names) else str(label)
        answer["probabilities"] = [{"class": names[i] if i < len(names) else str(i), "p": p}
                                   for i, p in enumerate(probabilities)]
    if "text" in outputs:
        answer["text"] = "".join(str(t) for t in outputs["text"]["data"])
    return answer
