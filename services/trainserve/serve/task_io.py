"""What each task's requests carry beyond tensor shapes and datatypes (torch-free: the gateway
checks requests with it, the predictor encodes prompts with it).

- Request parameters (OIP request-level `parameters`): `seed` for every model that samples
  (GANs, VAEs asked for samples, language models); `max_new_tokens`, `temperature`, `top_k`
  for language models. Parameters a model does not read are ignored, as OIP clients add their
  own (e.g. `binary_data_output`); a known one of the wrong type or range is an error.
- Alternative request forms: a VAE takes either `input` (reconstruction and latent) or
  `num_samples` (new samples), one per request.
- Value checks: `num_samples` in range, seq2seq token ids in the vocabulary, prompts made of
  the language model's characters (its vocabulary is the artifact's `class_names`).
- Optional outputs: `attention` (the attention weights of models that have them, shape
  [N, layers, heads, queries, keys]) only when a request names it, and at most
  `MAX_ATTENTION_VALUES` values per request.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from trainserve.core.errors import InvalidArgument, ResourceExhausted

# Tensor names, shared with `serve.signature.io_specs`.
NUM_SAMPLES, SAMPLES = "num_samples", "samples"
TOKENS, PROMPT, TEXT = "tokens", "prompt", "text"
ATTENTION = "attention"
# A BERT classifier's raw-text input, and the classifier outputs (= serve.dataplane's).
TEXT_INPUT = "text"
PROBABILITIES_OUT, LABEL_OUT, CLASS_NAME_OUT = "probabilities", "label", "class_name"

MAX_GENERATED_SAMPLES = 10_000
MAX_PROMPT_CHARS = 10_000
DEFAULT_MAX_NEW_TOKENS, MAX_NEW_TOKENS = 200, 2_000
DEFAULT_TEMPERATURE, MAX_TEMPERATURE = 1.0, 100.0
MAX_SEED = 2**63 - 1
# Values of one response's `attention` (4 MB as FP32: under gRPC's default 4 MiB message).
MAX_ATTENTION_VALUES = 1_000_000


@dataclass(frozen=True)
class ParamSpec:
    """A request parameter a model reads: an "int" or a "float" in [low, high] (low excluded
    when `low_open`); `default` is used when the request leaves it out (None: unset)."""
    name: str
    kind: str
    low: float
    high: float
    low_open: bool = False
    default: Any = None

    def describe(self) -> str:
        what = "an integer" if self.kind == "int" else "a number"
        return f"{what} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"

    def check(self, value: Any) -> int | float:
        """The value, checked. A "float" may also come as a string of a number, as
        tritonclient.grpc sends parameters only as bool, int or string."""
        if self.kind == "float" and isinstance(value, str):
            value = _float_or_text(value)
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = is_number and (isinstance(value, int) if self.kind == "int" else math.isfinite(value))
        if ok and (value > self.low if self.low_open else value >= self.low) \
                and value <= self.high:
            return int(value) if self.kind == "int" else float(value)
        raise InvalidArgument(f"parameter {self.name!r}: expected {self.describe()}, "
                              f"got {value!r}")


def _float_or_text(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


SEED = ParamSpec("seed", "int", 0, MAX_SEED)
LM_PARAMETERS = (
    ParamSpec("max_new_tokens", "int", 1, MAX_NEW_TOKENS, default=DEFAULT_MAX_NEW_TOKENS),
    ParamSpec("temperature", "float", 0, MAX_TEMPERATURE, low_open=True,
              default=DEFAULT_TEMPERATURE),
    ParamSpec("top_k", "int", 1, 2**31 - 1),
    SEED)


def check_parameters(specs: Sequence[ParamSpec], given: dict[str, Any]) -> dict[str, Any]:
    """The model's parameters from a request's: checked, defaults filled in, others dropped."""
    out = {}
    for spec in specs:
        if given.get(spec.name) is not None:
            out[spec.name] = spec.check(given[spec.name])
        elif spec.default is not None:
            out[spec.name] = spec.default
    return out


# ---------------------------------------------------------------------------- per task


@dataclass(frozen=True)
class TaskRules:
    """`forms`: alternative inputs, each with the outputs it produces (empty: one form, every
    input and output); `parameters`; `check`: value checks on the validated input arrays."""
    forms: tuple[tuple[str, tuple[str, ...]], ...] = ()
    parameters: tuple[ParamSpec, ...] = ()
    check: Callable[[dict[str, np.ndarray]], None] | None = None


def task_rules(task: str, input_names: Sequence[str], vocabulary: Sequence[str]) -> TaskRules:
    """The rules of a model of `task` whose registry record lists `input_names` and whose
    `class_names` are `vocabulary` (token models)."""
    if task == "generation":
        return TaskRules(parameters=(SEED,), check=check_num_samples)
    if task == "reconstruction" and NUM_SAMPLES in input_names:  # a VAE
        return TaskRules(forms=(("input", ("reconstruction", "latent")),
                                (NUM_SAMPLES, (SAMPLES,))),
                         parameters=(SEED,), check=check_num_samples)
    if task == "seq2seq":
        return TaskRules(check=lambda inputs: check_token_ids(inputs, len(vocabulary)))
    if task == "masked_lm":  # BERT pre-trained: token ids of its tokenizer
        return TaskRules(check=lambda inputs: check_token_ids(inputs, len(vocabulary)))
    if task == "classification" and TEXT_INPUT in input_names:  # a BERT classifier
        outs = (PROBABILITIES_OUT, LABEL_OUT) + ((CLASS_NAME_OUT,) if vocabulary else ())
        return TaskRules(forms=(("input", outs), (TEXT_INPUT, outs)), check=check_texts)
    if task == "language_model":
        vocab = tuple(vocabulary)
        return TaskRules(parameters=LM_PARAMETERS,
                         check=lambda inputs: check_prompts(inputs, vocab))
    return TaskRules()


def check_num_samples(inputs: dict[str, np.ndarray]) -> None:
    if NUM_SAMPLES in inputs:
        num_samples(inputs[NUM_SAMPLES])


def num_samples(value: Any) -> int:
    """The sample count of a `num_samples` input: one integer in [1, MAX_GENERATED_SAMPLES]."""
    n = np.asarray(value).reshape(-1)
    if n.size != 1 or n.dtype.kind not in "iu" or not 1 <= int(n[0]) <= MAX_GENERATED_SAMPLES:
        raise InvalidArgument(f"input {NUM_SAMPLES!r}: expected one integer in "
                              f"[1, {MAX_GENERATED_SAMPLES}], got {n.tolist()}")
    return int(n[0])


def check_token_ids(inputs: dict[str, np.ndarray], vocab_size: int) -> None:
    for name, ids in inputs.items():
        bad = ids[(ids < 0) | (ids >= vocab_size)]
        if bad.size:
            raise InvalidArgument(f"input {name!r}: token ids must be in [0, {vocab_size - 1}] "
                                  f"(the model's vocabulary), got {bad.reshape(-1)[0]}")


def check_prompts(inputs: dict[str, np.ndarray], vocabulary: Sequence[str]) -> None:
    for row, prompt in enumerate(inputs[PROMPT].reshape(-1)):
        encode_prompt(prompt, vocabulary, row)


def encode_prompt(prompt: Any, vocabulary: Sequence[str], row: int = 0) -> list[int]:
    """A prompt (UTF-8 bytes or str) as character ids of `vocabulary`."""
    where = f"input {PROMPT!r} row {row}"
    try:
        text = prompt.decode("utf-8") if isinstance(prompt, bytes) else str(prompt)
    except UnicodeDecodeError:
        raise InvalidArgument(f"{where}: a prompt must be UTF-8 text") from None
    if not 1 <= len(text) <= MAX_PROMPT_CHARS:
        raise InvalidArgument(f"{where}: a prompt needs 1 to {MAX_PROMPT_CHARS} characters, "
                              f"got {len(text)}")
    index = {c: i for i, c in enumerate(vocabulary)}
    unknown = sorted({c for c in text if c not in index})
    if unknown:
        shown = ", ".join(repr(c) for c in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
        raise InvalidArgument(f"{where}: characters not in the model's vocabulary: {shown}")
    return [index[c] for c in text]


def check_texts(inputs: dict[str, np.ndarray]) -> None:
    """A BERT classifier's `text` rows: UTF-8, at most MAX_PROMPT_CHARS characters each."""
    if TEXT_INPUT in inputs:
        for row, text in enumerate(inputs[TEXT_INPUT].reshape(-1)):
            decode_text(text, row)
    else:  # token ids: the tokenizer's vocabulary
        from trainserve.training.datasets.tokenizer import vocab_size
        check_token_ids(inputs, vocab_size())


def decode_text(value: Any, row: int = 0) -> str:
    """One `text` row (UTF-8 bytes or str) as str; characters outside the tokenizer's
    vocabulary become [UNK] later, so only the encoding and the length are checked."""
    where = f"input {TEXT_INPUT!r} row {row}"
    try:
        text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
    except UnicodeDecodeError:
        raise InvalidArgument(f"{where}: text must be UTF-8") from None
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidArgument(f"{where}: at most {MAX_PROMPT_CHARS} characters, got {len(text)}")
    return text


def check_attention_size(shape: Sequence[int]) -> None:
    """Refuse an `attention` output of `shape` [N, layers, heads, queries, keys] with more
    than MAX_ATTENTION_VALUES values, before it is computed."""
    values = math.prod(int(d) for d in shape)
    if values > MAX_ATTENTION_VALUES:
        dims = " x ".join(str(int(d)) for d in shape)
        raise ResourceExhausted(
            f"output {ATTENTION!r}: {dims} (rows x layers x heads x queries x keys) = {values} "
            f"values exceed the limit of {MAX_ATTENTION_VALUES} per request; send fewer rows "
            f"or shorter inputs")
