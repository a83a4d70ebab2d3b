"""A model's inference signature (its OIP v2 inputs and outputs) and its `ModelVersion`
record, both read from the artifact's metadata (`meta.json`)."""
from __future__ import annotations

from trainserve.core.pb import model_pb2
from trainserve.serve.task_io import ATTENTION


def version_record(name: str, version: int, meta: dict,
                   artifact_uri: str) -> model_pb2.ModelVersion:
    """What serving needs of a registered version: its task, classes, signature,
    preprocessing and artifact. The registry adds the provenance (job, user, spec, metrics)."""
    inputs, outputs = io_specs(meta)
    pre = meta.get("preprocessing") or {}
    return model_pb2.ModelVersion(
        name=name, version=version, task=meta["task"],
        class_names=[str(c) for c in meta.get("class_names") or []],
        inputs=inputs, outputs=outputs, artifact_uri=artifact_uri,
        preprocessing=model_pb2.Preprocessing(kind=pre.get("kind", "none"),
                                              shift=pre.get("shift", []),
                                              scale=pre.get("scale", []),
                                              columns=_columns(pre)))


def _columns(pre: dict) -> list[model_pb2.Preprocessing.Column]:
    """A table model's column encoding (`training.tabular`), NaN for "no fill"."""
    return [model_pb2.Preprocessing.Column(
        name=c["name"], kind=c["kind"],
        fill=float("nan") if c.get("fill") is None else float(c["fill"]),
        indicator=bool(c.get("indicator")), categories=c.get("categories", []),
        missing=c.get("missing", ""), fill_category=c.get("fill_category"),
        positive=c.get("positive", ""))
        for c in pre.get("columns") or []]


def table_columns(meta: dict) -> list[dict]:
    """The raw columns a table model takes (empty for every other model)."""
    return list((meta.get("preprocessing") or {}).get("columns") or [])


def io_specs(meta: dict) -> tuple[list[model_pb2.TensorSpec], list[model_pb2.TensorSpec]]:
    """The inference inputs and outputs of a model, from its artifact metadata; a model with
    attention also has the optional output `attention` (`attention_spec`)."""
    inputs, outputs = _task_io_specs(meta)
    extra = attention_spec(meta)
    return inputs, outputs + ([extra] if extra is not None else [])


def attention_spec(meta: dict) -> model_pb2.TensorSpec | None:
    """The optional `attention` output, FP32 [-1, layers, heads, queries, keys], of a model
    whose network attends (its stored spec says how); None for every other model.
    BERT and the transformer encoder: tokens x tokens (the transformer's CLS token first
    when pooled by it); seq2seq with attention: one layer and head, decoder steps x encoder
    positions; GPT: the prompt's characters x themselves (-1: the longest prompt's last
    `context_length` characters)."""
    model, shape = _stored_model(meta), None
    t = int((meta.get("input_shape") or [0])[0])
    if "bert" in model:
        shape = [_int(model["bert"], "numLayers"), _int(model["bert"], "numHeads"), t, t]
    elif "transformer" in model:
        tr = model["transformer"]
        n = t + (tr.get("pooling") == "cls")
        shape = [_int(tr, "numLayers"), _int(tr, "numHeads"), n, n]
    elif (model.get("seq2seq") or {}).get("attention"):
        shape = [1, 1, int(meta.get("output_length") or t), t]
    elif "gpt" in model:
        shape = [_int(model["gpt"], "numLayers"), _int(model["gpt"], "numHeads"), -1, -1]
    if shape is None or 0 in shape:
        return None
    return model_pb2.TensorSpec(name=ATTENTION, datatype="FP32", shape=[-1, *shape],
                                optional=True)


def _int(fields: dict, name: str) -> int:
    """A size of the stored spec (proto3 JSON; defaults are filled in before it is stored),
    0 when missing."""
    return int(fields.get(name) or 0)


def _task_io_specs(meta: dict):
    if meta["task"] == "generation":  # a GAN: how many samples in, the samples out
        return _generation_io(meta)
    if meta["task"] in ("seq2seq", "language_model"):
        return _token_io_specs(meta)
    if meta["task"] == "masked_lm" or is_text_classifier(meta):
        return _bert_io_specs(meta)
    inputs = [model_pb2.TensorSpec(name="input", datatype="FP32",
                                   shape=[-1, *meta["input_shape"]])]
    if table_columns(meta):  # raw rows: one text cell per column, encoded by the model
        inputs = [model_pb2.TensorSpec(name="input", datatype="BYTES",
                                       shape=[-1, len(table_columns(meta))])]
    if meta["task"] == "classification":
        n = int(meta.get("output_dim") or len(meta.get("class_names") or []))
        outputs = [model_pb2.TensorSpec(name="probabilities", datatype="FP32", shape=[-1, n]),
                   model_pb2.TensorSpec(name="label", datatype="INT64", shape=[-1])]
    elif meta["task"] == "reconstruction":
        outputs = [model_pb2.TensorSpec(name="reconstruction", datatype="FP32",
                                        shape=[-1, *meta["input_shape"]]),
                   model_pb2.TensorSpec(name="latent", datatype="FP32",
                                        shape=[-1, _latent_dim(meta)])]
        if _variational(meta):  # a VAE also generates: the alternative input and its output
            gen_inputs, gen_outputs = _generation_io(meta)
            inputs, outputs = inputs + gen_inputs, outputs + gen_outputs
    else:
        outputs = [model_pb2.TensorSpec(name="prediction", datatype="FP32",
                                        shape=[-1, int(meta.get("output_dim") or 1)])]
    return inputs, outputs


def _generation_io(meta: dict):
    """GANs (and VAEs, besides reconstruction): one INT64 input `num_samples` [1] (a request
    asks for that many samples; the seed is the request parameter `seed`, not an input);
    output `samples` [-1, *input_shape] in the training data's units."""
    return ([model_pb2.TensorSpec(name="num_samples", datatype="INT64", shape=[1])],
            [model_pb2.TensorSpec(name="samples", datatype="FP32",
                                  shape=[-1, *meta["input_shape"]])])


def _token_io_specs(meta: dict):
    """Token models (train.seq_tasks). seq2seq: input token ids INT64 [-1, T], output the greedy
    decoding `tokens` INT64 [-1, T]. language_model: one `prompt` string per row BYTES [-1]
    (characters of the vocabulary, `class_names`), output the generated continuation `text`
    BYTES [-1]; the request parameters (max_new_tokens, ...) are in serve.task_io."""
    if meta["task"] == "seq2seq":
        t = int(meta["input_shape"][0])
        return ([model_pb2.TensorSpec(name="input", datatype="INT64", shape=[-1, t])],
                [model_pb2.TensorSpec(name="tokens", datatype="INT64",
                                      shape=[-1, int(meta.get("output_length") or t)])])
    return ([model_pb2.TensorSpec(name="prompt", datatype="BYTES", shape=[-1])],
            [model_pb2.TensorSpec(name="text", datatype="BYTES", shape=[-1])])


def is_text_classifier(meta: dict) -> bool:
    """A BERT classifier (`model.bert`): its inputs are the tokenizer's ids, or raw text."""
    return meta["task"] == "classification" and "bert" in _stored_model(meta)


def _bert_io_specs(meta: dict):
    """BERT (docs/bert.md). Both take token ids `input` INT64 [-1, T]
    (`training.datasets.tokenizer`: [CLS] first, [PAD] after the text). masked_lm: output
    `tokens` INT64 [-1, T], the most likely token at every position (at a [MASK], the
    model's guess). A classifier also takes
    `text` BYTES [-1] instead (one UTF-8 string per row, tokenized by the server) and answers
    like every classifier."""
    t = int(meta["input_shape"][0])
    ids = model_pb2.TensorSpec(name="input", datatype="INT64", shape=[-1, t])
    if meta["task"] == "masked_lm":
        return [ids], [model_pb2.TensorSpec(name="tokens", datatype="INT64", shape=[-1, t])]
    n = int(meta.get("output_dim") or len(meta.get("class_names") or []))
    return ([ids, model_pb2.TensorSpec(name="text", datatype="BYTES", shape=[-1])],
            [model_pb2.TensorSpec(name="probabilities", datatype="FP32", shape=[-1, n]),
             model_pb2.TensorSpec(name="label", datatype="INT64", shape=[-1])])


def _stored_model(meta: dict) -> dict:
    return (meta.get("spec") or {}).get("model") or {}


def _variational(meta: dict) -> bool:
    """Whether an autoencoder is a VAE: recorded in the meta, else read from the stored spec."""
    if "variational" in meta:
        return bool(meta["variational"])
    ae = ((meta.get("spec") or {}).get("model") or {}).get("autoencoder") or {}
    return ae.get("kind") == "variational"


def _latent_dim(meta: dict) -> int:
    """An autoencoder's code width: recorded in the meta, else read from the stored spec."""
    if meta.get("latent_dim"):
        return int(meta["latent_dim"])
    ae = ((meta.get("spec") or {}).get("model") or {}).get("autoencoder") or {}
    return int(ae.get("latentDim", 8))
