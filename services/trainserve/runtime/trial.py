"""One trial of a search, run by Ray Tune as a function trainable (`run_trial`).

The trial decodes its Tune config into spec values, applies them to the base spec and trains
it with the ordinary loop in `<search job>/trials/<trial id>/`, which also holds the loop's
checkpoints: a trial Tune restarts (after a restore) resumes from them. Every epoch it reports
the epoch's metrics (with `epoch`, the schedulers' clock); under PBT the report carries the
checkpoints too, so PBT can hand one trial's state to another. Its last report adds the final
test metrics and `TRIAL_DONE`; a trial the scheduler stopped never sends that one.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from trainserve.core.pb import spec_pb2
from trainserve.training.paths import JobPaths
from trainserve.training.reporting import NullReporter
from trainserve.training.results import write_json_atomic
from trainserve.tune.algorithms import EPOCH, SCHEDULERS, TRIAL_DONE, decode
from trainserve.tune.space import apply_values, parse_space


LAST_EPOCH = "last_epoch.json"  # the last epoch's report, kept with the checkpoints


def trial_paths(search_root: str | Path, trial_id: str) -> JobPaths:
    return JobPaths(Path(search_root) / "trials" / trial_id)


def read_last_epoch(paths: JobPaths) -> dict[str, float]:
    """The last epoch report a trial (or the trial whose checkpoint it took over) made."""
    path = paths.root / LAST_EPOCH
    return json.loads(path.read_text()) if path.exists() else {}


class TuneReporter(NullReporter):
    """The loop's reporter inside a trial: epochs go to Tune when `per_epoch` (with the
    checkpoints when `checkpoints`), cancellation is the search's cancel flag file. In a DDP
    trial every rank has one (`rank`), reporting through Ray Train (`report`), which forwards
    rank 0's metrics to Tune; only rank 0 writes files."""

    def __init__(self, paths: JobPaths, cancel_flag: Path, per_epoch: bool,
                 checkpoints: bool = False, rank: int = 0, report=None):
        self.paths, self.cancel_flag, self.per_epoch = paths, cancel_flag, per_epoch
        self.checkpoints, self.rank = checkpoints, rank
        self.report = report
        self.last: dict[str, float] = {}

    def epoch(self, epoch, total_epochs, metrics, samples_per_second, elapsed_seconds) -> None:
        from ray import tune
        self.last = {k: float(v) for k, v in metrics.items()} | {EPOCH: float(epoch)}
        if self.rank == 0:
            write_json_atomic(self.paths.root / LAST_EPOCH, self.last)
        if not self.per_epoch:
            return
        if self.report is not None or not self.checkpoints:
            (self.report or tune.report)(dict(self.last))
            return
        with tempfile.TemporaryDirectory(prefix="trainserve-trial-") as tmp:
            # A snapshot: the loop prunes its own checkpoints while Tune copies this one.
            shutil.copytree(self.paths.checkpoints, Path(tmp) / "checkpoints")
            shutil.copy2(self.paths.root / LAST_EPOCH, Path(tmp) / LAST_EPOCH)
            tune.report(dict(self.last), checkpoint=tune.Checkpoint.from_directory(tmp))

    def cancel_requested(self) -> bool:
        return self.cancel_flag.exists()


def run_trial(config: dict[str, Any], *, spec_bytes: bytes, search_root: str,
              tracking=None) -> None:
    """The Tune trainable. `spec_bytes`: the search's checked `JobSpec`; `tracking`: the
    stack's trackers (`core.tracking.StackTracking`) for a spec that names none."""
    from ray import tune

    from trainserve.training.loop import train
    from trainserve.training.validate import check_spec
    spec = spec_pb2.JobSpec.FromString(spec_bytes)
    values = decode(parse_space(spec.search), config)
    trial_spec = check_spec(apply_values(spec, values))
    paths = trial_paths(search_root, tune.get_context().get_trial_id())
    paths.root.mkdir(parents=True, exist_ok=True)
    _restore(paths, tune.get_checkpoint())
    options = {"cancel_flag": str(Path(search_root) / "cancel"),
               "per_epoch": trial_spec.split.folds < 2,
               "checkpoints": SCHEDULERS.get(spec.search.scheduler.name).checkpoints}
    if options["checkpoints"]:  # each epoch's report hands Tune that epoch's checkpoint
        trial_spec.training.checkpoint_every_s = 0
    options["tracking"] = tracking
    if trial_spec.scaling.num_workers > 1:
        _ddp_trial(trial_spec, paths, options)
        return
    reporter = TuneReporter(paths, Path(options["cancel_flag"]), options["per_epoch"],
                            options["checkpoints"])
    cpus = spec.search.trial_resources.cpus
    with _tracked(search_root, paths, trial_spec, tracking, reporter) as tracked:
        result = tracked.finished(train(trial_spec, paths.root, tracked,
                                        num_threads=max(1, int(cpus)),
                                        device="cuda" if trial_spec.scaling.use_gpu else "cpu"))
    _final_report(result, reporter, paths, tune.report)


def _tracked(search_root: str, paths: JobPaths, trial_spec: spec_pb2.JobSpec, tracking,
             reporter, enabled: bool = True):
    """`reporter` with the trial's trackers (`runtime.tracking.trial_target`)."""
    from trainserve.runtime.tracking import trial_target, tracking_target
    target = trial_target(Path(search_root), paths.root, paths.root.name, trial_spec,
                          tracking) if enabled else None
    return tracking_target(target, reporter)


def _final_report(result, reporter: TuneReporter, paths: JobPaths, report) -> None:
    if result.status != "succeeded":
        return  # cancelled: the search is stopping
    # A trial that took over a finished trial's checkpoint (PBT) trains no epoch itself.
    last = reporter.last or read_last_epoch(paths)
    report(last | {k: float(v) for k, v in result.metrics.items()} | {TRIAL_DONE: 1.0})


def _ddp_trial(trial_spec: spec_pb2.JobSpec, paths: JobPaths, options: dict) -> None:
    """A multi-worker trial: Ray Train's `TorchTrainer` inside the trial, its workers'
    reports forwarded to Tune (Tune's `TuneReportCallback`)."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from trainserve.runtime.context import poll_workers_often
    poll_workers_often()
    sc = trial_spec.scaling
    trainer = TorchTrainer(
        _ddp_worker, train_loop_config={"spec": trial_spec.SerializeToString(),
                                        "root": str(paths.root), **options},
        scaling_config=ScalingConfig(num_workers=sc.num_workers, use_gpu=sc.use_gpu,
                                     resources_per_worker={"CPU": sc.cpus_per_worker}),
        run_config=RunConfig(storage_path=str(paths.root / "ray_train"), name="train",
                             callbacks=[TuneReportCallback()]))
    trainer.fit()


def _ddp_worker(config: dict) -> None:
    import ray.train
    import ray.train.torch

    from trainserve.training.loop import train
    spec = spec_pb2.JobSpec.FromString(config["spec"])
    paths, ctx = JobPaths(Path(config["root"])), ray.train.get_context()
    reporter = TuneReporter(paths, Path(config["cancel_flag"]), config["per_epoch"],
                            rank=ctx.get_world_rank(), report=ray.train.report)
    with _tracked(str(paths.root.parent.parent), paths, spec, config.get("tracking"),
                  reporter, enabled=ctx.get_world_rank() == 0) as tracked:
        result = tracked.finished(train(
            spec, paths.root, tracked, rank=ctx.get_world_rank(),
            world_size=ctx.get_world_size(),
            num_threads=max(1, int(spec.scaling.cpus_per_worker)),
            device=ray.train.torch.get_device()))
    _final_report(result, reporter, paths, ray.train.report)


def _restore(paths: JobPaths, checkpoint) -> None:
    """Replace the trial's checkpoints by Tune's (a restored or PBT-exploited trial)."""
    if checkpoint is None:
        return
    with checkpoint.as_directory() as d:
        source = Path(d) / "checkpoints"
        if source.is_dir():
            shutil.rmtree(paths.checkpoints, ignore_errors=True)
            shutil.copytree(source, paths.checkpoints)
        if (Path(d) / LAST_EPOCH).exists():
            shutil.copy2(Path(d) / LAST_EPOCH, paths.root / LAST_EPOCH)
