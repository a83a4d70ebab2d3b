"""The schema of an uploaded dataset, found once at upload in bounded memory.

CSV: streamed row by row; per column whether every value is a number, the first bad value,
its missing cells (blank, NA, NaN, ...: `training.tabular.is_missing`), its kind (numeric,
binary, categorical, text) and its distinct values up to `MAX_CLASS_VALUES` (class names if it
becomes the target).
NPZ: each member's .npy header is read (`numpy.lib.format`) without inflating the array; the
declared sizes are checked against the zip's own sizes and bounded (a 2 MiB file that claims
to hold 2 GiB is refused before a byte of it is inflated). Only `y` is read, in chunks of
`CHUNK_BYTES`, to count its values; `x` is never inflated here (the worker reads it).

Class names come out in the order and spelling the worker gives them (`userdata`), so a
job's number of classes is known at submission without the file.
"""
from __future__ import annotations

import csv
import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

from trainserve.core.errors import InvalidArgument
from trainserve.core.pb import dataset_pb2
from trainserve.training.labels import class_names_of, numeric_if_possible
from trainserve.training.tabular import MAX_CATEGORIES, is_missing

# Columns of a CSV dataset: course data has tens to hundreds of features. The header's names
# (copied into the schema of every job that uses the dataset) in all: 25 characters a column.
MAX_COLUMNS = 10_000
MAX_HEADER_CHARS = 256 << 10
# Distinct values counted per column (or y): more than this is not a classification target.
MAX_CLASS_VALUES = 1000
# Distinct values held across all columns while a CSV is read (bounds memory and the record);
# the last column, the default target, is always counted.
MAX_TRACKED_VALUES = 50_000
# A value longer than this is no class name: its column is not counted further.
MAX_CLASS_CHARS = 100
# NPZ: members, their declared (inflated) size in all, and the ratio a large member may
# compress by. Real data compresses by tens; 1 GiB is twice what a worker accepts
# (training.datasets.MAX_DATASET_VALUES float32 values).
MAX_NPZ_MEMBERS = 16
MAX_NPZ_INFLATED_BYTES = 1 << 30
MAX_COMPRESSION_RATIO = 200
RATIO_CHECKED_ABOVE = 16 << 20
CHUNK_BYTES = 1 << 20
X_KINDS, Y_KINDS = "biuf", "biufUS"


def describe(path: str | Path, fmt: str) -> tuple[dataset_pb2.DatasetSchema, list[str], int]:
    """(schema, column or array names, samples) of a CSV or NPZ file; `InvalidArgument`
    (field "chunk") if it is refused."""
    if fmt == "csv":
        schema, rows = describe_csv(Path(path))
        return schema, [c.name for c in schema.columns], rows
    schema, names = describe_npz(Path(path))
    return schema, names, int(schema.x.shape[0])


def _bad(reason: str) -> InvalidArgument:
    return InvalidArgument(reason, field="chunk")


# --- CSV -------------------------------------------------------------------------------------

class _Column:
    """What one column's values tell, accumulated row by row."""

    def __init__(self, name: str, always_count: bool):
        self.name, self.always_count = name, always_count
        self.numeric, self.bad_row, self.bad_value = True, 0, ""
        self.missing, self.numbers = 0, False
        self.values: set[str] | None = set()

    def add(self, text: str, line: int, budget: list[int]) -> None:
        if is_missing(text):  # neither a number nor a category
            self.missing += 1
            return
        if self.numeric or not self.bad_row or not self.numbers:
            self._check_number(text, line)
        if self.values is None:
            return
        value = text.strip()
        if value in self.values:
            return
        if len(value) > MAX_CLASS_CHARS or len(self.values) >= MAX_CLASS_VALUES or \
                (budget[0] <= 0 and not self.always_count):
            budget[0] += len(self.values)
            self.values = None  # too many to be classes: not counted further
            return
        self.values.add(value)
        budget[0] -= 1

    def _check_number(self, text: str, line: int) -> None:
        try:
            number = float(text)
        except ValueError:
            if self.numeric:
                self.numeric, self.bad_row, self.bad_value = False, line, text[:64]
            return
        self.numbers = True
        if not self.bad_row and not math.isfinite(number):
            self.bad_row, self.bad_value = line, text[:64]

    def schema(self) -> dataset_pb2.ColumnSchema:
        out = dataset_pb2.ColumnSchema(name=self.name, numeric=self.numeric,
                                       bad_row=self.bad_row, bad_value=self.bad_value,
                                       missing=self.missing)
        if self.values is None:
            out.distinct_values = MAX_CLASS_VALUES + 1
        else:
            names = class_names_of(numeric_if_possible(np.array(sorted(self.values))))
            out.distinct_values = len(names)
            out.classes.extend(names)
        # Categories are text values only: a number among them (or one word among numbers)
        # is more likely a typo than a category.
        out.kind = _kind(self.numeric, self.numbers, int(out.distinct_values))
        return out


def _kind(numeric: bool, numbers: bool, distinct: int) -> str:
    """Binary: exactly two values, all numbers or all text (yes/no, M/F, 0/1)."""
    if distinct == 2 and (numeric or not numbers):
        return "binary"
    if numeric:
        return "numeric"
    return "categorical" if not numbers and distinct <= MAX_CATEGORIES else "text"


def describe_csv(path: Path) -> tuple[dataset_pb2.DatasetSchema, int]:
    """Check a CSV (UTF-8, a header naming every column once, rows as wide as the header, at
    least 2 data rows) and describe its columns, reading it once, row by row."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = _check_header(next(reader, None))
            columns = [_Column(h, i == len(header) - 1) for i, h in enumerate(header)]
            budget, rows = [MAX_TRACKED_VALUES], 0
            for rows, row in enumerate(reader, start=1):
                if len(row) != len(header):
                    raise _bad(f"row {rows + 1} has {len(row)} fields, the header "
                               f"{len(header)}")
                for col, text in zip(columns, row):
                    col.add(text, rows + 1, budget)
    except UnicodeDecodeError:
        raise _bad("a CSV dataset must be UTF-8 text") from None
    except csv.Error as exc:
        raise _bad(f"not a valid CSV file: {exc}") from None
    if rows < 2:
        raise _bad("needs at least 2 data rows")
    return dataset_pb2.DatasetSchema(columns=[c.schema() for c in columns], num_rows=rows), rows


def _check_header(header: list[str] | None) -> list[str]:
    if not header or any(not h.strip() for h in header):
        raise _bad("the first row must name every column")
    if len(header) > MAX_COLUMNS:
        raise _bad(f"has {len(header)} columns; at most {MAX_COLUMNS}")
    if sum(map(len, header)) > MAX_HEADER_CHARS:
        raise _bad(f"its column names hold {sum(map(len, header))} characters; at most "
                   f"{MAX_HEADER_CHARS} in all")
    if len(set(header)) != len(header):
        raise _bad("column names must be unique")
    return [h.strip() for h in header]


# --- NPZ -------------------------------------------------------------------------------------

def read_npy_header(f) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """(shape, dtype, fortran_order, header length in bytes) of the .npy stream `f`, read
    from its header alone; `InvalidArgument` for anything but a plain numeric or text
    array (object and structured dtypes would need pickle or are not data)."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            raise ValueError(f".npy format version {version} is not supported")
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise _bad(f"not a valid .npy array header: {exc}") from None
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise _bad("arrays of objects or records are refused (they would need pickle)")
    return tuple(int(n) for n in shape), dtype, bool(fortran), f.tell()


def describe_npz(path: Path) -> tuple[dataset_pb2.DatasetSchema, list[str]]:
    """Check an NPZ from its zip directory and .npy headers and describe `x` and `y`."""
    try:
        with zipfile.ZipFile(path) as zf:
            headers = _npz_headers(zf)
            if "x" not in headers:
                raise _bad(f"an NPZ dataset needs an array 'x' (has {sorted(headers)})")
            x = _array_schema(headers["x"], X_KINDS, "x")
            if len(x.shape) < 2:
                raise _bad("'x' must be a numeric array of shape [N, ...features]")
            out = dataset_pb2.DatasetSchema(x=x, num_rows=x.shape[0])
            if "y" in headers:
                out.y.CopyFrom(_array_schema(headers["y"], Y_KINDS, "y"))
                if not out.y.shape or out.y.shape[0] != x.shape[0]:
                    n = out.y.shape[0] if out.y.shape else 0
                    raise _bad(f"'y' has {n} rows, 'x' {x.shape[0]}")
                _count_values(zf, headers["y"], out.y)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, ValueError,
            NotImplementedError, RuntimeError) as exc:  # also: encrypted or unknown compression
        raise _bad(f"not a valid NPZ file without pickled objects: {exc}") from None
    return out, list(headers)


def _npz_headers(zf: zipfile.ZipFile) -> dict[str, tuple]:
    """name -> (ZipInfo, shape, dtype, fortran, header length), every size checked."""
    infos = zf.infolist()
    if len(infos) > MAX_NPZ_MEMBERS:
        raise _bad(f"has {len(infos)} members; an NPZ dataset holds at most {MAX_NPZ_MEMBERS} "
                   "arrays")
    total = sum(i.file_size for i in infos)
    if total > MAX_NPZ_INFLATED_BYTES:
        raise _bad(f"its arrays hold {total} bytes uncompressed, more than the limit of "
                   f"{MAX_NPZ_INFLATED_BYTES} bytes")
    out = {}
    for info in infos:
        if not info.filename.endswith(".npy") or info.is_dir():
            raise _bad(f"member {info.filename!r} is not a .npy array")
        if info.file_size > RATIO_CHECKED_ABOVE and \
                info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            raise _bad(f"member {info.filename!r} inflates {info.compress_size} bytes to "
                       f"{info.file_size} (more than {MAX_COMPRESSION_RATIO}:1): refused as a "
                       "decompression bomb")
        with zf.open(info) as f:
            shape, dtype, fortran, offset = read_npy_header(f)
        declared = offset + math.prod(shape) * dtype.itemsize
        if declared != info.file_size:
            raise _bad(f"array {info.filename!r} declares {declared} bytes but its zip entry "
                       f"holds {info.file_size}")
        out[info.filename[:-4]] = (info, shape, dtype, fortran, offset)
    return out


def _array_schema(header, kinds: str, name: str) -> dataset_pb2.ArraySchema:
    _info, shape, dtype, _fortran, _offset = header
    if dtype.kind not in kinds:
        what = "numeric" if kinds == X_KINDS else "numeric or text"
        raise _bad(f"'{name}' must be a {what} array, not {dtype}")
    return dataset_pb2.ArraySchema(shape=shape, dtype=dtype.str)


def _count_values(zf: zipfile.ZipFile, header, out: dataset_pb2.ArraySchema) -> None:
    """Distinct values of a one-dimensional `y`, read in chunks of `CHUNK_BYTES` (never the
    whole array at once), stopping past `MAX_CLASS_VALUES`."""
    info, shape, dtype, _fortran, offset = header
    if len(shape) != 1:  # several regression targets: no classes
        out.distinct_values = MAX_CLASS_VALUES + 1
        return
    chars = dtype.itemsize // (4 if dtype.kind == "U" else 1)
    if dtype.kind in "US" and not 0 < chars <= MAX_CLASS_CHARS:
        raise _bad(f"'y' holds text of {chars} characters a value; class labels have 1 to "
                   f"{MAX_CLASS_CHARS}")
    seen = np.array([], dtype=dtype)
    per_chunk = max(1, CHUNK_BYTES // max(dtype.itemsize, 1))
    with zf.open(info) as f:
        f.read(offset)
        left = shape[0]
        while left and len(seen) <= MAX_CLASS_VALUES:
            n = min(left, per_chunk)
            data = f.read(n * dtype.itemsize)
            if len(data) != n * dtype.itemsize:
                raise _bad("array 'y' is shorter than its header says")
            seen = np.unique(np.concatenate([seen, np.frombuffer(data, dtype=dtype)]))
            left -= n
    if len(seen) > MAX_CLASS_VALUES:
        out.distinct_values = MAX_CLASS_VALUES + 1
        return
    names = class_names_of(seen)
    out.distinct_values = len(names)
    out.classes.extend(names)
