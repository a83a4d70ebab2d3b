"""The raw-row encoding of a table model (`training.tabular`) inside its exported file, so
that the file takes the same rows of text cells as the model's endpoint.

- ONNX: a string input `input` [batch, columns] and, before the network, standard operators
  (opset 20): per column a `Gather`; `RegexFullMatch` for the missing cells (blank, NA, N/A,
  NaN, null, any case, surrounding spaces ignored) and for each category; `Cast` string to
  float for numbers; `Where` for the fill values; `Concat` of the 0/1 and number columns. A
  numeric cell that is no number makes onnxruntime fail the run (the endpoint answers 400);
  a missing cell where the model fills none answers NaN (the endpoint refuses it).
- TorchScript: a scripted module whose `forward(rows: List[List[str]])` encodes with Python's
  own string rules (strip, lower, float) and calls the traced network; a bad cell raises.

The encoding itself also travels in the file's metadata (`columns`, the stored form of
`TableEncoding`), with `reference_encode` below as the reference reading of it.
"""
from __future__ import annotations

import math

import numpy as np

from trainserve.training.tabular import (CATEGORICAL, MISSING_TOKENS, NUMERIC,
                                         TableEncoding)

TABLE_OPSET = 20          # RegexFullMatch
FEATURES = "features"     # the exported network's float input, inside the graph
# Python's str.strip() whitespace, as an RE2 character class.
_SPACE = (r"[\t-\r\x{1c}-\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}"
          r"\x{202f}\x{205f}\x{3000}]*")


def table_encoding(meta: dict) -> TableEncoding | None:
    columns = (meta.get("preprocessing") or {}).get("columns")
    return TableEncoding.from_list(columns) if columns else None


def reference_encode(columns: list[dict], rows) -> np.ndarray:
    """The network's float32 input [N, width] of raw rows [N, columns] of text cells, from the
    stored encoding `columns` (an exported file's `columns` metadata): what the endpoint and
    the exported graph do before the normalization."""
    return TableEncoding.from_list(columns).encode(np.asarray(rows, dtype=np.str_))


def example_rows(encoding: TableEncoding, batch: int) -> np.ndarray:
    """Valid raw rows [batch, columns] for checking an export: each column's categories in
    turn, numbers around the fill, and a missing cell wherever the column fills one."""
    rows = [[_example_cell(c, r) for c in encoding.columns] for r in range(batch)]
    return np.array(rows, dtype=object).reshape(batch, len(encoding.columns))


def _example_cell(col, r: int) -> str:
    fills = col.fill_category is not None or col.kind != NUMERIC or not math.isnan(col.fill)
    if r == 1 and fills:
        return " NA "
    if col.kind == NUMERIC:
        return f"{(0.0 if math.isnan(col.fill) else col.fill) + r * 0.5:g}"
    levels = col.categories or (col.positive,)
    return levels[r % len(levels)]


# -- ONNX --------------------------------------------------------------------------------------

def onnx_with_encoding(net_bytes: bytes, encoding: TableEncoding) -> bytes:
    """The ONNX network (float input `features`, opset `TABLE_OPSET`) preceded by the
    encoding: the result's one input is `input`, STRING [batch, columns]."""
    import onnx
    from onnx import TensorProto, helper
    model = onnx.load_from_string(net_bytes)
    nodes, inits = _OnnxBuilder(encoding).build()
    graph = model.graph
    old = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old)
    graph.initializer.extend(inits)
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info("input", TensorProto.STRING,
                                                     ["batch", len(encoding.columns)]))
    onnx.checker.check_model(model)
    return model.SerializeToString()


class _OnnxBuilder:
    """The nodes and constants that turn the string input into `features`."""

    def __init__(self, encoding: TableEncoding):
        self.encoding = encoding
        self.nodes, self.inits, self.parts = [], [], []

    def build(self):
        from onnx import helper
        self.zero = self._const("zero_text", np.array(["0"], dtype=object))
        for i, col in enumerate(self.encoding.columns):
            cell = self._node("Gather", ["input", self._const(f"c{i}", np.array([i]))],
                              f"c{i}_cell", axis=1)
            missing = self._match(cell, rf"(?i){_SPACE}({_tokens()}){_SPACE}", f"c{i}_missing")
            (self._numeric if col.kind == NUMERIC else self._levels)(i, col, cell, missing)
        self.nodes.append(helper.make_node("Concat", self.parts, [FEATURES], axis=1))
        return self.nodes, self.inits

    def _numeric(self, i, col, cell, missing):
        from onnx import TensorProto
        text = self._node("Where", [missing, self.zero, cell], f"c{i}_text")
        value = self._node("Cast", [text], f"c{i}_value", to=TensorProto.FLOAT)
        fill = self._const(f"c{i}_fill", np.array([col.fill], dtype=np.float32))
        self.parts.append(self._node("Where", [missing, fill, value], f"c{i}_out"))
        if col.indicator:
            self.parts.append(self._node("Cast", [missing], f"c{i}_ind", to=TensorProto.FLOAT))

    def _levels(self, i, col, cell, missing):
        from onnx import TensorProto
        levels = col.categories if col.kind == CATEGORICAL else (col.positive,)
        for k, level in enumerate(levels):
            hit = self._match(cell, f"{_SPACE}{_literal(level)}{_SPACE}", f"c{i}_is{k}")
            if col.fill_category == level:  # a missing cell takes this category
                hit = self._node("Or", [hit, missing], f"c{i}_or{k}")
            self.parts.append(self._node("Cast", [hit], f"c{i}_l{k}", to=TensorProto.FLOAT))

    def _match(self, cell: str, pattern: str, out: str) -> str:
        return self._node("RegexFullMatch", [cell], out, pattern=pattern)

    def _node(self, op: str, inputs: list[str], out: str, **attrs) -> str:
        from onnx import helper
        self.nodes.append(helper.make_node(op, inputs, [f"enc/{out}"], **attrs))
        return f"enc/{out}"

    def _const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper
        self.inits.append(numpy_helper.from_array(value, f"enc/{name}"))
        return f"enc/{name}"


def _tokens() -> str:
    return "|".join(_literal(t) for t in sorted(MISSING_TOKENS))


def _literal(text: str) -> str:
    """`text` as an RE2 pattern matching exactly it: every character but letters and digits
    written as its code point."""
    return "".join(c if c.isascii() and c.isalnum() else f"\\x{{{ord(c):x}}}" for c in text)


# -- TorchScript -------------------------------------------------------------------------------

def scripted_with_encoding(traced_net, encoding: TableEncoding):
    """A scripted module: raw rows (List[List[str]]) -> the traced network's outputs."""
    import torch

    from trainserve.registry.export_script import RawRows
    return torch.jit.script(RawRows(encoding, traced_net))
