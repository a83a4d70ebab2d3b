"""Model registry: turns a finished job's artifact into a registered, immutable model version.

The artifact is copied to `<storage>/models/<name>/<version>/` and described by a
`ModelVersion` record; both steps are idempotent, so a job re-run after a crash registers
the same version once.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from google.protobuf import json_format

from trainserve.core.pb import job_pb2, model_pb2, spec_pb2
from trainserve.store import files
from trainserve.store.models import ModelStore
from trainserve.store.names import MODEL, NameClaims
from trainserve.core.tenancy import Principal, check_visible, claim


def model_dir(storage_dir: str | Path, name: str, version: int) -> Path:
    return Path(storage_dir) / "models" / name / str(version)


def io_specs(meta: dict) -> tuple[list[model_pb2.TensorSpec], list[model_pb2.TensorSpec]]:
    """The inference inputs and outputs of a model, from its artifact metadata."""
    if meta["task"] == "generation":  # a GAN: how many samples in, the samples out
        return _generation_io(meta)
    if meta["task"] in ("seq2seq", "language_model"):
        return _token_io_specs(meta)
    inputs = [model_pb2.TensorSpec(name="input", datatype="FP32",
                                   shape=[-1, *meta["input_shape"]])]
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


def register(models: ModelStore, storage_dir: str | Path, job: job_pb2.Job,
             artifact_dir: str | Path, caller: Principal) -> model_pb2.ModelVersion:
    """Register the artifact a job produced under the job's model name, for the job's owner,
    acting as `caller` (the dispatcher acts as the owner). The name is claimed for the owner
    (again: the job claimed it at submission); ALREADY_EXISTS, and nothing registered, if
    another user holds it."""
    name = job.spec.name
    check_visible(job.user, caller, f"job {job.id!r} not found")
    claim(NameClaims(models.r), [(MODEL, name, "spec.name")], job.user)
    version = models.allocate_version(name, job.id)
    target = model_dir(storage_dir, name, version)
    _copy_once(Path(artifact_dir), target)
    meta = json.loads((target / "meta.json").read_text())
    inputs, outputs = io_specs(meta)
    pre = meta.get("preprocessing") or {}
    search = meta.get("search") or {}  # set by a search on its best trial's artifact
    spec = job.spec
    if search:
        spec = json_format.ParseDict(meta["spec"], spec_pb2.JobSpec(), ignore_unknown_fields=True)
        spec.name = job.spec.name
    mv = model_pb2.ModelVersion(
        name=name, version=version, job_id=job.id, user=job.user,
        dataset_hash=meta.get("dataset_hash", ""),
        seed=job.spec.training.seed, spec=spec, task=meta["task"],
        trial_id=search.get("trial_id", ""), search_config=search.get("config", {}),
        class_names=[str(c) for c in meta.get("class_names") or []], inputs=inputs,
        outputs=outputs, metrics={k: float(v) for k, v in (meta.get("metrics") or {}).items()},
        artifact_uri=str(target),
        preprocessing=model_pb2.Preprocessing(kind=pre.get("kind", "none"),
                                              shift=pre.get("shift", []),
                                              scale=pre.get("scale", [])))
    mv.created_at.FromNanoseconds(int(time.time() * 1e9))
    models.put(mv)
    return mv


def _copy_once(src: Path, target: Path) -> None:
    """Copy the artifact `src` to the version's folder `target`, durably, unless an identical
    copy is there already. A folder there is trusted only when every file matches `src` by
    hash: one torn by a crash mid-copy (its meta.json present or not) is replaced. The copy
    goes to a uuid-named temp folder (the storage is shared: process ids repeat across
    nodes), is fsynced, then renamed into place, before the version's record is written."""
    if _same_tree(src, target) or (not src.is_dir() and (target / "meta.json").is_file()):
        return  # (a source already cleaned up leaves nothing to compare: keep the copy)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = files.temp_path(target)
    try:
        shutil.copytree(src, tmp)
        files.fsync_tree(tmp)
        if _same_tree(src, target):  # another registrar of this job got there first
            return
        shutil.rmtree(target, ignore_errors=True)
        os.rename(tmp, target)
        files.fsync_dir(target.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _same_tree(src: Path, target: Path) -> bool:
    """Whether `target` holds exactly `src`'s files with the same bytes."""
    if not (target / "meta.json").is_file():
        return False
    names = sorted(p.relative_to(src) for p in src.rglob("*") if p.is_file())
    if names != sorted(p.relative_to(target) for p in target.rglob("*") if p.is_file()):
        return False
    return all(files.sha256_of(src / n) == files.sha256_of(target / n) for n in names)
