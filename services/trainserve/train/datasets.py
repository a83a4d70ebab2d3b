"""Registered datasets: synthetic XOR and scikit-learn's bundled sets.

numpy/scikit-learn only, no torch: the API process validates specs (which needs `dataset_info`)
without paying for a torch import.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

from trainserve.train.registry import Registry

Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset looks like, known without loading it.

    `input_shape` is one sample's shape: `(C, H, W)` for images, `(F,)` for tabular data.
    `num_classes` is 0 for regression.
    """
    name: str
    task: Task
    num_classes: int
    class_names: tuple[str, ...]
    input_shape: tuple[int, ...]
    num_samples: int

    @property
    def output_dim(self) -> int:
        """Model outputs: one logit per class, or one value for regression."""
        return self.num_classes if self.task == "classification" else 1

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3

    @property
    def num_features(self) -> int:
        return int(np.prod(self.input_shape))


@dataclass(frozen=True)
class Dataset:
    """A registry entry. `info` and `load` take the job's `DatasetSpec` (synthetic sets read
    `num_samples` and `noise` from it); `load` returns `(x, y)` with `x` float32 of shape
    `(N, *input_shape)` and `y` int64 class indices or float32 targets of shape `(N,)`."""
    info: Callable[[object], DatasetInfo]
    load: Callable[[object], tuple[np.ndarray, np.ndarray]]
    synthetic: bool = False
    default_num_samples: int | None = None


DATASETS: Registry[Dataset] = Registry("dataset")


def register_dataset(name: str, dataset: Dataset) -> Dataset:
    """Register a dataset under `name` (`ValueError` if taken)."""
    return DATASETS.register(name, dataset)


def get_dataset(name: str) -> Dataset:
    """The registered dataset `name` (`ValueError` listing the known names otherwise)."""
    return DATASETS.get(name)


def dataset_info(spec) -> DatasetInfo:
    """`DatasetInfo` for a `DatasetSpec`, without loading any data."""
    return get_dataset(spec.name).info(spec)


def load_dataset(spec) -> tuple[np.ndarray, np.ndarray]:
    """All samples of a `DatasetSpec` as `(x, y)`; deterministic for a given spec."""
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


def _num_samples(spec, default: int) -> int:
    return spec.num_samples if spec.HasField("num_samples") else default


def _xor_info(spec) -> DatasetInfo:
    return DatasetInfo("xor", "classification", 2, ("0", "1"), (2,),
                       _num_samples(spec, _XOR_DEFAULT_SAMPLES))


def _xor_load(spec) -> tuple[np.ndarray, np.ndarray]:
    n = _num_samples(spec, _XOR_DEFAULT_SAMPLES)
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
