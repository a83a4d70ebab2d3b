"""Crashes of real processes (SIGKILL) on a stack of their own: the dispatcher at several
points of a job (mid checkpoint write, after registering the model, while jobs wait), and a
training worker mid checkpoint write. Every job still ends exactly once: resumed from its last
complete checkpoint, one model version, no duplicate. Kill points are reached through
`trainserve.core.faults` (armed by files in TRAINSERVE_FAULT_DIR), so each kill lands exactly there.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.integration.helpers import submit, wait_job, wait_paused, watch
from trainserve.core.faults import ANY, arm
from trainserve.core.spec import parse_spec
from trainserve.core.state import JobState
from trainserve.store.models import ModelStore

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def crash_stack(fault_stack):
    return fault_stack


def _digits_mlp(name: str, epochs: int = 8, **scaling):
    return parse_spec({
        "name": name, "dataset": {"name": "digits"},
        "model": {"mlp": {"hidden": [64], "activation": "relu"}},
        "optimizer": {"name": "adam", "lr": 0.01},
        # A checkpoint every epoch: the tests kill workers in chosen epochs' checkpoints.
        "training": {"epochs": epochs, "batch_size": 32, "seed": 3, "checkpoint_every_s": 0},
        "scaling": {"num_workers": 1, **scaling}})



def _gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state in "ZX":
            return True
        time.sleep(0.1)
    return False


def _logs(stack, job_id: str) -> list[str]:
    return [e.log.text for e in watch(stack.stubs, job_id, timeout=30) if e.HasField("log")]


def _versions(stack, name: str) -> list:
    return ModelStore(stack.redis).versions(name)


def test_dispatcher_killed_mid_checkpoint_write_resumes_from_the_last_complete_one(crash_stack):
    stack = crash_stack
    paused = arm(stack.faults, ANY, "checkpoint-write-3")
    job = submit(stack.stubs, _digits_mlp("crash-ckpt"))
    worker = wait_paused(paused)  # the worker has written half of epoch 3's checkpoint
    ckpts = stack.config.storage_path / "jobs" / job.id / "checkpoints"
    assert [p.name for p in ckpts.iterdir() if p.name.startswith(".tmp-epoch-000003")]
    assert stack.kill("dispatcher")
    assert _gone(worker), "the dead dispatcher's training task kept running"
    stack.start("dispatcher", timeout=180)
    done = wait_job(stack.stubs, job.id, timeout=240)
    assert JobState(done.state) == JobState.SUCCEEDED, done.message
    assert done.attempts == 2
    assert "resumed from the checkpoint of epoch 2" in _logs(stack, job.id)
    assert not [p for p in ckpts.iterdir() if p.name.startswith(".tmp-")]
    assert [(v.version, v.job_id) for v in _versions(stack, "crash-ckpt")] == [(1, job.id)]
    assert done.metrics["test_accuracy"] > 0.85


def test_dispatcher_killed_after_registering_and_while_jobs_wait(crash_stack):
    stack = crash_stack
    paused = arm(stack.faults, ANY, "registered")
    job = submit(stack.stubs, _digits_mlp("crash-reg", epochs=3))
    dispatcher_pid = wait_paused(paused)  # model registered, SUCCEEDED not yet recorded
    assert dispatcher_pid == stack.pid("dispatcher")
    assert stack.kill("dispatcher")
    waiting = submit(stack.stubs, _digits_mlp("crash-wait", epochs=3))  # no dispatcher now
    time.sleep(1)
    stack.start("dispatcher", timeout=180)
    done = wait_job(stack.stubs, job.id, timeout=240)
    assert JobState(done.state) == JobState.SUCCEEDED, done.message
    assert (done.model_name, done.model_version, done.attempts) == ("crash-reg", 1, 2)
    assert [v.job_id for v in _versions(stack, "crash-reg")] == [job.id]
    later = wait_job(stack.stubs, waiting.id, timeout=240)
    assert JobState(later.state) == JobState.SUCCEEDED and later.attempts == 1
    assert [v.job_id for v in _versions(stack, "crash-wait")] == [waiting.id]


def test_a_killed_training_worker_is_restarted_from_its_checkpoint(crash_stack):
    stack = crash_stack
    paused = arm(stack.faults, ANY, "checkpoint-write-4")
    hit = submit(stack.stubs, _digits_mlp("worker-kill", epochs=10, max_failures=2))
    worker = wait_paused(paused)
    calm = submit(stack.stubs, _digits_mlp("worker-calm", epochs=10))  # undisturbed twin
    os.kill(worker, signal.SIGKILL)
    done = wait_job(stack.stubs, hit.id, timeout=240)
    twin = wait_job(stack.stubs, calm.id, timeout=240)
    assert JobState(done.state) == JobState.SUCCEEDED, done.message
    assert done.attempts == 1  # restarted by Ray in place, not by a dispatcher recovery
    assert "resumed from the checkpoint of epoch 3" in _logs(stack, hit.id)
    assert JobState(twin.state) == JobState.SUCCEEDED, twin.message
    assert abs(done.metrics["test_accuracy"] - twin.metrics["test_accuracy"]) <= 0.02
    assert [v.job_id for v in _versions(stack, "worker-kill")] == [hit.id]


def test_a_killed_worker_fails_the_job_when_no_restart_is_allowed(crash_stack):
    stack = crash_stack
    paused = arm(stack.faults, ANY, "checkpoint-write-2")
    job = submit(stack.stubs, _digits_mlp("worker-kill-0", epochs=4, max_failures=0))
    os.kill(wait_paused(paused), signal.SIGKILL)
    done = wait_job(stack.stubs, job.id, timeout=120)
    assert JobState(done.state) == JobState.FAILED
    assert "worker died" in done.message, done.message


def test_a_killed_ddp_worker_restarts_the_worker_group_from_its_checkpoint(crash_stack):
    stack = crash_stack
    paused = arm(stack.faults, ANY, "checkpoint-write-3")
    spec = _digits_mlp("ddp-kill", epochs=6, num_workers=2, max_failures=1)
    hit = submit(stack.stubs, spec)
    os.kill(wait_paused(paused, timeout=180), signal.SIGKILL)  # rank 0, mid write
    done = wait_job(stack.stubs, hit.id, timeout=300)
    assert JobState(done.state) == JobState.SUCCEEDED, done.message
    assert done.attempts == 1  # Ray Train restarted the group; no dispatcher recovery
    assert "resumed from the checkpoint of epoch 2" in _logs(stack, hit.id)
    spec.name = "ddp-calm"
    twin = wait_job(stack.stubs, submit(stack.stubs, spec).id, timeout=300)
    assert JobState(twin.state) == JobState.SUCCEEDED, twin.message
    assert abs(done.metrics["test_accuracy"] - twin.metrics["test_accuracy"]) <= 0.02
