"""Does masked-language-model pre-training help? Fine-tune BERT on `corpus_source` from a
pre-trained encoder (examples/bert_mlm.yaml, then examples/bert_finetune.yaml's transfer) and
from scratch (the same spec without `model.transfer`), same budget, several seeds; print the
last epoch's validation accuracy and the test accuracy (mean ± std) as a markdown table.

Runs the training core in this process (no stack needed):

    .venv/bin/python examples/bert_measure.py [--seeds 0 1 2] [--pretrain-epochs N] [--jobs 3]

The numbers in docs/bert.md come from this script.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml
from google.protobuf import json_format

from trainserve.core.pb import spec_pb2
from trainserve.training.loop import train
from trainserve.training.reporting import ListReporter, NullReporter
from trainserve.training.validate import check_spec

HERE = Path(__file__).resolve().parent


def load_spec(name: str, **training) -> dict:
    doc = yaml.safe_load((HERE / name).read_text())
    doc = doc.get("spec", doc)
    doc.setdefault("training", {}).update(training)
    return doc


def run(doc: dict, job_dir: Path, reporter=None):
    spec = check_spec(json_format.ParseDict(doc, spec_pb2.JobSpec()))
    return train(spec, job_dir, reporter or NullReporter())


def pretrain(seed: int, epochs: int | None, root: Path) -> Path:
    extra = {"seed": seed} | ({"epochs": epochs} if epochs else {})
    result = run(load_spec("bert_mlm.yaml", **extra), root / f"mlm-{seed}")
    print(f"pre-trained seed {seed}: " + ", ".join(
        f"{k}={v:.3f}" for k, v in sorted(result.metrics.items())), flush=True)
    return Path(result.artifact_dir)


def finetune(seed: int, artifact: Path | None, root: Path) -> dict[str, float]:
    doc = load_spec("bert_finetune.yaml", seed=seed)
    if artifact is None:
        doc["model"].pop("transfer", None)
    else:
        doc["model"]["transfer"] = {**doc["model"]["transfer"], "artifact_path": str(artifact)}
    kind = "scratch" if artifact is None else "pretrained"
    reporter = ListReporter()
    metrics = run(doc, root / f"{kind}-{seed}", reporter).metrics
    return metrics | {"val_accuracy": reporter.epochs[-1].metrics["val_accuracy"]}


def summary(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def one_seed(seed: int, pretrain_epochs: int | None) -> tuple[dict, dict]:
    """(fine-tuned from the pre-trained encoder, from scratch) final metrics of `seed`."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        artifact = pretrain(seed, pretrain_epochs, root)
        pretrained, scratch = finetune(seed, artifact, root), finetune(seed, None, root)
    print(f"seed {seed}: val_accuracy pretrained {pretrained['val_accuracy']:.3f}, "
          f"scratch {scratch['val_accuracy']:.3f}", flush=True)
    return pretrained, scratch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pretrain-epochs", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=1, help="seeds run in parallel processes")
    args = parser.parse_args()
    started = time.monotonic()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(one_seed, args.seeds, [args.pretrain_epochs] * len(args.seeds)))
    rows = {"pretrained": [r[0] for r in results], "scratch": [r[1] for r in results]}
    print(f"\nseeds {args.seeds}, {time.monotonic() - started:.0f} s\n")
    print("| fine-tuned from | val_accuracy | test_accuracy |\n|---|---|---|")
    for kind, metrics in rows.items():
        print(f"| {kind} | {summary([m['val_accuracy'] for m in metrics])} | "
              f"{summary([m['test_accuracy'] for m in metrics])} |")


if __name__ == "__main__":
    main()
