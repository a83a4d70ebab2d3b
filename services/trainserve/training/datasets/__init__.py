"""Registered datasets: synthetic sets (XOR, 2-D toy sets, sine sequences) and scikit-learn's
bundled sets.

numpy/scikit-learn only, no torch: the API process validates specs (which needs `dataset_info`)
without paying for a torch import. The 2-D toy sets live in `plane`, the sequence sets in `sequences`,
the character corpus in `text`; each registers on import of this package.

Shape contract (what `load` returns, what the zoo and the loop rely on):
- inputs `x` float32 `(N, *input_shape)`: `(C, H, W)` images, `(T, F)` sequences, `(F,)` tabular;
- classification targets int64 class indices `(N,)`;
- regression targets float32 `(N,)` for one output, `(N, num_targets)` for several (a forecast
  of `horizon` steps).
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

from trainserve.training.checks import fail
from trainserve.training.registry import Registry

# "reconstruction" is never a dataset's own task: an autoencoder turns any dataset into it
# (`training.tasks.task_info`).
Task = Literal["classification", "regression", "reconstruction"]
InputKind = Literal["image", "sequence", "tabular"]

DEFAULT_HORIZON = 1
MAX_SEQUENCE_LENGTH = 4096
MAX_HORIZON = 1024
# Inputs plus targets of one dataset, in float32 values: 2**27 is 512 MiB, far above the
# course's sets, and keeps a spec from exhausting a worker's memory.
MAX_DATASET_VALUES = 1 << 27


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset looks like, known without loading it.

    `input_shape` is one sample's shape: `(C, H, W)` for images, `(T, F)` for sequences of `T`
    steps with `F` features, `(F,)` for tabular data. `num_classes` is 0 for regression;
    `num_targets` is the number of regression outputs (the forecast horizon), 1 otherwise.
    """
    name: str
    task: Task
    num_classes: int
    class_names: tuple[str, ...]
    input_shape: tuple[int, ...]
    num_samples: int
    num_targets: int = 1

    @property
    def output_dim(self) -> int:
        """Model outputs: one logit per class, `num_targets` values for regression, or every
        input value (flattened) for reconstruction."""
        if self.task == "reconstruction":
            return self.num_features
        return self.num_classes if self.task == "classification" else self.num_targets

    @property
    def input_kind(self) -> InputKind:
        """"image" for `(C, H, W)`, "sequence" for `(T, F)`, "tabular" for `(F,)`."""
        return {3: "image", 2: "sequence"}.get(len(self.input_shape), "tabular")

    @property
    def is_image(self) -> bool:
        return self.input_kind == "image"

    @property
    def is_sequence(self) -> bool:
        return self.input_kind == "sequence"

    @property
    def is_tabular(self) -> bool:
        return self.input_kind == "tabular"

    @property
    def num_features(self) -> int:
        """Values in one flattened sample."""
        return int(np.prod(self.input_shape))


@dataclass(frozen=True)
class Dataset:
    """A registry entry. `info` and `load` take the job's `DatasetSpec` (synthetic sets read
    `num_samples` and `noise` from it, sequence sets `sequence_length` and `horizon`); `load`
    returns `(x, y)` as the module's shape contract says.

    `default_sequence_length` set marks a sequence dataset (it accepts `sequence_length`);
    `forecasting` marks one that accepts `horizon`. `check(spec)`, when given, validates
    further dataset-specific fields, raising `InvalidArgument` with paths `spec.dataset.*`.
    """
    info: Callable[[object], DatasetInfo]
    load: Callable[[object], tuple[np.ndarray, np.ndarray]]
    synthetic: bool = False
    default_num_samples: int | None = None
    default_sequence_length: int | None = None
    forecasting: bool = False
    check: Callable[[object], None] | None = None


DATASETS: Registry[Dataset] = Registry("dataset")


def register_dataset(name: str, dataset: Dataset) -> Dataset:
    """Register a dataset under `name` (`ValueError` if taken)."""
    return DATASETS.register(name, dataset)


def get_dataset(name: str) -> Dataset:
    """The registered dataset `name` (`ValueError` listing the known names otherwise)."""
    return DATASETS.get(name)


def optional_field(spec, field: str, default):
    """`spec.<field>` when set, else `default` (for proto3 `optional` fields)."""
    return getattr(spec, field) if spec.HasField(field) else default


def num_samples_of(spec) -> int:
    """Samples of a synthetic `DatasetSpec`: its own `num_samples` or the dataset's default."""
    return optional_field(spec, "num_samples", get_dataset(spec.name).default_num_samples)


def sequence_length_of(spec) -> int:
    """The sequence length of a sequence `DatasetSpec`: its own or the dataset's default."""
    return optional_field(spec, "sequence_length", get_dataset(spec.name).default_sequence_length)


def horizon_of(spec) -> int:
    """Forecast steps of a forecasting `DatasetSpec` (default `DEFAULT_HORIZON`)."""
    return optional_field(spec, "horizon", DEFAULT_HORIZON)


def apply_dataset_defaults(spec) -> None:
    """Fill `sequence_length` and `horizon` of a `DatasetSpec` in place where they apply."""
    if spec.HasField("uploaded"):
        spec.task = spec.task or "classification"
        if spec.uploaded.format == "csv":
            from trainserve.training.tabular import DEFAULT_MISSING
            spec.missing = spec.missing or DEFAULT_MISSING
        return
    entry = get_dataset(spec.name)
    if entry.default_sequence_length is not None and not spec.HasField("sequence_length"):
        spec.sequence_length = entry.default_sequence_length
    if entry.forecasting and not spec.HasField("horizon"):
        spec.horizon = DEFAULT_HORIZON
    if getattr(entry, "default_normalize", None) and not spec.normalize:
        spec.normalize = entry.default_normalize  # token datasets (datasets.text): "none"


def check_dataset(spec) -> None:
    """Validate the fields only some datasets take (`sequence_length`, `horizon`), the
    dataset's own `check`, and the size bound; raises `InvalidArgument` (`spec.dataset.*`)."""
    entry = get_dataset(spec.name)
    if spec.HasField("sequence_length"):
        if entry.default_sequence_length is None:
            _refuse_field(spec.name, "sequence_length", "sequence",
                          lambda d: d.default_sequence_length is not None)
        if not 2 <= spec.sequence_length <= MAX_SEQUENCE_LENGTH:
            fail("spec.dataset.sequence_length", f"must be in [2, {MAX_SEQUENCE_LENGTH}], "
                                                 f"got {spec.sequence_length}")
    if spec.HasField("horizon"):
        if not entry.forecasting:
            _refuse_field(spec.name, "horizon", "forecasting", lambda d: d.forecasting)
        if not 1 <= spec.horizon <= MAX_HORIZON:
            fail("spec.dataset.horizon", f"must be in [1, {MAX_HORIZON}], got {spec.horizon}")
    if entry.check is not None:
        entry.check(spec)
    info = entry.info(spec)
    values = info.num_samples * (info.num_features + info.output_dim)
    if values > MAX_DATASET_VALUES:
        fail("spec.dataset.num_samples", f"{info.num_samples} samples of shape "
             f"{list(info.input_shape)} hold {values} values, more than the {MAX_DATASET_VALUES} "
             f"a worker accepts; lower num_samples or sequence_length")


def _refuse_field(name: str, field: str, kind: str, takes: Callable[[Dataset], bool]) -> None:
    takers = [n for n in DATASETS.names() if takes(get_dataset(n))]
    fail(f"spec.dataset.{field}", f"only {kind} datasets ({', '.join(takers)}) accept {field}; "
                                  f"{name!r} does not")


def dataset_info(spec) -> DatasetInfo:
    """`DatasetInfo` for a `DatasetSpec`, without loading any data.

    Validates the dataset-specific fields first (`check_dataset`), so every caller, spec
    validation included, gets their errors with the field path.
    """
    if spec.HasField("uploaded"):
        return _uploaded_info(spec)
    check_dataset(spec)
    return get_dataset(spec.name).info(spec)


def _uploaded_info(spec) -> DatasetInfo:
    """An uploaded dataset's info, from the schema recorded at upload (the file is not read:
    the API validates submissions with this)."""
    from trainserve.training.userdata import TASKS, uploaded_info

    if spec.task not in TASKS:
        fail("spec.dataset.task", f"must be one of {', '.join(TASKS)}")
    shape, samples, classes, targets = uploaded_info(spec)
    return DatasetInfo(spec.name, spec.task, len(classes), classes, shape, samples,
                       num_targets=targets)


def load_dataset(spec) -> tuple[np.ndarray, np.ndarray]:
    """All samples of a `DatasetSpec` as `(x, y)`; deterministic for a given spec."""
    if spec.HasField("uploaded"):
        from trainserve.training.userdata import load_uploaded
        x, y, _ = load_uploaded(spec)
    else:
        x, y = get_dataset(spec.name).load(spec)
    return np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y)


def dataset_hash(x: np.ndarray, y: np.ndarray) -> str:
    """sha256 over shapes, dtypes and bytes of the arrays: what exactly was trained on."""
    h = hashlib.sha256()
    for a in (np.ascontiguousarray(x), np.ascontiguousarray(y)):
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# --- synthetic -------------------------------------------------------------------------------

_XOR_DEFAULT_SAMPLES = 200
# Fixed, not the training seed: the data of a spec must not change when only the seed does.
_XOR_DATA_SEED = 20240601


def data_rng(name: str) -> np.random.Generator:
    """The generator of a synthetic dataset's samples: fixed per dataset name (not the
    training seed), so the data of a spec never changes when only the training seed does."""
    import zlib
    return np.random.default_rng([_XOR_DATA_SEED, zlib.crc32(name.encode())])


def _xor_info(spec) -> DatasetInfo:
    return DatasetInfo("xor", "classification", 2, ("0", "1"), (2,), num_samples_of(spec))


def _xor_load(spec) -> tuple[np.ndarray, np.ndarray]:
    n = num_samples_of(spec)
    rng = np.random.default_rng(_XOR_DATA_SEED)
    # Equal counts per corner (then shuffled) so both classes are always balanced.
    corner = rng.permutation(np.arange(n) % 4)
    x = np.stack([corner // 2, corner % 2], axis=1).astype(np.float32)
    y = (x[:, 0] != x[:, 1]).astype(np.int64)
    if spec.noise > 0:
        x += rng.normal(0.0, spec.noise, size=x.shape).astype(np.float32)
    return x, y


register_dataset("xor", Dataset(_xor_info, _xor_load, synthetic=True,
                                default_num_samples=_XOR_DEFAULT_SAMPLES))


# --- scikit-learn bundled sets ---------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _sklearn_arrays(loader_name: str) -> tuple[np.ndarray, np.ndarray]:
    import sklearn.datasets
    bunch = getattr(sklearn.datasets, loader_name)()
    return bunch.data, bunch.target


def _register_sklearn(name: str, loader_name: str, task: Task, input_shape: tuple[int, ...],
                      num_samples: int, class_names: tuple[str, ...] = ()) -> None:
    # Shapes and class names are constants (checked against the data by a unit test), so
    # `dataset_info` costs nothing and validation never reads the files.
    info = DatasetInfo(name, task, len(class_names), class_names, input_shape, num_samples)

    def load(spec) -> tuple[np.ndarray, np.ndarray]:
        data, target = _sklearn_arrays(loader_name)
        x = data.astype(np.float32).reshape((-1, *input_shape))
        y = target.astype(np.int64 if task == "classification" else np.float32)
        return x, y

    register_dataset(name, Dataset(lambda spec: info, load))


_register_sklearn("digits", "load_digits", "classification", (1, 8, 8), 1797,
                  tuple(str(d) for d in range(10)))
_register_sklearn("iris", "load_iris", "classification", (4,), 150,
                  ("setosa", "versicolor", "virginica"))
_register_sklearn("wine", "load_wine", "classification", (13,), 178,
                  ("class_0", "class_1", "class_2"))
_register_sklearn("breast_cancer", "load_breast_cancer", "classification", (30,), 569,
                  ("malignant", "benign"))
_register_sklearn("diabetes", "load_diabetes", "regression", (10,), 442)


# Registration happens on import; keep these last.
from trainserve.training.datasets import phantoms, plane, sequences, text  # noqa: E402,F401
from trainserve.training.datasets import bert_text  # noqa: E402,F401  (model.bert)
