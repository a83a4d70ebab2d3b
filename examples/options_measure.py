"""The training options one at a time: optimizers, losses, activations, initialization,
penalties, pooling, recurrent cells, schedules and augmentation, each a set of example specs
that differ in that option alone. Trains every spec of a row over seeds and prints the
section "Training options, one at a time" of examples/README.md; `--write` puts it there.

Runs the training core in this process (no stack needed), on 1 CPU thread:

    .venv/bin/python -m examples.options_measure [ROW ...] [--seeds 0 1 2] [--write]

ROW is a row's key (`optimizers`, `schedules`, ...); with ROWs, only those rows are trained
again and the section's other rows are kept as they are. tests/test_examples.py checks each
row's claim (`Row.check`) at the spec's own seed.
"""
from __future__ import annotations

import argparse
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
BEGIN = "<!-- examples/options_measure.py: begin -->"
END = "<!-- examples/options_measure.py: end -->"
# Where the section goes the first time: after the table of the course's topics.
AFTER_TABLE = "## Training options these examples use"


@dataclass(frozen=True)
class Row:
    """One line of the table: specs that differ in one option (by a short label), what is
    shown of each, and the claim checked. `variants` adds runs of a spec with fields overridden
    (`label: (spec, overrides)`); `shown(metrics)` is the text of one run; `check(runs)` takes
    the runs by label."""
    key: str
    topic: str
    specs: dict[str, str]                    # label: example name
    shown: Callable[[dict], str]
    check: Callable[[dict], bool]
    target: str
    variants: dict = field(default_factory=dict)
    seeds: tuple[int, ...] | None = None     # None: the command line's seeds
    checked: tuple[str, ...] | None = None   # the runs `check` reads; None: all of them

    def runs(self) -> dict[str, tuple[str, dict]]:
        return {label: (name, {}) for label, name in self.specs.items()} | self.variants

    def checked_runs(self) -> dict[str, tuple[str, dict]]:
        runs = self.runs()
        return {label: runs[label] for label in self.checked or runs}


def _acc(m: dict) -> str:
    return f"{m['test_accuracy']:.3f}"


def _sparsity(m: dict) -> str:
    return f"{m['weights_near_zero']:.0%} of weights < 0.001, accuracy {m['test_accuracy']:.3f}"


def _forecast(m: dict) -> str:
    return f"{m['test_mse'] / m['last_value_mse']:.3f} ×"


def _acc_of(runs: dict, label: str) -> float:
    return runs[label]["test_accuracy"]


def _named(pattern: str, *labels: str) -> dict[str, str]:
    """`{label: pattern.format(label)}`: the examples of a row, by what tells them apart."""
    return {label: pattern.format(label) for label in labels}


ROWS = [
    Row("bce", "Binary cross-entropy (`loss: bce`) against softmax cross-entropy, two classes",
        {"bce": "bce_breast_cancer"}, lambda m: f"AUC {m['test_auc']:.4f}, accuracy {_acc(m)}",
        lambda r: r["bce"]["test_auc"] >= 0.98, "bce AUC ≥ 0.98", checked=("bce",),
        variants={"cross_entropy": ("bce_breast_cancer", {"loss": {"name": "cross_entropy"}})}),
    Row("optimizers", "Full-batch `gd` (1 step an epoch), plain `sgd`, `sgd` with momentum 0.9, "
        "`adam`: same MLP, 40 epochs", _named("optimizer_{}_spirals", "gd", "sgd", "sgd_momentum",
                                              "adam"),
        _acc, lambda r: _acc_of(r, "gd") < _acc_of(r, "adam"),
        "gd < adam"),
    Row("activations", "Hidden activations sigmoid, ReLU, ELU in a 3-hidden-layer MLP",
        _named("activation_{}_spirals", "sigmoid", "relu", "elu"), _acc,
        lambda r: _acc_of(r, "sigmoid") + 0.1 < min(_acc_of(r, "relu"), _acc_of(r, "elu")),
        "sigmoid + 0.1 < ReLU, ELU"),
    Row("init", "Weight initialization of a 5-layer tanh MLP: `xavier_normal`, `normal` "
        "std 0.02, `normal` std 1", _named("init_{}_spirals", "xavier", "normal_small",
                                           "normal_large"), _acc,
        lambda r: _acc_of(r, "normal_small") + 0.1 < _acc_of(r, "xavier"),
        "std 0.02 + 0.1 < Xavier", checked=("xavier", "normal_small")),
    Row("penalties", "L1 against L2 weight penalty (`training.regularization`, both 0.003)",
        _named("regularization_{}_breast_cancer", "l1", "l2"), _sparsity,
        lambda r: r["l1"]["weights_near_zero"] > 2 * r["l2"]["weights_near_zero"] + 0.2,
        "L1 > 2 × L2 + 20 points"),
    Row("pooling", "Average against max pooling (`cnn.pooling`)",
        _named("pooling_{}_digits", "avg", "max"), _acc, lambda r: True, "—"),
    Row("elman", "Elman RNN (`rnn.cell: rnn`) against the LSTM, test MSE × the last-value "
        "forecast's", {"elman": "rnn_elman_sine", "lstm": "lstm_sine"}, _forecast,
        lambda r: r["elman"]["test_mse"] < r["elman"]["last_value_mse"] / 5,
        "Elman ≤ 0.2 ×", seeds=(0,), checked=("elman",)),
    Row("schedules", "Learning-rate schedules for SGD (momentum 0.9) at lr 0.1, at the edge of "
        "stability: none, `step`, `plateau`, `warmup_epochs`; test accuracy (loss)",
        _named("schedule_{}_digits", "none", "step", "plateau", "warmup"),
        lambda m: f"{_acc(m)} ({m['test_loss']:.2f})",
        lambda r: all(_acc_of(r, s) >= _acc_of(r, "none")
                      and r[s]["test_loss"] < r["none"]["test_loss"] for s in ("step", "plateau")),
        "step, plateau: accuracy ≥ none's, loss below it", checked=("none", "step", "plateau")),
    Row("augmentation", "Augmentation (`dataset.augmentation`) of a CNN trained on 10% of the "
        "digits' labels: none, geometric, photometric, flips",
        _named("augment_{}_digits", "none", "geometric", "photometric", "flips"), _acc,
        lambda r: _acc_of(r, "flips") < _acc_of(r, "none"),
        "flips < none", checked=("none", "flips")),
]
BY_KEY = {row.key: row for row in ROWS}


def load(name: str, overrides: dict | None = None, seed: int | None = None):
    """The checked spec of examples/NAME.yaml, with `overrides` merged in and `seed` set."""
    import yaml

    from trainserve.core.spec import parse_spec
    from trainserve.training.validate import check_spec
    doc = _merge(yaml.safe_load((HERE / f"{name}.yaml").read_text()), overrides or {})
    if seed is not None:
        doc.setdefault("training", {})["seed"] = seed
    return check_spec(parse_spec(doc, f"examples/{name}.yaml"))


def _merge(doc: dict, overrides: dict) -> dict:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            _merge(doc[key], value)
        else:
            doc[key] = value
    return doc


def measure(spec, job_dir: Path) -> dict:
    """Train `spec` in-process; its final metrics plus what some rows show beyond them."""
    from trainserve.core.spec import architecture
    from trainserve.training.loop import train
    from trainserve.training.reporting import NullReporter
    result = train(spec, job_dir, NullReporter())
    assert result.status == "succeeded", result
    metrics = dict(result.metrics)
    metrics["weights_near_zero"] = weights_near_zero(result.artifact_dir)
    if architecture(spec) == "rnn":
        metrics["last_value_mse"] = last_value_mse(spec)
    return metrics


def weights_near_zero(artifact_dir, tol: float = 1e-3) -> float:
    """Fraction of the weights the penalties act on (parameters of 2 or more dimensions) whose
    magnitude is below `tol`: how sparse a trained network is."""
    import torch

    from trainserve.training.artifacts import load_artifact
    module = load_artifact(artifact_dir).module
    weights = torch.cat([p.detach().flatten() for p in module.parameters() if p.dim() >= 2])
    return float((weights.abs() < tol).float().mean())


def last_value_mse(spec) -> float:
    """MSE of repeating the last observed value, on the spec's test split."""
    import numpy as np

    from trainserve.training.datasets import load_dataset
    from trainserve.training.splits import split_indices
    x, y = load_dataset(spec.dataset)
    _, _, test = split_indices(y, spec.split.test_fraction, spec.split.val_fraction, False,
                               spec.training.seed)
    return float(np.mean((y[test].reshape(len(test), -1) - x[test, -1, :1]) ** 2))


def run_row(row: Row, seed: int | None, root: Path, only_checked: bool = False) -> dict:
    """The runs of `row` at `seed` (None: each spec's own), all or those its check reads:
    metrics by label."""
    runs = row.checked_runs() if only_checked else row.runs()
    return {label: measure(load(name, overrides, seed), root / row.key / f"{label}-{seed}")
            for label, (name, overrides) in runs.items()}


def render(row: Row, by_seed: dict[int, dict]) -> str:
    """The row's table line: each run's values at the seeds, `/`-separated, and whether the
    claim held at every seed."""
    seeds = list(by_seed)
    parts = [f"`{label}` " + " / ".join(row.shown(by_seed[s][label]) for s in seeds)
             for label in row.runs()]
    held = all(row.check(runs) for runs in by_seed.values())
    example = ", ".join(f"`{name}.yaml`" for name in row.specs.values())
    seeds_text = "seed " if len(seeds) == 1 else "seeds "
    result = f"{seeds_text}{'/'.join(map(str, seeds))}: " + "; ".join(parts)
    return f"| {row.topic} | {example} | {result} | {row.target}{'' if held else ' (missed)'} |"


def section(lines: dict[str, str]) -> str:
    head = ["## Training options, one at a time", "",
            "Each row's specs differ in the one option named. Made by",
            "`python -m examples.options_measure --write` (in-process, 1 CPU thread); values at",
            "several seeds are `/`-separated in seed order; the target is the row's claim, which",
            "`tests/test_examples.py` checks at seed 0 (\"missed\" would mark a seed it fails at).",
            "",
            "| option | examples | result (test split) | target |", "|---|---|---|---|"]
    return "\n".join([BEGIN, *head, *(lines[r.key] for r in ROWS if r.key in lines), END])


def kept_lines(text: str) -> dict[str, str]:
    """The rows already in README's section, by key (found by their first example)."""
    found = {}
    for row in ROWS:
        first = next(iter(row.specs.values()))
        match = re.search(rf"^\| [^|]* \| `{first}\.yaml`.*$", text, re.M)
        if match:
            found[row.key] = match.group(0)
    return found


def write(lines: dict[str, str]) -> None:
    text = README.read_text()
    if BEGIN in text:
        start, rest = text.split(BEGIN, 1)
        lines = kept_lines(rest.split(END, 1)[0]) | lines
        text = start + section(lines) + rest.split(END, 1)[1]
    elif AFTER_TABLE in text:
        start, rest = text.split(AFTER_TABLE, 1)
        text = start + section(lines) + "\n\n" + AFTER_TABLE + rest
    else:
        text = text.rstrip("\n") + "\n\n" + section(lines) + "\n"
    README.write_text(text)


def main() -> None:
    import torch
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", nargs="*", metavar="ROW", help="one of: " + ", ".join(BY_KEY))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--write", action="store_true", help="put the rows in examples/README.md")
    args = ap.parse_args()
    if unknown := set(args.rows) - set(BY_KEY):
        ap.error(f"unknown rows {sorted(unknown)}; known: {', '.join(BY_KEY)}")
    torch.set_num_threads(1)
    lines = {}
    with tempfile.TemporaryDirectory() as tmp:
        for row in [BY_KEY[k] for k in args.rows] or ROWS:
            seeds = row.seeds or tuple(args.seeds)
            lines[row.key] = render(row, {s: run_row(row, s, Path(tmp)) for s in seeds})
            print(lines[row.key], flush=True)
    if args.write:
        write(lines)


if __name__ == "__main__":
    main()
