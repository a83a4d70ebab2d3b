"""The tensor datatypes of the Open Inference Protocol v2 and the numpy dtype of each: the
inference endpoints decode and encode tensors with them, and so does the SDK."""
from __future__ import annotations

import numpy as np

from trainserve.core.errors import InvalidArgument

# OIP datatype -> numpy dtype. Raw (binary) tensors are little-endian, row-major.
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8), "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}


def numpy_dtype(datatype: str) -> np.dtype:
    """The numpy dtype of OIP `datatype`; `InvalidArgument` naming the known ones if none."""
    try:
        return DATATYPES[datatype]
    except (KeyError, TypeError):
        raise InvalidArgument(
            f"unsupported datatype {datatype!r}; known: {', '.join(DATATYPES)}") from None
