"""What the plots of a finished job need, saved by the training run itself (rank 0), so that
drawing them (`trainserve.jobs.plots.evaluation_plots`, the API's GetArtifact) never runs a model
and never unpickles anything: `<job>/evaluation.npz`, plain arrays only (loads with
`allow_pickle=False`), with a `kind` entry:

- "classification": `y_true` [N] int64 and `probabilities` [N, C] float32 (softmax of the
  model's outputs) on the final (test) split, `class_names` [C] unicode;
- "regression": `y_true` and `y_pred` [N, k] float32 on the final split;
- "reconstruction": `originals` and `reconstructions` [n, *input_shape] (the first
  `NUM_RECONSTRUCTIONS` samples of the final split), a VAE also `samples` decoded from the
  prior; all in the dataset's units (normalization undone);
- "generation" (GANs): `samples` [n, *input_shape], and `real` (up to `NUM_POINTS` samples of
  the final split) with their labels `real_labels`, in the dataset's units.

A network that keeps attention weights (BERT, GPT, seq2seq with attention, the transformer
encoder) adds the `attention_*` arrays of a few samples (`training.attention`); a task that
saves nothing else (masked_lm, seq2seq, language_model) then gets its own name as kind.

Samples are drawn with a generator seeded by the job's seed, so they are reproducible. Token
tasks (seq2seq, language models) save nothing else: their curves say the rest.
"""
from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

EVALUATION_FILE = "evaluation.npz"
NUM_RECONSTRUCTIONS = 8
NUM_IMAGE_SAMPLES = 64       # an 8 x 8 grid
NUM_POINTS = 1000            # generated (and real) points of a 2-D dataset
SAMPLE_STREAM = 7            # derive_seed(seed, SAMPLE_STREAM): the samples' generator


def save_evaluation(path: str | Path, data, module, out, x, y, seed: int,
                    extra: dict[str, np.ndarray] | None = None) -> Path | None:
    """Write `evaluation.npz` of the final split (`out` the model's outputs on `x`, targets
    `y`; `data` the job's `PreparedData`), with `extra` arrays (`training.inside`'s) added.
    Returns its path, or None when the task plots nothing. Never raises: a plot must not
    fail a trained job."""
    try:
        arrays = evaluation_arrays(data, module, out, x, y, seed)
        if arrays is None:
            return None
        return _write_npz(Path(path), arrays | (extra or {}))
    except Exception:  # noqa: BLE001 - see the docstring
        log.warning("could not save the evaluation data for plots", exc_info=True)
        return None


def evaluation_arrays(data, module, out, x, y, seed: int) -> dict[str, np.ndarray] | None:
    """The arrays of `evaluation.npz` (see the module docstring), or None."""
    import torch

    from trainserve.training.attention import with_attention
    with torch.no_grad():
        arrays = _arrays(data, module, out, x, y, seed)
        return with_attention(arrays, data.info, module, x)  # attention maps, if any


def _arrays(data, module, out, x, y, seed: int) -> dict[str, np.ndarray] | None:
    import torch
    info, pre = data.info, data.preprocessing
    if info.task == "classification":
        names = list(info.class_names) or [str(c) for c in range(out.shape[1])]
        return {"kind": np.array("classification"), "y_true": _np(y).astype(np.int64),
                "probabilities": _np(torch.softmax(out.double(), dim=1)).astype(np.float32),
                "class_names": np.array(names, dtype=np.str_)}
    if info.task == "regression":
        return {"kind": np.array("regression"), "y_pred": _np(out).reshape(len(out), -1),
                "y_true": _np(y).reshape(len(y), -1).astype(np.float32)}
    gen = _generator(seed)
    module.eval()
    if info.task == "reconstruction":
        n = min(NUM_RECONSTRUCTIONS, len(x))
        arrays = {"kind": np.array("reconstruction"),
                  "originals": denormalize(_np(x[:n]), pre),
                  "reconstructions": denormalize(_np(out[:n]), pre)}
        if getattr(module, "kind", "") == "variational":
            arrays["samples"] = denormalize(_np(module.sample(NUM_IMAGE_SAMPLES, gen)), pre)
        return arrays
    if info.task == "generation":
        points = math.prod(info.input_shape) == 2
        samples = module.sample(NUM_POINTS if points else NUM_IMAGE_SAMPLES, gen)
        return {"kind": np.array("generation"), "samples": denormalize(_np(samples), pre),
                "real": denormalize(_np(x[:NUM_POINTS]), pre),
                "real_labels": _np(y[:NUM_POINTS]).astype(np.int64)}
    return None


def denormalize(x: np.ndarray, pre) -> np.ndarray:
    """Undo `Preprocessing.apply` on a batch `x` [N, *shape]: x * scale + shift, with one
    statistic per flattened value, per channel, or one for all."""
    shift = np.asarray(pre.shift or [0.0], np.float64)
    scale = np.asarray(pre.scale or [1.0], np.float64)
    scale = np.where(scale == 0, 1.0, scale)
    n = len(x)
    flat = x.reshape(n, -1).astype(np.float64)
    if shift.size == flat.shape[1] or shift.size == 1:
        flat = flat * scale + shift
    elif x.ndim > 2 and shift.size == x.shape[1]:   # per channel
        flat = (flat.reshape(n, x.shape[1], -1) * scale[:, None] + shift[:, None]).reshape(n, -1)
    return flat.reshape(x.shape).astype(np.float32)


def _generator(seed: int):
    import torch

    from trainserve.training.seeds import derive_seed
    return torch.Generator().manual_seed(derive_seed(seed, SAMPLE_STREAM))


def _np(t) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Atomically: readers see the previous file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
