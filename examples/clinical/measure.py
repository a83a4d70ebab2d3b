"""Train examples/clinical/mlp.yaml in this process (no server) on clinical.csv, over seeds,
and print the clinical metrics as mean ± std: the numbers docs/training-options.md quotes.

    python examples/clinical/measure.py [--seeds 0 1 2]

The CSV is pinned as the server pins an upload (content hash, path, the schema described at
upload), so validation, encoding and training run exactly as in a job.
"""
from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
from pathlib import Path

from trainserve.core.pb import spec_pb2
from trainserve.core.spec import load_spec_file
from trainserve.training.describe import describe
from trainserve.training.loop import train
from trainserve.training.reporting import ListReporter
from trainserve.training.userdata import schema_for_job
from trainserve.training.validate import check_spec

HERE = Path(__file__).parent
SHOWN = ("majority_class_accuracy", "test_accuracy", "test_auc", "test_disease_sensitivity",
         "test_disease_specificity", "test_disease_ppv", "test_disease_npv", "test_brier",
         "test_ece")


def pinned_spec(seed: int, csv: Path = HERE / "clinical.csv"):
    spec = load_spec_file(HERE / "mlp.yaml")
    spec.training.seed = seed
    schema = describe(csv, "csv")[0]
    spec.dataset.uploaded.CopyFrom(spec_pb2.UploadedContent(
        sha256=hashlib.sha256(csv.read_bytes()).hexdigest(), format="csv", path=str(csv),
        schema=schema_for_job(schema, spec.dataset.target_column)))
    return check_spec(spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    seeds = ap.parse_args().seeds
    runs = []
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            result = train(pinned_spec(seed), tmp, ListReporter())
        # The baseline a classifier must beat: always answering the test split's commonest class.
        rows = [sum(r) for r in result.confusion_matrix]
        runs.append(result.metrics | {"majority_class_accuracy": max(rows) / sum(rows)})
    print(f"seeds {seeds}")
    for key in SHOWN:
        values = [r[key] for r in runs]
        print(f"{key:28s} {statistics.fmean(values):.3f} ± {statistics.pstdev(values):.3f}")


if __name__ == "__main__":
    main()
