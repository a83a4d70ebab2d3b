"""A loaded model ready to answer: preprocessing, forward pass and task-specific outputs.

The artifact's `meta.json` (see docs/architecture.md) says how: `task`, `class_names`,
`input_shape`, `output_dim` and `preprocessing` {kind, shift, scale}, the normalization fitted
on the training split, applied here as `(x - shift) / scale`; a table model's preprocessing
also has `columns` (`training.tabular`): it takes raw rows of text cells and encodes them first.
"""
from __future__ import annotations

import importlib
import math
from typing import Any, Callable

import numpy as np
import torch

from trainserve.core.errors import InvalidArgument, ModelNotReady
from trainserve.serve.config import DEFAULT_LOADER
from trainserve.serve.dataplane import (CLASS_NAME, LABEL, LATENT, PREDICTION, PROBABILITIES,
                                        RECONSTRUCTION)
from trainserve.serve.signature import attention_spec, table_columns
from trainserve.serve.task_io import (ATTENTION, DEFAULT_MAX_NEW_TOKENS, DEFAULT_TEMPERATURE,
                                      MAX_GENERATED_SAMPLES, NUM_SAMPLES, SAMPLES, TEXT,
                                      TEXT_INPUT, TOKENS, check_attention_size, decode_text,
                                      encode_prompt)
from trainserve.training.tabular import TableEncoding


class Predictor:
    """Runs one model version on batches of raw (un-normalized) float32 inputs."""

    def __init__(self, module: torch.nn.Module, meta: dict[str, Any]):
        self.module = module.eval()
        self.task = meta.get("task", "classification")
        # Classifiers: the class names; token models: the vocabulary, token id -> character.
        self.class_names = [str(c) for c in meta.get("class_names") or []]
        self.input_shape = tuple(int(d) for d in meta["input_shape"])
        self.shift, self.scale = _normalization(meta.get("preprocessing") or {},
                                                self.input_shape)
        # Table models take raw rows of text cells (categories, blanks) and encode them.
        columns = table_columns(meta)
        self.encoding = TableEncoding.from_list(columns) if columns else None
        # [layers, heads, queries, keys] of the optional `attention` output, if it has one.
        spec = attention_spec(meta)
        self.attention_shape = tuple(spec.shape[1:]) if spec is not None else None

    def preprocess(self, x: np.ndarray) -> np.ndarray:
        """The network's input for a batch of raw features: `(x - shift) / scale`, float32."""
        x = np.array(x, dtype=np.float32)  # a writable copy: wire buffers are read-only
        if self.shift is not None:
            x = (x - self.shift) / self.scale
        return x

    def encode_rows(self, rows: np.ndarray) -> np.ndarray:
        """A table model's raw rows [N, columns] of text cells (UTF-8 bytes or str) as the
        numbers the network was trained on; a bad cell is the request's error."""
        cells = np.vectorize(_text, otypes=[np.str_])(np.asarray(rows, dtype=object)) \
            if np.asarray(rows).size else np.asarray(rows, dtype=np.str_)
        try:
            return self.encoding.encode(cells.reshape(np.shape(rows)))
        except ValueError as exc:
            raise InvalidArgument(f"input 'input': {exc}") from None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The network's raw output on preprocessed inputs."""
        with torch.inference_mode():
            return self.module(torch.from_numpy(x)).numpy()

    def run(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any] | None = None
            ) -> dict[str, np.ndarray]:
        """The outputs for one validated request: its one input by name and the request
        parameters the model reads (`serve.task_io`); `attention` (set by the service when
        the request names that output) adds the attention weights."""
        if len(inputs) != 1:
            raise ValueError(f"models here take one input per request, got {sorted(inputs)}")
        (name, x), = inputs.items()
        params = dict(parameters or {})
        if not params.pop(ATTENTION, False):
            return self._outputs(name, x, params)
        rows = self._attention_rows(name, x)  # refused here, before any work, when too big
        return self._outputs(name, x, params) | {ATTENTION: self.attention(rows)}

    def _outputs(self, name: str, x: np.ndarray, params: dict[str, Any]
                 ) -> dict[str, np.ndarray]:
        if name == NUM_SAMPLES:  # a GAN, or a VAE asked for samples instead of reconstructions
            return self.generate(x, params.get("seed"))
        if self.task == "language_model":
            return self.complete(x, **params)
        if name == TEXT_INPUT:  # a BERT classifier asked with raw text
            return self.predict(self.tokenize(x))
        return self.predict(x)

    def _attention_rows(self, name: str, x: np.ndarray) -> list[torch.Tensor]:
        """The network inputs whose attention a request asks for, one tensor per batch (a
        language model: one per prompt, its last `context` characters), after checking the
        output's size against `task_io.MAX_ATTENTION_VALUES`."""
        if self.attention_shape is None:  # the signature offers no such output
            raise InvalidArgument(f"model has no output {ATTENTION!r}")
        if self.task == "language_model":
            prompts = np.asarray(x, dtype=object).reshape(-1)
            context = int(self.module.context)  # what the first new character sees
            rows = [torch.tensor(encode_prompt(p, self.class_names, i)[-context:])[None]
                    for i, p in enumerate(prompts)]
            longest = max(r.shape[1] for r in rows)
            check_attention_size((len(rows), *self.attention_shape[:2], longest, longest))
            return rows
        check_attention_size((len(x), *self.attention_shape))
        if name == TEXT_INPUT:
            x = self.tokenize(x)
        elif self.encoding is not None:
            x = self.encode_rows(x)
        return [torch.from_numpy(self.preprocess(x))]

    def attention(self, rows: list[torch.Tensor]) -> np.ndarray:
        """FP32 [N, layers, heads, queries, keys]: the network's attention weights for each
        of `rows`, in order; rows of different lengths (prompts) padded with zeros."""
        with torch.inference_mode():
            maps = [torch.stack(self.module.attention(r), dim=1).float().numpy() for r in rows]
        n = max(m.shape[-1] for m in maps)
        q = max(m.shape[-2] for m in maps)
        out = np.zeros((sum(len(m) for m in maps), *maps[0].shape[1:3], q, n), np.float32)
        start = 0
        for m in maps:
            out[start:start + len(m), :, :, :m.shape[-2], :m.shape[-1]] = m
            start += len(m)
        return out

    def tokenize(self, texts: np.ndarray) -> np.ndarray:
        """A BERT model's `text` rows as token ids [N, T] (`training.datasets.tokenizer`: [CLS], the
        characters, [PAD]; longer text is cut)."""
        from trainserve.training.datasets import tokenizer
        rows = np.asarray(texts, dtype=object).reshape(-1)
        return tokenizer.encode_batch((decode_text(t, i) for i, t in enumerate(rows)),
                                      self.input_shape[0])

    def predict(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the model, by name, for a batch [N, *input_shape] of raw inputs."""
        if self.task == "generation":  # a GAN: x holds the number of samples wanted
            return self.generate(x)
        if self.encoding is not None:
            x = self.encode_rows(x)
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"batch shape {x.shape} does not fit input {self.input_shape}")
        if self.task == "seq2seq":
            return self.translate(x)
        if self.task == "masked_lm":  # BERT pre-trained: the likeliest token everywhere
            logits = self.forward(np.asarray(x, dtype=np.float32))
            return {TOKENS: logits.argmax(-1).astype(np.int64)}
        if self.task == "reconstruction":
            return self._reconstruct(self.preprocess(x))
        raw = self.forward(self.preprocess(x)).reshape(len(x), -1)
        if self.task != "classification":
            return {PREDICTION: raw.astype(np.float32)}
        return self._classify(raw)

    def generate(self, num_samples: np.ndarray | int, seed: int | None = None
                 ) -> dict[str, np.ndarray]:
        """GANs and VAEs: `samples` [N, *input_shape] in the caller's units (the training
        normalization undone), N = `num_samples` (an int or the one-value INT64 input) in
        1..MAX_GENERATED_SAMPLES. `seed` makes them reproducible; unset, each call differs."""
        n = np.asarray(num_samples).reshape(-1)
        if n.size != 1 or not 1 <= int(n[0]) <= MAX_GENERATED_SAMPLES:
            raise ValueError(f"num_samples must be one integer in [1, {MAX_GENERATED_SAMPLES}],"
                             f" got {n.tolist()}")
        gen = None if seed is None else torch.Generator().manual_seed(int(seed))
        with torch.inference_mode():
            samples = self.module.sample(int(n[0]), gen).numpy()
        if self.shift is not None:
            samples = samples * self.scale + self.shift
        return {SAMPLES: samples.astype(np.float32)}

    def translate(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """seq2seq: `tokens` [N, output_length], the greedy decoding of token ids `x` [N, T]
        (the model's own `forward` without targets, as evaluation decodes)."""
        with torch.inference_mode():
            tokens = self.module(torch.from_numpy(np.asarray(x, dtype=np.int64)))
        return {TOKENS: tokens.numpy().astype(np.int64)}

    def complete(self, prompts: np.ndarray, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                 temperature: float = DEFAULT_TEMPERATURE, top_k: int | None = None,
                 seed: int | None = None) -> dict[str, np.ndarray]:
        """Language models: `text` [N], `max_new_tokens` characters sampled after each of the
        N prompts (UTF-8 bytes or str), at `temperature`, from the `top_k` most likely (all
        when None). One generator serves the rows in order, so `seed` fixes the whole batch."""
        gen = None if seed is None else torch.Generator().manual_seed(int(seed))
        rows = np.asarray(prompts, dtype=object).reshape(-1)
        texts = np.empty(len(rows), dtype=object)
        for row, prompt in enumerate(rows):
            ids = encode_prompt(prompt, self.class_names, row)
            out = self.module.generate(torch.tensor(ids), int(max_new_tokens), float(temperature),
                                       gen, top_k=top_k)
            texts[row] = "".join(self.class_names[int(i)] for i in out[len(ids):]).encode()
        return {TEXT: texts}

    def _reconstruct(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Autoencoders: the reconstruction in the caller's units (the training normalization
        undone, so it compares with the input sent) and the latent code (a VAE's mean)."""
        with torch.inference_mode():
            t = torch.from_numpy(x)
            recon = self.module(t).numpy().reshape(x.shape)
            latent = self.module.encode(t).numpy().reshape(len(x), -1)
        if self.shift is not None:
            recon = recon * self.scale + self.shift
        return {RECONSTRUCTION: recon.astype(np.float32), LATENT: latent.astype(np.float32)}

    def _classify(self, logits: np.ndarray) -> dict[str, np.ndarray]:
        # NumPy rather than torch: on a request's few rows, torch's per-op dispatch costs
        # more than the arithmetic.
        z = logits.astype(np.float32, copy=False)
        if z.shape[1] == 1:  # one logit: a binary classifier trained with a sigmoid
            with np.errstate(over="ignore"):  # exp(-z) = inf for a very negative z: p = 0
                probs = (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
            labels = (probs[:, 0] >= 0.5).astype(np.int64)
        else:
            e = np.exp(z - z.max(axis=1, keepdims=True))
            probs = e / e.sum(axis=1, keepdims=True)
            labels = probs.argmax(axis=1).astype(np.int64)
        out = {PROBABILITIES: probs, LABEL: labels}
        if self.class_names:
            names = np.empty(len(labels), dtype=object)
            names[:] = [self._name(int(i)).encode() for i in labels]
            out[CLASS_NAME] = names
        return out

    def _name(self, label: int) -> str:
        return self.class_names[label] if label < len(self.class_names) else str(label)


def _text(cell: Any) -> str:
    return cell.decode("utf-8", "replace") if isinstance(cell, bytes) else str(cell)


def _normalization(pre: dict[str, Any], input_shape: tuple[int, ...]):
    """`shift` and `scale` as float32 arrays broadcastable over one sample, or (None, None).

    The statistics are stored flattened: one per feature (prod(input_shape) values), one per
    channel (input_shape[0] values, for images) or a single scalar.
    """
    shift, scale = pre.get("shift") or [], pre.get("scale") or []
    if pre.get("kind", "none") == "none" or not (shift or scale):
        return None, None
    shift = np.asarray(shift or [0.0], dtype=np.float32)
    scale = np.asarray(scale or [1.0], dtype=np.float32)
    # A constant feature has scale 0; training divides by 1 there (as scikit-learn does).
    scale = np.where(scale == 0, np.float32(1.0), scale)
    return _broadcastable(shift, input_shape), _broadcastable(scale, input_shape)


def _broadcastable(v: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    if v.size == math.prod(input_shape):
        return v.reshape(input_shape)
    if v.size == 1:
        return v.reshape(())
    if len(input_shape) > 1 and v.size == input_shape[0]:
        return v.reshape((input_shape[0],) + (1,) * (len(input_shape) - 1))
    raise ModelNotReady(f"preprocessing has {v.size} statistics, which fit neither the input "
                        f"shape {list(input_shape)}, its channels, nor a scalar")


Loader = Callable[[str], Any]


def import_loader(path: str = DEFAULT_LOADER) -> Loader:
    """The artifact loader named `module:function`, `(dir) -> LoadedModel(module, meta)`."""
    module_name, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ModelNotReady(f"artifact loader {path!r} is not available: {exc}") from exc


def load_predictor(artifact_dir: str, loader: Loader) -> Predictor:
    """Load an artifact directory into a `Predictor`; any failure becomes `ModelNotReady`."""
    try:
        loaded = loader(artifact_dir)
        return Predictor(loaded.module, loaded.meta)
    except ModelNotReady:
        raise
    except Exception as exc:  # whatever breaks while loading is the artifact's problem
        raise ModelNotReady(f"cannot load the model in {artifact_dir}: "
                            f"{type(exc).__name__}: {exc}") from exc
