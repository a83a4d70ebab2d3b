"""A job's per-epoch curves (GetJobCurves): every metric it reported, epoch by epoch, read from
its epoch events (an ordinary job) or its trials' curves (a search).

Bounded twice: a job's event stream keeps at most `store.events.MAXLEN` (20 000) events, so a
job with more epochs than that answers its latest ones; and one answer carries at most
`MAX_POINTS` points (about 2.75 MB, under the 4 MiB a gRPC client accepts by default), past
which every curve keeps every k-th point and its last (`JobCurves.stride` says k).
"""
from __future__ import annotations

import math
from typing import Iterable, Protocol, Sequence

from trainserve.core.pb import job_pb2

MAX_POINTS = 250_000


class EpochPoint(Protocol):
    """An epoch's report: `job_pb2.EpochMetrics` (an event) or `job_pb2.TrialPoint` (a trial's
    curve)."""
    epoch: int
    metrics: dict


def epoch_points(events: Iterable[job_pb2.JobEvent]) -> list[job_pb2.EpochMetrics]:
    """The epoch events of a job's history, in epoch order; a repeated epoch (a job resumed
    after a recovery reports it again) keeps its latest report."""
    by_epoch: dict[int, job_pb2.EpochMetrics] = {}
    for event in events:
        if event.WhichOneof("event") == "epoch":
            by_epoch[event.epoch.epoch] = event.epoch
    return [by_epoch[e] for e in sorted(by_epoch)]


def trial_points(trial: job_pb2.Trial) -> list[job_pb2.TrialPoint]:
    """A trial's curve in epoch order, a repeated epoch keeping its latest point (as
    `epoch_points`)."""
    by_epoch = {p.epoch: p for p in trial.curve}
    return [by_epoch[e] for e in sorted(by_epoch)]


def metric_curves(points: Sequence[EpochPoint]) -> dict[str, job_pb2.Curve]:
    """metric name -> its curve over `points` (in epoch order), names sorted. Every value is
    kept as reported, NaN and infinities too: the curve is what the job said."""
    curves: dict[str, job_pb2.Curve] = {}
    for point in points:
        for name, value in point.metrics.items():
            curve = curves.setdefault(name, job_pb2.Curve())
            curve.epochs.append(point.epoch)
            curve.values.append(value)
    return dict(sorted(curves.items()))


def job_curves(job: job_pb2.Job, events: Iterable[job_pb2.JobEvent],
               trials: Sequence[job_pb2.Trial] = (), best_trial: str = "",
               max_points: int = MAX_POINTS) -> job_pb2.JobCurves:
    """The JobCurves of `job`: its own epochs from `events`, each of `trials`' curves."""
    out = job_pb2.JobCurves(job_id=job.id, best_trial=best_trial)
    for name, curve in metric_curves(epoch_points(events)).items():
        out.metrics[name].CopyFrom(curve)
    for trial in trials:
        for name, curve in metric_curves(trial_points(trial)).items():
            out.trials[trial.id].metrics[name].CopyFrom(curve)
    out.stride = thin(out, max_points)
    return out


def _all_curves(curves: job_pb2.JobCurves) -> list[job_pb2.Curve]:
    return [*curves.metrics.values(),
            *(c for t in curves.trials.values() for c in t.metrics.values())]


def thin(curves: job_pb2.JobCurves, max_points: int) -> int:
    """Keep every k-th point of each curve (and its last), the smallest k that brings the
    answer to at most `max_points` points in all (or, with more curves than that allows,
    each curve's first and last point); returns k (1: nothing dropped)."""
    every = _all_curves(curves)
    lengths = [len(c.epochs) for c in every]
    longest = max(lengths, default=0)
    stride = max(1, math.ceil(sum(lengths) / max_points)) if max_points else 1
    # Each curve may keep its last point too: a few more than total / k, so look a bit higher.
    while 1 < stride < longest and sum(_kept(n, stride) for n in lengths) > max_points:
        stride += max(1, stride // 16)
    if stride > 1:
        for curve in every:
            _thin_curve(curve, stride)
    return stride


def _kept(n: int, stride: int) -> int:
    """How many of n points every `stride`-th point and the last are."""
    return -(-n // stride) + (1 if n and (n - 1) % stride else 0)


def _thin_curve(curve: job_pb2.Curve, stride: int) -> None:
    n = len(curve.epochs)
    keep = list(range(0, n, stride))
    if n and keep[-1] != n - 1:
        keep.append(n - 1)
    epochs, values = [curve.epochs[i] for i in keep], [curve.values[i] for i in keep]
    del curve.epochs[:], curve.values[:]
    curve.epochs.extend(epochs)
    curve.values.extend(values)
