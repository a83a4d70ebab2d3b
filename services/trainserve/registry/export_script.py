"""The scripted raw-row encoder of an exported TorchScript table model
(`registry.export_table`). A module of its own, without postponed annotations: TorchScript
reads the attribute annotations below as types (`typing.List`), not as strings.

torch is imported here: only an export loads this module.
"""
import math
from typing import List

import torch
from torch import nn

from trainserve.training.tabular import (BINARY, CATEGORICAL, MISSING_TOKENS, NUMERIC,
                                         TableEncoding)


class RawRows(nn.Module):
    """raw rows (List[List[str]]) -> the network's outputs, encoded as
    `TableEncoding.encode` does (strip, lower-case missing tokens, float)."""
    kinds: List[int]
    names: List[str]
    fills: List[float]
    indicators: List[bool]
    levels: List[List[str]]
    fill_categories: List[str]
    has_fill: List[bool]
    tokens: List[str]

    def __init__(self, encoding: TableEncoding, net):
        super().__init__()
        cols = encoding.columns
        self.net = net
        self.kinds = [(NUMERIC, CATEGORICAL, BINARY).index(c.kind) for c in cols]
        self.names = [c.name for c in cols]
        self.fills = [float(c.fill) for c in cols]
        self.indicators = [bool(c.indicator) for c in cols]
        self.levels = [list(c.categories) if c.kind == CATEGORICAL else
                       [c.positive] if c.kind == BINARY else [] for c in cols]
        self.fill_categories = [c.fill_category or "" for c in cols]
        self.has_fill = [c.fill_category is not None for c in cols]
        self.tokens = sorted(MISSING_TOKENS)
        self.width = int(encoding.width)

    def forward(self, rows: List[List[str]]):
        return self.net(self.encode(rows))

    def encode(self, rows: List[List[str]]) -> torch.Tensor:
        values: List[float] = []
        for row in rows:
            if len(row) != len(self.names):
                raise RuntimeError("expected rows of " + str(len(self.names)) + " cells")
            for i in range(len(row)):
                self._cell(i, row[i].strip(), values)
        return torch.tensor(values, dtype=torch.float32).reshape(len(rows), self.width)

    def _cell(self, i: int, cell: str, values: List[float]):
        missing = cell.lower() in self.tokens
        if self.kinds[i] != 0:
            if missing and self.has_fill[i]:
                cell = self.fill_categories[i]
            for level in self.levels[i]:
                values.append(1.0 if cell == level else 0.0)
        elif missing:
            if math.isnan(self.fills[i]):
                raise RuntimeError("column '" + self.names[i] + "' has a missing value, "
                                   "which this model was not trained to fill")
            values.append(self.fills[i])
        else:
            values.append(float(cell))
        if self.kinds[i] == 0 and self.indicators[i]:
            values.append(1.0 if missing else 0.0)

