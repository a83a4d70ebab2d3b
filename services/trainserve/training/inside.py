"""What the plots of a trained network's insides need, saved with `evaluation.npz` by rank 0
at the end of a job (`spec.training.diagnostics.plots`, on by default; docs/interpretability.md).
Plain arrays, each group under its own prefix, drawn by `trainserve.jobs.plots_inside`:

- `boundary_*`, a classifier of 2-D inputs (xor, moons, circles, spirals, a two-column CSV):
  the class probabilities over a `GRID` x `GRID` grid of the input plane (`boundary_x`,
  `boundary_y` [G], `boundary_probabilities` [G, G, C], row i at y[i]) that spans the data
  with a margin, and the points it is drawn over (`boundary_train_points` up to `NUM_POINTS`
  of the training split, `boundary_test_points` the final split; `*_labels` their classes;
  `boundary_class_names`), all in the dataset's units;
- `latent_*`, an autoencoder: the final split's codes (a VAE's posterior means) in two
  dimensions (`latent_codes` [N, 2]: the code itself when it has at most two values, else its
  first two principal components; `latent_axes` their names), `latent_labels` and
  `latent_class_names` when the dataset has classes;
- `filters*` and `feature_*`, an image model with convolutions: the first conv layer's
  kernels (`filters` [O, I, k, k], at most `MAX_FILTERS`; `filters_layer` its module path),
  one final-split image (`feature_image`, dataset units) and the output of each of the first
  `FEATURE_LAYERS` conv layers for it (`feature_maps_<i>` [c, h, w], at most `MAX_MAPS`
  channels; `feature_layers` their paths).

Costs a few forward passes (tens of milliseconds on a course model). Never raises: a plot
must not fail a trained job.
"""
from __future__ import annotations

import logging

import numpy as np

from trainserve.training.diagnostics import plots_enabled
from trainserve.training.evaluation import denormalize

log = logging.getLogger(__name__)

GRID = 150
MARGIN = 0.1          # of the data's range, on each side of the grid
NUM_POINTS = 1000
MAX_LATENT_POINTS = 2000
MAX_FILTERS = 64
FEATURE_LAYERS = 2
MAX_MAPS = 16
_CHUNK = 4096


def inside_arrays(spec, data, module, x, y) -> dict[str, np.ndarray]:
    """The arrays (module docstring) for `module` trained on `data` (`PreparedData`), `x` and
    `y` the final split's tensors; empty when the spec turns the plots off."""
    if not plots_enabled(spec):
        return {}
    import torch
    arrays: dict[str, np.ndarray] = {}
    module.eval()
    for part in (boundary_arrays, latent_arrays, conv_arrays):
        try:
            with torch.no_grad():
                arrays |= part(spec, data, module, x, y)
        except Exception:  # noqa: BLE001 - see the module docstring
            log.warning("could not save the data of the %s plot", part.__name__, exc_info=True)
    return arrays


def _np(t) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _device(module):
    return next(module.parameters()).device


# -- decision boundary ----------------------------------------------------------------------

def is_planar_classifier(data) -> bool:
    info = data.info
    return (info.task == "classification" and tuple(info.input_shape) == (2,)
            and data.preprocessing.encoding is None)


def boundary_grid(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The grid's x and y values: the points' range and `MARGIN` of it on each side."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    pad = np.maximum(hi - lo, 1e-3) * MARGIN
    return (np.linspace(lo[0] - pad[0], hi[0] + pad[0], GRID, dtype=np.float32),
            np.linspace(lo[1] - pad[1], hi[1] + pad[1], GRID, dtype=np.float32))


def grid_probabilities(module, pre, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """[len(gy), len(gx), C] class probabilities of the model at each grid point (dataset
    units, normalized as the model's inputs are)."""
    import torch
    xx, yy = np.meshgrid(gx, gy)
    flat = pre.apply(np.stack([xx.ravel(), yy.ravel()], axis=1))
    inputs = torch.from_numpy(flat).to(_device(module))
    probs = torch.cat([torch.softmax(module(inputs[s:s + _CHUNK]).double(), dim=1)
                       for s in range(0, len(inputs), _CHUNK)])
    return _np(probs).reshape(len(gy), len(gx), -1)


def boundary_arrays(spec, data, module, x, y) -> dict[str, np.ndarray]:
    if not is_planar_classifier(data):
        return {}
    pre = data.preprocessing
    train = denormalize(data.x_train[:NUM_POINTS], pre)
    test = denormalize(_np(x), pre)
    gx, gy = boundary_grid(np.concatenate([train, test]))
    probs = grid_probabilities(module, pre, gx, gy)
    names = list(data.info.class_names) or [str(c) for c in range(probs.shape[2])]
    return {"boundary_x": gx, "boundary_y": gy, "boundary_probabilities": probs,
            "boundary_train_points": train,
            "boundary_train_labels": np.asarray(data.y_train[:NUM_POINTS], np.int64),
            "boundary_test_points": test, "boundary_test_labels": _np(y).astype(np.int64),
            "boundary_class_names": np.array(names, dtype=np.str_)}


# -- latent space ---------------------------------------------------------------------------

def project_2d(codes: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Codes [N, d] in two dimensions and the axes' names: as they are for d <= 2 (a second
    axis of zeros for d = 1), else the first two principal components, named with the share
    of the variance each explains."""
    codes = np.asarray(codes, np.float64)
    if codes.shape[1] == 1:
        return np.c_[codes, np.zeros(len(codes))], ["z0", "(none)"]
    if codes.shape[1] == 2:
        return codes, ["z0", "z1"]
    centred = codes - codes.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    share = s ** 2 / max(float((s ** 2).sum()), 1e-300)
    return centred @ vt[:2].T, [f"PC{i + 1} ({share[i]:.0%} of variance)" for i in (0, 1)]


def latent_arrays(spec, data, module, x, y) -> dict[str, np.ndarray]:
    if data.info.task != "reconstruction" or not callable(getattr(module, "encode", None)):
        return {}
    n = min(len(x), MAX_LATENT_POINTS)
    codes = _np(module.encode(x[:n]))
    points, axes = project_2d(codes)
    arrays = {"latent_codes": points.astype(np.float32),
              "latent_axes": np.array(axes, dtype=np.str_)}
    labels = y[:n]
    if not labels.dtype.is_floating_point and labels.dim() == 1:
        arrays["latent_labels"] = _np(labels).astype(np.int64)
        arrays["latent_class_names"] = np.array(_class_names(spec, int(labels.max()) + 1),
                                                dtype=np.str_)
    return arrays


def _class_names(spec, count: int) -> list[str]:
    """The dataset's class names (an autoencoder's task info has none), else the indices."""
    try:
        from trainserve.training.datasets import dataset_info
        names = list(dataset_info(spec.dataset).class_names)
    except Exception:  # noqa: BLE001 - the indices will do
        names = []
    return names if len(names) >= count else [str(c) for c in range(count)]


# -- convolutions ---------------------------------------------------------------------------

def conv_layers(module) -> list[tuple[str, object]]:
    from torch import nn
    return [(path, m) for path, m in module.named_modules() if isinstance(m, nn.Conv2d)]


def conv_arrays(spec, data, module, x, y) -> dict[str, np.ndarray]:
    convs = conv_layers(module)
    if not convs or not data.info.is_image or len(x) == 0:
        return {}
    path, first = convs[0]
    arrays = {"filters": _np(first.weight[:MAX_FILTERS]),
              "filters_layer": np.array(path, dtype=np.str_)}
    image = x[:1]
    maps = feature_maps(module, [m for _, m in convs[:FEATURE_LAYERS]], image)
    arrays["feature_image"] = denormalize(_np(image), data.preprocessing)[0]
    arrays["feature_layers"] = np.array([p for p, _ in convs[:len(maps)]], dtype=np.str_)
    for i, fmap in enumerate(maps):
        arrays[f"feature_maps_{i}"] = fmap
    return arrays


def feature_maps(module, layers: list, image) -> list[np.ndarray]:
    """The output of each of `layers` (conv modules of `module`) for one image [1, C, H, W]:
    [c, h, w] each, at most `MAX_MAPS` channels; a layer the forward pass skips is left out."""
    captured: dict[int, np.ndarray] = {}

    def hook(i):
        def keep(mod, inputs, output):
            captured.setdefault(i, _np(output[0, :MAX_MAPS]))
        return keep

    handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(layers)]
    try:
        module(image)
    finally:
        for h in handles:
            h.remove()
    return [captured[i] for i in sorted(captured)]
