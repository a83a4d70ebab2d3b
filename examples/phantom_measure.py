"""The lesion-phantom examples over several seeds: detection (`phantom_cnn.yaml`, also on
"another hospital's scanner"), lesion-size regression (`phantom_size_cnn.yaml`), a ResNet
(`phantom_resnet.yaml`) and augmentation (`phantom_augment.yaml` against
`phantom_noaugment.yaml`). Prints the section "Lesion phantoms" of examples/README.md (the
same table goes into docs/evaluation.md); `--write` puts it in both.

Runs the training core in this process (no stack needed), on 1 CPU thread:

    .venv/bin/python examples/phantom_measure.py [ROW ...] [--seeds 0 1 2] [--write]

ROW is a row's key (detect, size, resnet, augment); with ROWs, only those rows are trained
again and the section's other rows are kept as they are. Each value is the mean ± standard
deviation (population) over the seeds, then the seeds' own values in seed order. The seed is
the training seed: the split, the initialization and the shuffling; the phantoms themselves
are fixed per dataset name. tests/test_examples_phantoms.py checks each row's claim (its
target) at seed 0.
"""
from __future__ import annotations

import argparse
import hashlib
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

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
TARGETS = {"examples": HERE / "README.md", "docs": HERE.parent / "docs" / "evaluation.md"}
BEGIN = "<!-- examples/phantom_measure.py: begin -->"
END = "<!-- examples/phantom_measure.py: end -->"
# "Another scanner": another generator seed, more noise (a lower dose), a wider PSF.
EXTERNAL = {"seed": 7, "noise": 0.3, "blur_px": 0.8, "n": 1000}
# The claim each row makes (tests/test_examples_phantoms.py checks it at seed 0).
SIZE_RATIO_MAX = 0.7      # lesion-size MAE, times the mean predictor's


def spec_of(name: str, seed: int) -> spec_pb2.JobSpec:
    doc = yaml.safe_load((HERE / f"{name}.yaml").read_text())
    doc.setdefault("training", {})["seed"] = seed
    return check_spec(json_format.ParseDict(doc, spec_pb2.JobSpec()))


def trained(name: str, seed: int, work: Path):
    """(spec, TrainResult, seconds) of example `name` trained at `seed`."""
    spec = spec_of(name, seed)
    started = time.monotonic()
    result = train(spec, work / f"{name}-{seed}", NullReporter())
    return spec, result, time.monotonic() - started


# --- baselines -------------------------------------------------------------------------------

def classification_baselines(spec: spec_pb2.JobSpec) -> dict[str, float]:
    """Test accuracy of the majority class and of a logistic regression on the pixels."""
    from sklearn.linear_model import LogisticRegression
    d = prepare_data(spec)
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    lr = LogisticRegression(max_iter=2000, C=0.1).fit(flat(d.x_train), d.y_train)
    return {"majority": float(np.mean(d.y_test == np.bincount(d.y_train).argmax())),
            "logreg": float(lr.score(flat(d.x_test), d.y_test))}


def mean_predictor_mae(spec: spec_pb2.JobSpec) -> float:
    """Test MAE of predicting every lesion at the training split's mean diameter."""
    d = prepare_data(spec)
    return float(np.abs(d.y_test - d.y_train.mean()).mean())


def external_spec(spec: spec_pb2.JobSpec, artifact: str, npz: Path) -> spec_pb2.JobSpec:
    """An evaluation of the trained artifact on the uploaded NPZ `npz`, as the service runs it."""
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


def scanner_b(work: Path) -> Path:
    npz = work / "scanner_b.npz"
    if not npz.exists():
        write_npz(str(npz), EXTERNAL["n"], 32, EXTERNAL["seed"], EXTERNAL["noise"],
                  EXTERNAL["blur_px"])
    return npz


# --- the rows: what one seed measures --------------------------------------------------------

def run_detect(seed: int, work: Path) -> dict[str, float]:
    spec, result, seconds = trained("phantom_cnn", seed, work)
    ext = evaluate_model(external_spec(spec, result.artifact_dir, scanner_b(work)),
                         work / f"eval-{seed}", NullReporter()).metrics
    m = result.metrics
    return {"accuracy": m["test_accuracy"], "auc": m["test_auc"],
            "ext_accuracy": ext["test_accuracy"], "ext_auc": ext["test_auc"],
            "ext_sensitivity": ext["test_lesion_sensitivity"], "seconds": seconds,
            **classification_baselines(spec)}


def run_size(seed: int, work: Path) -> dict[str, float]:
    spec, result, seconds = trained("phantom_size_cnn", seed, work)
    m, base = result.metrics, mean_predictor_mae(spec)
    return {"mae": m["test_mae"], "base_mae": base, "ratio": m["test_mae"] / base,
            "r2": m["test_r2"], "seconds": seconds}


def run_resnet(seed: int, work: Path) -> dict[str, float]:
    spec, result, seconds = trained("phantom_resnet", seed, work)
    return {"accuracy": result.metrics["test_accuracy"], "auc": result.metrics["test_auc"],
            "seconds": seconds, **classification_baselines(spec)}


def run_augment(seed: int, work: Path) -> dict[str, float]:
    out = {}
    for label, name in (("aug", "phantom_augment"), ("none", "phantom_noaugment")):
        _, result, seconds = trained(name, seed, work)
        out |= {f"{label}_accuracy": result.metrics["test_accuracy"],
                f"{label}_auc": result.metrics["test_auc"], f"{label}_seconds": seconds}
    out["gain"] = out["aug_accuracy"] - out["none_accuracy"]
    return out


# --- rendering -------------------------------------------------------------------------------

def stat(runs: dict[int, dict], key: str, digits: int = 3, per_seed: bool = True) -> str:
    """"0.850 ± 0.013 (0.853 / 0.865 / 0.833)": mean ± std over the seeds, then each seed's."""
    values = [runs[s][key] for s in sorted(runs)]
    text = f"{statistics.fmean(values):.{digits}f} ± {statistics.pstdev(values):.{digits}f}"
    if per_seed and len(values) > 1:
        text += " (" + " / ".join(f"{v:.{digits}f}" for v in values) + ")"
    return text


def seconds(runs: dict[int, dict], key: str = "seconds") -> str:
    return f"training {stat(runs, key, 0, per_seed=False)} s"


def show_detect(r: dict[int, dict]) -> tuple[str, str]:
    result = (f"test accuracy {stat(r, 'accuracy')}, ROC AUC {stat(r, 'auc')}; on another "
              f"scanner (1000 phantoms of generator seed {EXTERNAL['seed']}, noise "
              f"{EXTERNAL['noise']}, PSF {EXTERNAL['blur_px']} px): accuracy "
              f"{stat(r, 'ext_accuracy')}, ROC AUC {stat(r, 'ext_auc')}, lesion sensitivity "
              f"{stat(r, 'ext_sensitivity')}; {seconds(r)}")
    return result, (f"majority class {stat(r, 'majority', per_seed=False)}, logistic "
                    f"regression on the pixels {stat(r, 'logreg')}")


def show_size(r: dict[int, dict]) -> tuple[str, str]:
    result = (f"test MAE {stat(r, 'mae')} px, {stat(r, 'ratio')} × the mean predictor's; "
              f"R² {stat(r, 'r2')}; {seconds(r)}")
    return result, (f"mean predictor (every lesion at the training split's mean diameter) "
                    f"MAE {stat(r, 'base_mae')} px")


def show_resnet(r: dict[int, dict]) -> tuple[str, str]:
    result = f"test accuracy {stat(r, 'accuracy')}, ROC AUC {stat(r, 'auc')}; {seconds(r)}"
    return result, (f"logistic regression on the pixels {stat(r, 'logreg')}; the CNN of "
                    f"`phantom_cnn.yaml`: the first row")


def show_augment(r: dict[int, dict]) -> tuple[str, str]:
    result = (f"with flips and quarter turns: test accuracy {stat(r, 'aug_accuracy')}, ROC AUC "
              f"{stat(r, 'aug_auc')}; without: accuracy {stat(r, 'none_accuracy')}, ROC AUC "
              f"{stat(r, 'none_auc')}; gain in accuracy {stat(r, 'gain')}; "
              f"{seconds(r, 'aug_seconds')} with, {stat(r, 'none_seconds', 0, False)} s without")
    return result, "the same spec without augmentation"


@dataclass(frozen=True)
class Row:
    """One line of the table: what one seed measures (`run`), its text over the seeds
    (`show`: result, baseline), and the claim (`target`, checked on one seed's values by
    `check`)."""
    key: str
    task: str
    examples: str
    run: Callable[[int, Path], dict[str, float]]
    show: Callable[[dict[int, dict]], tuple[str, str]]
    target: str
    check: Callable[[dict[str, float]], bool]


ROWS = [
    Row("detect", "Lesion present or not (`phantoms`, 32 × 32)", "`phantom_cnn.yaml`",
        run_detect, show_detect, "accuracy > logistic regression's",
        lambda m: m["accuracy"] > m["logreg"]),
    Row("size", "Lesion diameter in pixels, regression (`phantoms64_size`, 64 × 64, every "
        "image with a lesion)", "`phantom_size_cnn.yaml`", run_size, show_size,
        f"MAE < {SIZE_RATIO_MAX} × the mean predictor's", lambda m: m["ratio"] < SIZE_RATIO_MAX),
    Row("resnet", "Lesion present or not with a ResNet (`phantoms`, 32 × 32)",
        "`phantom_resnet.yaml`", run_resnet, show_resnet, "accuracy > logistic regression's",
        lambda m: m["accuracy"] > m["logreg"]),
    Row("augment", "Augmentation that keeps the label (flips, quarter turns) on 15% of the "
        "labels (`phantoms`, 210 training images)",
        "`phantom_augment.yaml`, `phantom_noaugment.yaml`", run_augment, show_augment,
        "accuracy with > without", lambda m: m["gain"] > 0),
]
BY_KEY = {row.key: row for row in ROWS}


def render(row: Row, runs: dict[int, dict]) -> str:
    result, baseline = row.show(runs)
    missed = [s for s in sorted(runs) if not row.check(runs[s])]
    target = row.target + (f" (missed at seed {', '.join(map(str, missed))})" if missed else "")
    return f"| {row.task} | {row.examples} | {result} | {baseline} | {target} |"


def section(lines: dict[str, str], seeds: list[int], docs: bool = False) -> str:
    """The section between BEGIN and END: examples/README.md's, or (`docs`) the one of
    docs/evaluation.md, which sits under the phantoms' own description."""
    if docs:
        head = ["| task | examples | result | baseline | target |", "|---|---|---|---|---|"]
        rows = [lines[r.key] for r in ROWS if r.key in lines]
        return "\n".join([BEGIN, *head, *rows, END])
    head = ["## Lesion phantoms", "",
            "Made by `.venv/bin/python examples/phantom_measure.py --write` (in-process, 1 CPU",
            "thread; the training times are wall-clock seconds on a shared machine). Values:",
            f"mean ± std over the training seeds {', '.join(map(str, seeds))}, then each "
            "seed's; the target is",
            "the row's claim, which `tests/test_examples_phantoms.py` checks at seed 0. The",
            "datasets, the size target and the augmentation: "
            "[docs/evaluation.md](../docs/evaluation.md#lesion-phantoms-built-in).", "",
            "| task | examples | result | baseline | target |", "|---|---|---|---|---|"]
    rows = [lines[r.key] for r in ROWS if r.key in lines]
    return "\n".join([BEGIN, *head, *rows, END])


def kept_lines(text: str) -> dict[str, str]:
    """The rows already in a section, by key (found by their examples' cell)."""
    found = {}
    for row in ROWS:
        match = re.search(rf"^\| [^|]* \| {re.escape(row.examples)} \|.*$", text, re.M)
        if match:
            found[row.key] = match.group(0)
    return found


def write(path: Path, lines: dict[str, str], seeds: list[int]) -> None:
    """Replace the section between BEGIN and END in `path` (appended when missing), keeping
    the rows not measured now."""
    text, docs = path.read_text(), path == TARGETS["docs"]
    if BEGIN in text:
        start, rest = text.split(BEGIN, 1)
        lines = kept_lines(rest.split(END, 1)[0]) | lines
        text = start + section(lines, seeds, docs) + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section(lines, seeds, docs) + "\n"
    path.write_text(text)


def main() -> None:
    import torch
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", nargs="*", metavar="ROW", help="one of: " + ", ".join(BY_KEY))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--write", action="store_true",
                    help="put the rows in examples/README.md and docs/evaluation.md")
    args = ap.parse_args()
    if unknown := set(args.rows) - set(BY_KEY):
        ap.error(f"unknown rows {sorted(unknown)}; known: {', '.join(BY_KEY)}")
    torch.set_num_threads(1)
    lines = {}
    with tempfile.TemporaryDirectory() as tmp:
        for row in [BY_KEY[k] for k in args.rows] or ROWS:
            runs = {}
            for seed in args.seeds:
                runs[seed] = row.run(seed, Path(tmp))
                print(row.key, seed, {k: round(v, 3) for k, v in runs[seed].items()},
                      file=sys.stderr, flush=True)
            lines[row.key] = render(row, runs)
            print(lines[row.key], flush=True)
    if args.write:
        for path in TARGETS.values():
            write(path, lines, args.seeds)


if __name__ == "__main__":
    main()
