"""How well does examples/phantom_cnn.yaml find lesions, and how well does it hold up on
"another hospital's scanner"? For each seed: train the example on the built-in `phantoms`,
then evaluate the trained model (as an evaluation job does, `training.external`) on phantoms
from another generator seed with more noise and blur; print a markdown table with the test
accuracy and ROC AUC, the external ones, the wall-clock seconds of the training, and two
baselines on the same test split: the majority class and a logistic regression on the pixels.

Runs the training core in this process (no stack needed), one CPU thread:

    .venv/bin/python examples/phantom_measure.py [--seeds 0 1 2]

The numbers in examples/README.md and docs/evaluation.md come from this script.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from google.protobuf import json_format

from trainserve.core.pb import spec_pb2
from trainserve.training.data import prepare_data
from trainserve.training.datasets.phantoms import write_npz
from trainserve.training.describe import describe
from trainserve.training.external import evaluate_model
from trainserve.training.loop import train
from trainserve.training.reporting import NullReporter
from trainserve.training.validate import check_spec

HERE = Path(__file__).resolve().parent
# "Another scanner": another generator seed, more noise (a lower dose), a wider PSF.
EXTERNAL = {"seed": 7, "noise": 0.3, "blur_px": 0.8, "n": 1000}


def spec_of(seed: int) -> spec_pb2.JobSpec:
    doc = yaml.safe_load((HERE / "phantom_cnn.yaml").read_text())
    doc["training"]["seed"] = seed
    return check_spec(json_format.ParseDict(doc, spec_pb2.JobSpec()))


def external_spec(spec: spec_pb2.JobSpec, artifact: str, npz: Path) -> spec_pb2.JobSpec:
    import hashlib
    full = spec_pb2.JobSpec()
    full.CopyFrom(spec)
    ev = full.evaluate
    ev.model, ev.dataset, ev.model_name, ev.model_version = "phantom-cnn", "scanner_b", \
        "phantom-cnn", 1
    ev.artifact_path = artifact
    full.dataset.ClearField("num_samples")
    full.dataset.name, full.dataset.task = "scanner_b", "classification"
    full.dataset.uploaded.CopyFrom(spec_pb2.UploadedContent(
        sha256=hashlib.sha256(npz.read_bytes()).hexdigest(), format="npz", path=str(npz),
        schema=describe(npz, "npz")[0]))
    return full


def baselines(spec: spec_pb2.JobSpec) -> tuple[float, float]:
    """(majority class, logistic regression on the normalized pixels) test accuracy."""
    from sklearn.linear_model import LogisticRegression
    d = prepare_data(spec)
    majority = float(np.mean(d.y_test == np.bincount(d.y_train).argmax()))
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    lr = LogisticRegression(max_iter=2000, C=0.1).fit(flat(d.x_train), d.y_train)
    return majority, float(lr.score(flat(d.x_test), d.y_test))


def measure(seed: int, work: Path, npz: Path) -> dict[str, float]:
    spec = spec_of(seed)
    started = time.monotonic()
    result = train(spec, work / f"train-{seed}", NullReporter())
    seconds = time.monotonic() - started
    ext = evaluate_model(external_spec(spec, result.artifact_dir, npz), work / f"eval-{seed}",
                         NullReporter()).metrics
    majority, logreg = baselines(spec)
    m = result.metrics
    return {"seed": seed, "accuracy": m["test_accuracy"], "auc": m["test_auc"],
            "ext_accuracy": ext["test_accuracy"], "ext_auc": ext["test_auc"],
            "ext_sensitivity": ext["test_lesion_sensitivity"], "seconds": seconds,
            "majority": majority, "logreg": logreg}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args()
    import torch
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        npz = work / "scanner_b.npz"
        write_npz(str(npz), EXTERNAL["n"], 32, EXTERNAL["seed"], EXTERNAL["noise"],
                  EXTERNAL["blur_px"])
        for seed in args.seeds:
            rows.append(measure(seed, work, npz))
            print({k: round(v, 3) for k, v in rows[-1].items()}, flush=True)
    keys = ("accuracy", "auc", "ext_accuracy", "ext_auc", "ext_sensitivity", "seconds",
            "majority", "logreg")
    print("| seed | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for r in rows:
        print(f"| {r['seed']} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + " |")
    print("| mean ± std | " + " | ".join(
        f"{statistics.mean(r[k] for r in rows):.3f} ± "
        f"{statistics.pstdev(r[k] for r in rows):.3f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
