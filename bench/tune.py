"""ASHA against FIFO random search on the same search space, in one run.

An MLP on digits, one search space (optimizer.lr, model.mlp.hidden as width/depth,
model.mlp.dropout) and the same seed, so both searches sample the same trial configs; each
is run in-process on Ray Tune (2 CPUs, 0.5 CPU per trial: up to 4 trials at once) through
`run_job`, one after the other. Per search:

- epochs consumed: the sum over trials of the last epoch each trained, read from Tune's
  per-trial result.json and checked against the last epoch report in the trial's folder;
- wall time of `run_job`, and trials per minute from it;
- best val accuracy: the job's `best_val_accuracy` (the last-epoch val_accuracy of the best
  trial that ran to its end, which is what the search ranks by);
- trials running at once: each trial's interval runs from the start of its trainable to
  its last result, anchored on the trial's own clock: the file time of its last epoch
  report on disk (written by the trial right before it reports that epoch) minus the
  trial's time_total_s in that epoch's result is its start; its end adds the time_total_s
  of its last result. The maximum is the largest number of intervals covering one instant
  (millisecond timing; Tune's own `timestamp` is whole seconds), the mean the sum of the
  intervals over the wall time.

FIFO is the baseline: ratios are ASHA / FIFO, each side the median of ROUNDS searches
interleaved with the other's, with the min-max as the spread.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.common import meets, median, print_table, row, save, spread

TRIALS, EPOCHS, TRIAL_CPUS, RAY_CPUS, SEED = 16, 20, 0.5, 2, 0
ROUNDS = 5  # searches per side, interleaved: which trials ASHA stops varies run to run
# ASHA's rungs are at grace_period * reduction_factor**k epochs (k >= 0) below epochs + 1.
GRACE_PERIOD, REDUCTION_FACTOR = 2, 3
SPACE = {"optimizer.lr": "loguniform(1e-4, 1e-1)",
         "model.mlp.hidden": "choice([[32], [64], [128], [64, 64]])",
         "model.mlp.dropout": "uniform(0, 0.5)"}


def search_spec(scheduler: str, trials: int = TRIALS, epochs: int = EPOCHS,
                grace_period: int = GRACE_PERIOD, reduction_factor: int = REDUCTION_FACTOR):
    """The checked search spec: the same base spec and space for every scheduler."""
    from trainserve.core.spec import parse_spec
    from trainserve.jobs.admission import check_submission
    sched = {"name": scheduler}
    if scheduler == "asha":
        sched |= {"grace_period": grace_period, "reduction_factor": reduction_factor}
    return check_submission(parse_spec({
        "name": f"bench-tune-{scheduler}",
        "dataset": {"name": "digits"},
        "split": {"val_fraction": 0.2},
        "model": {"mlp": {"hidden": [64], "activation": "relu"}},
        "optimizer": {"name": "adam", "lr": 0.01, "scheduler": {"name": "cosine"}},
        "training": {"epochs": epochs, "batch_size": 64, "seed": SEED},
        "search": {"space": SPACE, "scheduler": sched, "num_samples": trials,
                   "trial_resources": {"cpus": TRIAL_CPUS}},
    }))


def _trial_rows(trial_dir: Path) -> list[dict]:
    lines = (trial_dir / "result.json").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _last_epoch(job_dir: Path, trial_id: str) -> tuple[int, float]:
    """(epoch, mtime) of the trial's last epoch report on disk (`runtime.trial.LAST_EPOCH`,
    written right before each epoch's report to Tune); (0, 0) if none."""
    from trainserve.tune.algorithms import EPOCH
    from trainserve.runtime.trial import LAST_EPOCH
    path = job_dir / "trials" / trial_id / LAST_EPOCH
    if not path.exists():
        return 0, 0.0
    return int(json.loads(path.read_text())[EPOCH]), path.stat().st_mtime


def trials_of(job_dir: Path) -> list[dict]:
    """Per trial: id, epochs trained, whether it ran to its end, and its (start, end)."""
    out = []
    for d in sorted((job_dir / "tune").glob("run_trial_*")):
        rows = _trial_rows(d)
        if not rows:
            continue
        last = rows[-1]
        trial_id = last["trial_id"]
        epochs = int(max(r.get("epoch", 0) for r in rows))
        on_disk, saved_at = _last_epoch(job_dir, trial_id)
        if on_disk != epochs:
            raise RuntimeError(f"trial {trial_id}: Tune saw {epochs} epochs, the trial's "
                               f"last epoch report on disk is epoch {on_disk}")
        # The trial's clock when it reported its last epoch, just after writing that
        # report: the trial started that long before the write; it ended at its clock's
        # last reading (a finished trial's final report follows the test evaluation).
        at_save = next(float(r["time_total_s"]) for r in rows if r.get("epoch") == epochs)
        start = saved_at - at_save
        out.append({"id": trial_id, "epochs": epochs, "finished": bool(last.get("trial_done")),
                    "start": start, "end": start + float(last["time_total_s"])})
    return out


def max_concurrent(intervals: list[tuple[float, float]]) -> int:
    """The largest number of [start, end) intervals covering one instant."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = best = 0
    for _, step in events:  # at a tie an end (-1) sorts before a start
        running += step
        best = max(best, running)
    return best


def measure(scheduler: str, storage: str | Path, round_no: int = 0, **spec_kw) -> dict:
    """Run one search through `run_job` on the connected Ray cluster; its figures."""
    from trainserve.runtime.launch import JobContext, run_job
    spec = search_spec(scheduler, **spec_kw)
    job_id = f"bench-tune-{scheduler}-{round_no}"
    ctx = JobContext(job_id=job_id, spec=spec, redis_url=None, storage_dir=str(storage))
    t0 = time.perf_counter()
    result = run_job(ctx, should_cancel=lambda: False)
    wall = time.perf_counter() - t0
    if result.status != "succeeded":
        raise RuntimeError(f"{scheduler} search ended {result.status}")
    trials = trials_of(ctx.paths.root)
    intervals = [(t["start"], t["end"]) for t in trials]
    return {
        "scheduler": scheduler, "wall_s": wall, "trials": len(trials),
        "trials_finished": sum(t["finished"] for t in trials),
        "epochs": sum(t["epochs"] for t in trials),
        "epochs_per_trial": [t["epochs"] for t in trials],
        "best_val_accuracy": float(result.metrics["best_val_accuracy"]),
        "trials_per_minute": len(trials) / (wall / 60),
        "max_concurrent": max_concurrent(intervals),
        "mean_concurrent": sum(e - s for s, e in intervals) / wall,
    }


FIGURES = [("epochs", "training epochs consumed (sum over trials)"),
           ("wall_s", "wall time (s)"),
           ("best_val_accuracy", "best val accuracy (last epoch, finished trial)"),
           ("trials_per_minute", "trials per minute"),
           ("max_concurrent", "most trials running at once"),
           ("mean_concurrent", "mean trials running (trial-seconds / wall)"),
           ("trials_finished", "trials run to their last epoch")]


def compare(asha: list[dict], fifo: list[dict]) -> list[dict]:
    """One row per figure: the median over rounds of each side, min-max as the spread."""
    rows = []
    for key, figure in FIGURES:
        a, f = [float(r[key]) for r in asha], [float(r[key]) for r in fifo]
        rows.append(row(figure, median(a), median(f),
                        spread=f"ASHA {spread(a)}; FIFO {spread(f)}"))
    return rows


def main() -> list[dict]:
    import ray
    storage = tempfile.mkdtemp(prefix="ts-bench-tune-")
    ray.init(num_cpus=RAY_CPUS, include_dashboard=False, log_to_driver=False)
    fifo, asha = [], []
    try:
        for r in range(ROUNDS):  # interleaved, the order swapped each round
            for scheduler in (("fifo", "asha") if r % 2 == 0 else ("asha", "fifo")):
                (fifo if scheduler == "fifo" else asha).append(measure(scheduler, storage, r))
    finally:
        ray.shutdown()
        shutil.rmtree(storage, ignore_errors=True)
    rows = compare(asha, fifo)
    rows[0].update(target="<= 0.333", met=meets(rows[0]["ratio"], "<= 0.333"))
    gaps = [100 * (f["best_val_accuracy"] - a["best_val_accuracy"]) for a, f in zip(asha, fifo)]
    rows.insert(3, row("best val accuracy gap, FIFO - ASHA (points)", median(gaps),
                       target="<= 0.5", on="ours", spread=spread(gaps)))
    title = (f"tune: ASHA (grace {GRACE_PERIOD}, reduction {REDUCTION_FACTOR}) vs FIFO, "
             f"{TRIALS} trials x {EPOCHS} epochs, digits MLP, {RAY_CPUS} CPUs")
    print_table(title, rows)
    print("ASHA epochs per trial, per round:", [a["epochs_per_trial"] for a in asha])
    print("results:", save("tune", rows, {"fifo": fifo, "asha": asha, "trials": TRIALS,
                                          "rounds": ROUNDS,
                                          "epochs": EPOCHS, "grace_period": GRACE_PERIOD,
                                          "reduction_factor": REDUCTION_FACTOR}),
          file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
