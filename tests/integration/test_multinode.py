"""The service on a multi-node Ray cluster (cluster/local_cluster.py: a head with no CPUs and
three 1-CPU worker nodes, each a raylet of its own on this machine), with the local stack's
Redis, job API and dispatcher joined to it (`Config.ray_external_address`):

- a 2-worker DDP job spreads over two nodes: seen in Ray's state (each Train worker's node)
  and, independently, in the processes (each worker's pid in that node's session);
- a 2-worker DDP job survives losing a node: the node of the rank writing its epoch-3
  checkpoint is SIGKILLed mid-write (raylet, agents, workers); Ray Train restarts the worker
  group on the surviving nodes, resumed from epoch 2, and the job succeeds.
"""
from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integration.helpers import submit, wait_job, wait_paused, watch
from trainserve.core.faults import ANY, ENV, arm
from trainserve.core.spec import parse_spec
from trainserve.core.state import JobState
from trainserve.core.pb import job_pb2

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TRAIN_WORKER = "RayTrainWorker"  # Ray Train's worker actor class


def _load_local_cluster():
    spec = importlib.util.spec_from_file_location("local_cluster",
                                                  ROOT / "cluster" / "local_cluster.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("local_cluster", module)
    spec.loader.exec_module(module)
    return module


lc = _load_local_cluster()


@pytest.fixture(scope="module")
def multinode():
    """A 3-worker-node cluster and a stack on it; the nodes see TRAINSERVE_FAULT_DIR."""
    from trainserve.local import Config, port_settings
    from trainserve.local import LocalStack
    from trainserve.core.pb import job_pb2_grpc

    root = Path(tempfile.mkdtemp(prefix="ts-mn-"))
    faults = root / "faults"
    faults.mkdir()
    cluster = lc.LocalCluster(root / "cluster", workers=lc.worker_nodes(3, num_cpus=1),
                              env={ENV: str(faults)})
    cfg = Config(state_dir=root / "state", ray_external_address=cluster.address,
                 ray_token_file=str(cluster.token_path),
                 **{f: free_port() for f in port_settings() if not f.startswith("ray_")})
    stack = LocalStack(cfg)
    try:
        cluster.start(timeout=180)
        stack.up(timeout=240)
        channel = stack.api_channel()  # with its admin token when the API checks tokens

        class Stubs:
            jobs = job_pb2_grpc.JobServiceStub(channel)
        stack.stubs, stack.cluster, stack.faults = Stubs, cluster, faults
        yield stack
    except BaseException:
        for log in sorted((root / "state" / "logs").glob("*.log")):
            print(f"==== {log}\n{log.read_text()[-3000:]}")
        raise
    finally:
        stack.down()
        cluster.stop(grace=5)
        shutil.rmtree(root, ignore_errors=True)


def _ddp_digits(name: str, epochs: int, max_failures: int = 0):
    return parse_spec({
        "name": name, "dataset": {"name": "digits", "normalize": "none"},
        "split": {"test_fraction": 0.2, "stratify": True},
        "model": {"lenet5": {"activation": "relu", "pooling": "max"}},
        "optimizer": {"name": "adam", "lr": 0.003},
        # A checkpoint every epoch: the failover test kills rank 0 in epoch 3's.
        "training": {"epochs": epochs, "batch_size": 64, "seed": 0, "checkpoint_every_s": 0},
        "scaling": {"num_workers": 2, "cpus_per_worker": 1, "max_failures": max_failures}})


def _live_workers(cluster) -> dict[str, tuple[str, str | None]]:
    """Each live Ray Train worker: actor id -> (its node per Ray's state, the node whose
    session holds its pid)."""
    names = cluster.node_names()
    return {a["actor_id"]: (names.get(a["node_id"], "?"), cluster.node_of_pid(a["pid"]))
            for a in cluster.list_state("actors", class_name=TRAIN_WORKER, state="ALIVE")}


def _wait_workers(cluster, job_id: str, stubs, count: int = 2, timeout: float = 120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        workers = _live_workers(cluster)
        if len(workers) == count:
            return workers
        job = stubs.jobs.GetJob(job_pb2.GetJobRequest(job_id=job_id), timeout=10)
        assert not JobState(job.state).is_terminal, f"job ended first: {job}"
        time.sleep(0.2)
    raise TimeoutError(f"{count} Train workers not alive after {timeout}s: "
                       f"{_live_workers(cluster)}")


def _logs(stack, job_id: str) -> list[job_pb2.JobLogLine]:
    return list(stack.stubs.jobs.StreamLogs(job_pb2.StreamLogsRequest(job_id=job_id),
                                            timeout=30))


def test_ddp_workers_run_on_two_nodes(multinode):
    stack, cluster = multinode, multinode.cluster
    job = submit(stack.stubs, _ddp_digits("mn-spread", epochs=2))
    workers = _wait_workers(cluster, job.id, stack.stubs)
    by_state = sorted(state for state, _ in workers.values())
    by_process = sorted(proc for _, proc in workers.values())
    assert by_state == by_process, workers  # Ray's view and the processes agree
    assert len(set(by_state)) == 2 and all(n.startswith("worker-") for n in by_state), workers
    done = wait_job(stack.stubs, job.id, timeout=240)
    assert JobState(done.state) == JobState.SUCCEEDED, done.message
    ranks = {line.rank for line in _logs(stack, job.id) if "rank " in line.text}
    assert ranks == {0, 1}
    assert done.metrics["test_accuracy"] > 0.5


def test_ddp_job_survives_losing_a_worker_node(multinode):
    stack, cluster = multinode, multinode.cluster
    earlier = {a["actor_id"] for a in cluster.list_state("actors", class_name=TRAIN_WORKER)}
    paused = arm(stack.faults, ANY, "checkpoint-write-3")
    job = submit(stack.stubs, _ddp_digits("mn-failover", epochs=5, max_failures=1))
    before = _wait_workers(cluster, job.id, stack.stubs)
    pid = wait_paused(paused, timeout=180)  # rank 0 is half-way through writing epoch 3's checkpoint
    lost = cluster.node_of_pid(pid)
    assert lost in {node for node, _ in before.values()}, (lost, before)
    ckpts = stack.config.storage_path / "jobs" / job.id / "checkpoints"
    assert any(p.name.startswith("epoch-000002") for p in ckpts.iterdir()), \
        sorted(p.name for p in ckpts.iterdir())
    # The trainer's driver and Ray Train's controller hold no CPUs; they run on the head.
    names = cluster.node_names()
    controllers = {names.get(a["node_id"]) for a in cluster.list_state(
        "actors", class_name="TrainController", state="ALIVE")}
    assert cluster.kill_node(lost)
    done = wait_job(stack.stubs, job.id, timeout=300)
    assert JobState(done.state) == JobState.SUCCEEDED, (done.message, lost, controllers)
    assert controllers == {"head"}, controllers
    texts = [line.text for line in _logs(stack, job.id)]
    assert any("resumed from the checkpoint of epoch 2" in t for t in texts), texts[-30:]
    epochs = [e.epoch.epoch for e in watch(stack.stubs, job.id, timeout=30)
              if e.HasField("epoch")]
    assert epochs[-1] == 5 and 3 in epochs, epochs
    assert done.metrics["test_accuracy"] > 0.5
    # The restarted group ran on the two surviving nodes only.
    survivors = {s.name for s in cluster.workers} - {lost}
    restarted = {n["actor_id"]: cluster.node_names().get(n["node_id"])
                 for n in cluster.list_state("actors", class_name=TRAIN_WORKER)
                 if n["actor_id"] not in before and n["actor_id"] not in earlier}
    assert restarted and set(restarted.values()) <= survivors, (restarted, lost)

