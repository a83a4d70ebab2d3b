"""Running an evaluation job (`spec.evaluate`) on Ray: one task in a pooled worker, as the
fast path runs a single-worker training (`launch._start` routes here), with the same log
capture, reporter and cancel flag; the work itself is `training.external.evaluate_model`."""
from __future__ import annotations

from trainserve.runtime.context import JobContext
from trainserve.runtime.logcapture import capture_logs
from trainserve.runtime.reporting import make_reporter
from trainserve.training.reporting import CancelFileReporter, LogLinesReporter
from trainserve.training.results import TrainResult


def start_evaluation(remote, ctx: JobContext, cpus: float, use_gpu: bool):
    """The Ray task of the evaluation (`remote` wraps a function as launch's tasks are)."""
    return remote(_evaluate_task).options(
        num_cpus=cpus, num_gpus=1 if use_gpu else 0, max_retries=ctx.max_failures,
        name=f"trainserve-evaluate-{ctx.job_id}").remote(ctx)


def _evaluate_task(ctx: JobContext) -> TrainResult:
    from trainserve.training.external import evaluate_model
    _, cpus, use_gpu = ctx.scaling()
    with capture_logs(ctx) as sink:
        reporter = CancelFileReporter(make_reporter(ctx), ctx.paths.cancel_flag)
        if sink is not None:
            reporter = LogLinesReporter(reporter, sink.write)
        return evaluate_model(ctx.job_spec(), ctx.paths.root, reporter,
                              num_threads=max(1, int(cpus)),
                              device="cuda" if use_gpu else "cpu")
