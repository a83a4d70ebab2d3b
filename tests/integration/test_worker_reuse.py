"""A job never sees state left by an earlier job in a reused pooled worker: the same spec
trains to the same numbers, bit for bit, in a fresh worker and in one that has just run a
job built to leave as much behind as a spec can (more threads, another seed, a CNN in
channels_last with augmentation and dropout, bf16 autocast)."""
from __future__ import annotations

import re

import pytest

from tests.integration.helpers import example, submit, wait_job, watch
from trainserve.core.pb import job_pb2
from trainserve.core.state import JobState

pytestmark = pytest.mark.integration

WORKER = re.compile(r"worker pid (\d+), job (\d+) in this worker")


def _run(stubs, spec) -> tuple[list[float], tuple[int, int]]:
    """(every epoch's train and val loss, (worker pid, jobs that worker has run))."""
    job = submit(stubs, spec)
    events = watch(stubs, job.id)
    final = wait_job(stubs, job.id)
    assert final.state == JobState.SUCCEEDED, final
    losses = [v for e in events if e.HasField("epoch")
              for v in (e.epoch.metrics["train_loss"], e.epoch.metrics["val_loss"])]
    for line in stubs.jobs.StreamLogs(job_pb2.StreamLogsRequest(job_id=job.id), timeout=60):
        if m := WORKER.search(line.text):
            return losses, (int(m[1]), int(m[2]))
    raise AssertionError(f"job {job.id} logged no worker line")


def _polluter():
    return example("digits_lenet5", scaling={"num_workers": 1, "cpus_per_worker": 2},
                   training={"epochs": 2, "seed": 7,
                             "performance": {"channels_last": True, "autocast": "bf16"}})


def test_a_reused_worker_keeps_nothing_from_the_job_before(stack, stubs):
    probe = example("mlp_moons", training={"epochs": 4, "seed": 3})
    first, (pid, _) = _run(stubs, probe)
    seen_after_polluter = False
    for _ in range(4):  # until the probe lands in a worker the polluter has just used
        _, (dirty_pid, dirty_n) = _run(stubs, _polluter())
        again, (pid, n) = _run(stubs, probe)
        assert again == first, f"worker {pid} (job {n} there) trained the probe differently"
        if (pid, n) == (dirty_pid, dirty_n + 1):
            seen_after_polluter = True
            break
    assert seen_after_polluter, "the probe never ran right after the polluter in one worker"
