"""Measures the vanishing-gradient example set (examples/vanishing_gradients_*.yaml): a
ten-hidden-layer MLP on two spirals with sigmoid units, ReLU units, and ReLU units with He
(Kaiming) initialization, trained in-process over several seeds with
`training.diagnostics` on. Prints, per spec, the test accuracy and the first and last weight
layers' gradient norms (epoch 1 and the last epoch), mean ± std over the seeds, as the table
docs/interpretability.md shows. `--cost` instead times what the diagnostics and the plots of
the trained network cost, on one thread: a training step of the examples' network, what the
gradient norms add to each step and what the activation probe costs once an epoch (the best of
`--repeat` rounds), and the time to save and to draw the plots of a trained network.

    .venv/bin/python examples/vanishing_gradients_measure.py [--seeds 0 1 2] [--epochs N]
    .venv/bin/python examples/vanishing_gradients_measure.py --cost [--repeat 3]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent
NAMES = ("vanishing_gradients_sigmoid", "vanishing_gradients_sigmoid_xavier",
         "vanishing_gradients_relu", "vanishing_gradients_relu_he")


def run(name: str, seed: int, epochs: int | None) -> dict[str, float]:
    """One training of example `name` at `seed`: its test accuracy and gradient norms."""
    from trainserve.core.spec import load_spec_file
    from trainserve.training.diagnostics import GRAD_NORM, split_name
    from trainserve.training.loop import train
    from trainserve.training.reporting import ListReporter
    from trainserve.training.validate import check_spec
    spec = load_spec_file(EXAMPLES / f"{name}.yaml")
    spec.training.seed = seed
    if epochs:
        spec.training.epochs = epochs
    reporter = ListReporter()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        result = train(check_spec(spec), Path(tmp), reporter)
        seconds = time.monotonic() - started

    def norms(event) -> list[float]:
        return [v for k, v in sorted(event.metrics.items())
                if (split_name(k) or ("",))[0] == GRAD_NORM]
    first, last = norms(reporter.epochs[0]), norms(reporter.epochs[-1])
    return {"test_accuracy": result.metrics["test_accuracy"], "first_layer_epoch1": first[0],
            "last_layer_epoch1": first[-1], "first_layer_final": last[0],
            "last_layer_final": last[-1], "ratio_epoch1": first[0] / first[-1],
            "seconds": seconds}


def summary(values: list[float], fmt: str) -> str:
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.mean(values), fmt)} ± {format(statistics.stdev(values), fmt)}"


def step_costs(repeat: int) -> dict[str, float]:
    """Microseconds of a training step (forward, backward, SGD step) of the relu_he example's
    network on a batch of 32, of the gradient norms' work added to each step, and of the
    activation probe (once an epoch); each the best of `repeat` rounds of 200 calls."""
    import torch

    from trainserve.core.spec import load_spec_file
    from trainserve.training.data import prepare_data
    from trainserve.training.diagnostics import PROBE_SAMPLES, ActivationProbe, GradientNorms
    from trainserve.training.validate import check_spec
    from trainserve.training.zoo import build_model
    torch.set_num_threads(1)
    spec = check_spec(load_spec_file(EXAMPLES / "vanishing_gradients_relu_he.yaml"))
    data = prepare_data(spec)
    model = build_model(spec, data.info)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.from_numpy(data.x_train[:32]), torch.from_numpy(data.y_train[:32])
    probe_x = torch.from_numpy(data.x_train[:PROBE_SAMPLES])
    norms, probe = GradientNorms(model), ActivationProbe(model)

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    def timed(fn) -> float:
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in range(200):
                fn()
            best = min(best, (time.perf_counter() - t0) / 200)
        return best * 1e6
    step()
    return {"step": timed(step), "gradients": timed(norms.step),
            "activations": timed(lambda: probe.measure(lambda: model(probe_x)))}


PLOTTED = {"mlp on moons": {"dataset": {"name": "moons"}, "model": {"mlp": {"hidden": [64]}}},
           "vae on digits": {"dataset": {"name": "digits"}, "model": {"autoencoder": {
               "kind": "variational", "hidden": [64], "latent_dim": 8}}},
           "lenet5 on digits": {"dataset": {"name": "digits"}, "model": {"lenet5": {}}}}


def plot_seconds(doc: dict, repeat: int) -> tuple[float, float]:
    """(seconds to save the arrays, seconds to draw the plots) of an untrained model, the best
    of `repeat`; matplotlib imported and warmed up before."""
    import torch

    from trainserve.core.spec import parse_spec
    from trainserve.jobs import plots_inside
    from trainserve.training.data import prepare_data
    from trainserve.training.inside import inside_arrays
    from trainserve.training.validate import check_spec
    from trainserve.training.zoo import build_model
    spec = check_spec(parse_spec(doc))
    data = prepare_data(spec)
    model = build_model(spec, data.info)
    x, y = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
    save = draw = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat + 1):  # the first run warms matplotlib up
            t0 = time.perf_counter()
            arrays = inside_arrays(spec, data, model, x, y)
            t1 = time.perf_counter()
            plots_inside.evaluation_plots(arrays, Path(tmp))
            t2 = time.perf_counter()
            save, draw = min(save, t1 - t0), min(draw, t2 - t1)
    return save, draw


def cost(repeat: int) -> None:
    costs = step_costs(repeat)
    print(f"training step {costs['step']:.0f} µs; gradient norms +{costs['gradients']:.0f} µs "
          f"a step; activation probe {costs['activations']:.0f} µs an epoch")
    print("\n| plots of | save (s) | draw (s) |\n|---|---|---|")
    for label, doc in PLOTTED.items():
        save, draw = plot_seconds(doc, repeat)
        print(f"| {label} | {save:.3f} | {draw:.3f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="override the specs' epochs")
    parser.add_argument("--cost", action="store_true", help="time the diagnostics instead")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("names", nargs="*", default=list(NAMES))
    args = parser.parse_args()
    if args.cost:
        return cost(args.repeat)
    print(f"seeds {' '.join(map(str, args.seeds))}")
    print("| example | test accuracy | first / last layer gradient norm, epoch 1 | "
          "first layer, epoch 1 | first layer, last epoch | seconds |")
    print("|---|---|---|---|---|---|")
    for name in args.names:
        runs = [run(name, seed, args.epochs) for seed in args.seeds]
        col = {k: [r[k] for r in runs] for k in runs[0]}
        print(f"| `{name}.yaml` | {summary(col['test_accuracy'], '.3f')} | "
              f"{summary(col['ratio_epoch1'], '.1e')} | {summary(col['first_layer_epoch1'], '.1e')}"
              f" | {summary(col['first_layer_final'], '.1e')} | {summary(col['seconds'], '.1f')} |",
              flush=True)


if __name__ == "__main__":
    main()
