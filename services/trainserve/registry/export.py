"""Export a registered model version to a self-contained TorchScript or ONNX file.

The exported graph takes the same raw inputs as the model's inference endpoint and answers
the same outputs, under the same names (`serve.signature.io_specs`): the training
normalization `(x - shift) / scale` runs inside it, and so does the task head:

- classification: `input` -> `probabilities` (softmax; sigmoid for a single logit) and
  `label` (INT64);
- regression: `input` -> `prediction`;
- reconstruction (autoencoders, VAEs included): `input` -> `reconstruction` (in the input's
  units) and `latent` (a VAE's mean). A VAE's sampling is not exported.

A table model (an uploaded CSV with categorical, binary or missing cells) takes raw rows of
text cells, as its endpoint does: the encoding runs inside the file (`registry.export_table`).
GANs, seq2seq and language models decode or sample in Python loops and are refused.
Both formats have a dynamic batch axis; the model's metadata (task, class names, input
shape, name and version; a table model's `columns` encoding) travels inside the file:
TorchScript's extra file `meta.json`, ONNX's `metadata_props`.

torch is imported on first use: the job API loads this module without it.
"""
from __future__ import annotations

import functools
import io
import json
import threading
import warnings
from pathlib import Path
from typing import Any

from trainserve.core.errors import FailedPrecondition
# The API and the tests name these here too.
from trainserve.core.export_formats import FORMATS, check_format, export_filename  # noqa: F401
from trainserve.registry import export_table

EXPORTABLE_TASKS = ("classification", "regression", "reconstruction")
ONNX_OPSET = 17
META_EXTRA_FILE = "meta.json"  # TorchScript: torch.jit.load(f, _extra_files={...})

# The tracer and the ONNX exporter keep global state: one export at a time per process.
_LOCK = threading.Lock()


def check_exportable(meta: dict, ref: str = "the model") -> None:
    """`FailedPrecondition` unless the model's task has an exported form."""
    task = meta.get("task", "classification")
    if task not in EXPORTABLE_TASKS:
        raise FailedPrecondition(
            f"{ref} is a {task} model; only classification, regression and reconstruction "
            "(autoencoder) models can be exported")


def io_names(meta: dict) -> tuple[list[str], list[str]]:
    """The exported graph's input and output names (those of the inference endpoint)."""
    task = meta.get("task", "classification")
    outputs = {"classification": ["probabilities", "label"], "regression": ["prediction"],
               "reconstruction": ["reconstruction", "latent"]}[task]
    return ["input"], outputs


def export_artifact(artifact_dir: str | Path, fmt: str, name: str = "", version: int = 0
                    ) -> bytes:
    """Load the artifact in `artifact_dir` and export it (see `export_model`)."""
    fmt = check_format(fmt)
    meta = json.loads((Path(artifact_dir) / "meta.json").read_text())
    check_exportable(meta, f"model {name}:{version}" if name else "the model")
    from trainserve.training.artifacts import load_artifact
    loaded = load_artifact(artifact_dir)
    return export_model(loaded.module, loaded.meta, fmt, name=name, version=version)


def export_model(module, meta: dict, fmt: str, name: str = "", version: int = 0) -> bytes:
    """The bytes of `module` (with `meta`'s preprocessing and task head) as a TorchScript
    (`torch.jit.load`) or ONNX (opset 17; a table model's, with its encoding: 20) file. The result is checked at a second batch size
    against the module itself; a network whose graph fixes the batch size is refused."""
    fmt = check_format(fmt)
    check_exportable(meta, f"model {name}:{version}" if name else "the model")
    import torch
    wrapper = export_wrapper(module, meta)
    example = _example_input(meta, 2)
    info = json.dumps(_file_meta(meta, name, version))
    encoding = export_table.table_encoding(meta)
    try:
        with _LOCK:
            if fmt == "torchscript":
                with torch.no_grad():
                    data = _torchscript(wrapper, example, info, encoding)
            else:
                # With gradients on: under no_grad, torch's fused fast paths (e.g. of
                # nn.TransformerEncoderLayer) would be traced, and ONNX has no such operators.
                data = _onnx(wrapper, example, meta, info, encoding)
    except Exception as exc:  # noqa: BLE001 - an operator or construct the tracer cannot take
        raise FailedPrecondition(
            f"this {meta.get('task')} network cannot be exported to {fmt}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    _check_batch_axis(wrapper, meta, fmt, data)
    return data


def export_wrapper(module, meta: dict):
    """The `nn.Module` that is exported: raw input -> the endpoint's outputs, as a tuple in
    the order of `io_names(meta)[1]`."""
    import torch
    from trainserve.serve.predictor import Predictor

    check_exportable(meta)
    predictor = Predictor(module, meta)  # the same normalization statistics the endpoint uses
    shift = None if predictor.shift is None else torch.from_numpy(predictor.shift.copy())
    scale = None if predictor.scale is None else torch.from_numpy(predictor.scale.copy())
    head = _heads()[meta.get("task", "classification")]
    return head(module.eval(), shift, scale, tuple(predictor.input_shape)).eval()


# -- the exported modules -----------------------------------------------------------------------

@functools.cache
def _heads() -> dict[str, type]:
    """The exported module of each task, by task (defined on first use: they need torch)."""
    import torch
    from torch import nn

    class Exported(nn.Module):
        def __init__(self, net, shift, scale, input_shape):
            super().__init__()
            self.net = net
            self.input_shape = tuple(int(d) for d in input_shape)
            self.normalize = shift is not None
            if self.normalize:
                self.register_buffer("shift", shift.float())
                self.register_buffer("scale", scale.float())

        def preprocess(self, x):
            return (x - self.shift) / self.scale if self.normalize else x

    class Classifier(Exported):
        def forward(self, x):
            logits = self.net(self.preprocess(x)).reshape(x.shape[0], -1)
            if logits.shape[1] == 1:  # one logit: a binary classifier trained with a sigmoid
                probs = torch.sigmoid(logits)
                label = (probs[:, 0] >= 0.5).to(torch.int64)
            else:
                probs = torch.softmax(logits, dim=1)
                label = probs.argmax(dim=1).to(torch.int64)
            return probs, label

    class Regressor(Exported):
        def forward(self, x):
            return (self.net(self.preprocess(x)).reshape(x.shape[0], -1),)

    class Reconstructor(Exported):
        """The autoencoder's eval-mode encode and decode, written with batch-agnostic reshapes
        (the network's own use the batch size as a number, which tracing would freeze)."""

        def forward(self, x):
            ae = self.net
            h = ae.encoder(self.preprocess(x).flatten(1))
            code = ae.code_act(ae.code(h))
            recon = ae.decoder(code).reshape((-1,) + self.input_shape)
            if self.normalize:
                recon = recon * self.scale + self.shift
            return recon, code

    return {"classification": Classifier, "regression": Regressor,
            "reconstruction": Reconstructor}


# -- the formats ------------------------------------------------------------------------------

def _torchscript(wrapper, example, info: str, encoding=None) -> bytes:
    import torch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit: kept for TorchScript
        traced = torch.jit.trace(wrapper, (example,), check_trace=False)
        if encoding is not None:  # raw rows in: the encoding, scripted, before the network
            traced = export_table.scripted_with_encoding(traced, encoding)
        buf = io.BytesIO()
        torch.jit.save(traced, buf, _extra_files={META_EXTRA_FILE: info})
    return buf.getvalue()


def _onnx(wrapper, example, meta: dict, info: str, encoding=None) -> bytes:
    import onnx
    import torch
    inputs, outputs = io_names(meta)
    if encoding is not None:  # the network takes the encoded rows; the encoding goes first
        inputs = [export_table.FEATURES]
    axes = {n: {0: "batch"} for n in inputs + outputs}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript-based exporter: it needs no network and no onnxscript.
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (example,), buf, dynamo=False,
                          opset_version=ONNX_OPSET if encoding is None
                          else export_table.TABLE_OPSET,
                          input_names=inputs, output_names=outputs, dynamic_axes=axes,
                          do_constant_folding=True)
    data = buf.getvalue()
    if encoding is not None:
        data = export_table.onnx_with_encoding(data, encoding)
    model = onnx.load_from_string(data)
    for key, value in json.loads(info).items():
        model.metadata_props.add(key=key, value=json.dumps(value))
    model.doc_string = f"trainserve {meta.get('task')} model; inputs are raw (un-normalized)"
    return model.SerializeToString()


def _example_input(meta: dict, batch: int):
    import torch
    gen = torch.Generator().manual_seed(0)
    return torch.randn((batch, *[int(d) for d in meta["input_shape"]]), generator=gen)


def _file_meta(meta: dict, name: str, version: int) -> dict[str, Any]:
    out = {"name": name, "version": int(version), "task": meta.get("task"),
           "class_names": [str(c) for c in meta.get("class_names") or []],
           "input_shape": [int(d) for d in meta["input_shape"]],
           "outputs": io_names(meta)[1]}
    columns = (meta.get("preprocessing") or {}).get("columns")
    if columns:  # raw rows in: their columns, and how each becomes numbers
        out["columns"] = columns
    return out


def run_exported(data: bytes, fmt: str, x) -> list:
    """Run an exported file on a float32 numpy batch (a table model's: raw rows of text
    cells, str or UTF-8 bytes): its outputs as numpy arrays, in order."""
    import numpy as np
    fmt = check_format(fmt)
    text = np.asarray(x).dtype.kind in "OSU"
    x = _text_rows(x) if text else np.ascontiguousarray(x, dtype=np.float32)
    if fmt == "onnx":
        import onnxruntime as ort
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})
    import torch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.jit.load(io.BytesIO(data))
    with torch.no_grad():
        return [t.numpy() for t in model(x.tolist() if text else torch.from_numpy(x))]


def _text_rows(x):
    import numpy as np
    cells = [[c.decode() if isinstance(c, bytes) else str(c) for c in row] for row in x]
    return np.array(cells, dtype=object).reshape(np.shape(x))


def _check_batch_axis(wrapper, meta: dict, fmt: str, data: bytes) -> None:
    """Run the export at batch size 3 (traced at 2) and compare with the module itself."""
    import numpy as np
    import torch
    x = _example_input(meta, 3)
    raw = x.numpy()
    encoding = export_table.table_encoding(meta)
    if encoding is not None:  # raw rows in, through the encoding the endpoint applies
        raw = export_table.example_rows(encoding, 3)
        x = torch.from_numpy(encoding.encode(raw.astype(str)))
    with torch.no_grad():
        expect = [t.numpy() for t in wrapper(x)]
    try:
        got = run_exported(data, fmt, raw)
        ok = all(g.shape == e.shape and np.allclose(g, e, rtol=1e-3, atol=1e-4)
                 for g, e in zip(got, expect, strict=True))
    except Exception:  # noqa: BLE001 - a graph that fails on another batch size
        ok = False
    if not ok:
        raise FailedPrecondition(
            f"this {meta.get('task')} network cannot be exported to {fmt}: its traced graph "
            "does not accept other batch sizes")
