"""The spine on a local stack, against baselines measured in the same run, like for like.

- `trainserve up` to ready (`LocalStack.up()`, every component) against `ray start --head`
  alone with the same flags, timed until it reports the head started, on the idle stack
  (while the stack pre-warms its workers both cores are busy, which would slow the baseline),
  and where `up` goes: when each component was ready, and the dispatcher's steps (connected
  to Ray, Serve application deployed, pooled workers warm) from its log;
- examples/xor_mlp.yaml on the single-worker fast path: submit -> first epoch event for the
  first job after `up`, warm (median of 5), and while a longer job holds a pooled worker;
  submit -> SUCCEEDED (absolute targets: there is no Ray equivalent of a pooled task);
- the same job with 2 DDP workers (through Ray Train) against `TorchTrainer.fit` of an empty
  2-worker loop, interleaved: submission -> the first line of the training function on both
  sides (ours: the time stamped on rank 0's first log line; the baseline's loop writes the
  time of its first line), and submission -> SUCCEEDED against the whole empty fit;
- the median epoch's training samples/s of LeNet-5 and the MLP on digits (1 worker, 1
  thread) through the job API against the same spec trained by our own loop in this process,
  interleaved: the stack's cost, with every loop feature the same on both sides.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid

from bench.common import local_stack, median, print_table, row, save, spread

REPEATS = 5
DDP_REPEATS = 5  # interleaved with the baseline: it alone moves by 1-2 s between fits
THROUGHPUT_ROUNDS = 5


def _timed_job(stubs, spec) -> dict:
    """Submit `spec` and watch it: seconds to the first epoch event ("first") and to the
    terminal state ("done"), the events, the job id and the wall-clock submit time."""
    from trainserve.core.pb import job_pb2

    submitted, t0 = time.time(), time.perf_counter()
    job = stubs.SubmitJob(job_pb2.SubmitJobRequest(spec=spec, request_id=uuid.uuid4().hex))
    first, events = None, []
    for event in stubs.WatchJob(job_pb2.WatchJobRequest(job_id=job.id), timeout=900):
        events.append(event)
        if first is None and event.HasField("epoch"):
            first = time.perf_counter() - t0
    done = time.perf_counter() - t0
    final = events[-1].state
    if final.state != job_pb2.JOB_STATE_SUCCEEDED:
        raise RuntimeError(f"bench job failed: {final.message}")
    return {"first": first, "done": done, "events": events, "id": job.id,
            "submitted": submitted}


def to_training_function(stubs, job: dict) -> float:
    """Seconds from submission to the first line of rank 0's training function: the time
    stamped on the worker's first log line ("rank 0 of N on ..."), written there."""
    from trainserve.core.pb import job_pb2

    for line in stubs.StreamLogs(job_pb2.StreamLogsRequest(job_id=job["id"]), timeout=60):
        if line.rank == 0 and line.text.startswith("rank 0 of"):
            return line.time.ToDatetime().timestamp() - job["submitted"]
    raise RuntimeError(f"job {job['id']} logged no 'rank 0 of' line")


def _spec(name: str, **overrides):
    from trainserve.core.spec import load_spec_file, parse_spec
    from bench.common import ROOT

    spec = load_spec_file(ROOT / "examples" / f"{name}.yaml")
    spec.MergeFrom(parse_spec(overrides))
    spec.ClearField("deploy")
    return spec


def ray_start_seconds(stack) -> float:
    """`ray start --head` with the stack's own flags (fresh ports and temp folder), timed until
    it prints that the head started; then stopped through its own process group."""
    from trainserve.local import free_port

    cmd = [a for a in stack.launch("ray").argv if not a.startswith(("--port=", "--temp-dir=",
                                                                 "--dashboard-port="))]
    tmp = tempfile.mkdtemp(prefix="ts-bench-ray-")
    cmd += [f"--port={free_port()}", f"--temp-dir={tmp}", f"--dashboard-port={free_port()}"]
    env = os.environ | stack.ray_env()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        for line in proc.stdout:
            if "Ray runtime started" in line:
                return time.perf_counter() - t0
        raise RuntimeError(f"ray start exited with {proc.wait()}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


_FIT_PROBE = """
import json, os, sys, tempfile, time, uuid
import ray
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
ray.init(address=sys.argv[1], log_to_driver=False)
storage = tempfile.mkdtemp(prefix="ts-bench-train-")

def empty_loop(config):
    first = time.time()  # the training function's first line, as ours is timed
    import ray.train
    if ray.train.get_context().get_world_rank() == 0:
        with open(config["mark"], "w") as f:
            f.write(repr(first))

for line in sys.stdin:
    mark = os.path.join(storage, uuid.uuid4().hex)
    t0, w0 = time.perf_counter(), time.time()
    TorchTrainer(empty_loop, train_loop_config={"mark": mark}, scaling_config=ScalingConfig(
        num_workers=int(line), resources_per_worker={"CPU": 1}),
        run_config=RunConfig(storage_path=storage, name=uuid.uuid4().hex)).fit()
    fit = time.perf_counter() - t0
    print(json.dumps({"fit_s": fit, "first_line_s": float(open(mark).read()) - w0}),
          flush=True)
"""


class RayTrainBaseline:
    """`TorchTrainer.fit` of an empty loop on the stack's Ray cluster, from a driver process
    of its own (started with the stack's Ray environment, which Ray reads at import), kept
    alive between fits as the dispatcher is."""

    def __init__(self, stack):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _FIT_PROBE, stack.config.ray_address],
            env=os.environ | stack.ray_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True)

    def fit(self, workers: int) -> dict:
        """{"fit_s": the whole fit, "first_line_s": fit call -> the loop's first line}."""
        self.proc.stdin.write(f"{workers}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the TorchTrainer probe exited with {self.proc.wait()}")
        return json.loads(line)

    def fit_seconds(self, workers: int) -> float:
        return self.fit(workers)["fit_s"]

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def fast_path_rows(stubs) -> list[dict]:
    """The 1-worker fast path: the first job after `up`, then warm, then beside a busy job."""
    xor = _spec("xor_mlp")
    cold = _timed_job(stubs, xor)  # the first job after up
    runs = [_timed_job(stubs, xor) for _ in range(REPEATS)]
    busy = _beside_a_running_job(stubs, xor)
    first, done = [r["first"] for r in runs], [r["done"] for r in runs]
    return [
        row("xor_mlp submit -> first epoch event (s), 1 worker, warm", median(first), None,
            "<= 2", on="ours", spread=spread(first)),
        row("xor_mlp submit -> first epoch event (s), first job after up", cold["first"],
            None, "<= 2", on="ours"),
        row("xor_mlp submit -> first epoch event (s), while another job trains",
            median([r["first"] for r in busy]), None, "<= 2", on="ours",
            spread=spread([r["first"] for r in busy])),
        row("xor_mlp submit -> SUCCEEDED (s), 1 worker, warm", median(done), None, "<= 3",
            on="ours", spread=spread(done)),
    ]


def _beside_a_running_job(stubs, xor) -> list[dict]:
    """xor jobs submitted while a longer LeNet-5 job holds a pooled worker."""
    import threading

    long_job = _spec("digits_lenet5", scaling={"num_workers": 1}, training={"epochs": 400})
    holder = threading.Thread(target=_timed_job, args=(stubs, long_job))
    holder.start()
    time.sleep(2.0)  # the long job is running
    runs = [_timed_job(stubs, xor) for _ in range(3)]
    holder.join()
    return runs


def ddp_rows(stubs, baseline: "RayTrainBaseline") -> list[dict]:
    """2-worker DDP against Ray Train's own start-up, interleaved, timed to the training
    function's first line on both sides, and to the end."""
    ddp = _spec("xor_mlp", scaling={"num_workers": 2})
    ours_fn, ours_done, base_fn, base_fit = [], [], [], []
    for _ in range(DDP_REPEATS):
        job = _timed_job(stubs, ddp)
        ours_fn.append(to_training_function(stubs, job))
        ours_done.append(job["done"])
        fit = baseline.fit(2)
        base_fn.append(fit["first_line_s"])
        base_fit.append(fit["fit_s"])
    note = "baseline: TorchTrainer.fit of an empty 2-worker loop, same cluster, interleaved"
    return [
        row("2-worker DDP: submit -> training function's first line (s)", median(ours_fn),
            median(base_fn), "<= 1.1", spread=f"ours {spread(ours_fn)}; "
            f"baseline {spread(base_fn)}", note=note),
        row("2-worker DDP xor_mlp: submit -> SUCCEEDED (s) vs an empty fit",
            median(ours_done), median(base_fit), "<= 1.1",
            spread=f"ours {spread(ours_done)}; baseline {spread(base_fit)}", note=note),
    ]


def throughput_rows(stubs) -> list[dict]:
    """samples/s of the median epoch: a job through the API against our own loop run in
    this process on the same spec (same features: optimizer, memory format, threads),
    interleaved, THROUGHPUT_ROUNDS rounds."""
    from bench import train as bench_train

    out = []
    for name in ("LeNet-5", "MLP"):
        spec = bench_train.digits_spec(name, epochs=10)
        spec.name = f"bench-{name.lower()}"
        stack, local = [], []
        for _ in range(THROUGHPUT_ROUNDS):
            events = _timed_job(stubs, spec)["events"]
            stack.append(median([e.epoch.samples_per_second for e in events
                                 if e.HasField("epoch")][1:]))
            local.append(median(bench_train.ours(spec, threads=1)))
        out.append(row(f"{name} digits train samples/s: via the job API vs our loop "
                       "in-process (median epoch)", median(stack), median(local), ">= 0.95",
                       spread=f"ours {spread(stack)}; in-process {spread(local)}"))
    return out


# The dispatcher's start-up lines that end "(N s after start)" (trainserve.dispatch).
DISPATCHER_PHASES = {"connected to Ray": "connected to Ray",
                     "Serve ready": "Serve application deployed",
                     "pooled workers warm": "pooled workers warm"}


def up_phase_rows(stack) -> list[dict]:
    """Where `up` goes: when each component was ready (seconds after `up` began), and the
    dispatcher's own steps (seconds after its start), from its log."""
    rows = [row(f"trainserve up: {name} ready after (s)", seconds)
            for name, seconds in stack.bench_ready_s.items()]
    text = stack.log_path("dispatcher").read_text(errors="replace")
    for needle, label in DISPATCHER_PHASES.items():
        found = re.findall(rf"{needle}.*\(([0-9.]+) s after start\)", text)
        if found:
            rows.append(row(f"trainserve up: dispatcher {label}, s after its start",
                            float(found[0])))
    return rows


def main() -> list[dict]:
    from trainserve.core.pb import job_pb2_grpc

    with local_stack() as stack:
        up_s = stack.bench_up_s
        channel = stack.api_channel()
        stubs = job_pb2_grpc.JobServiceStub(channel)
        baseline = RayTrainBaseline(stack)
        try:
            rows = (fast_path_rows(stubs) + ddp_rows(stubs, baseline)
                    + throughput_rows(stubs))
        finally:
            baseline.close()
        # Timed on the idle stack: while it pre-warms its workers, both cores are busy.
        ray_s = [ray_start_seconds(stack) for _ in range(3)]
    rows[:0] = [row("trainserve up -> ready (s)", up_s, median(ray_s), "<= 2",
                    spread=f"baseline {spread(ray_s)}",
                    note="baseline: ray start --head alone, same flags, idle stack"),
                *up_phase_rows(stack)]
    print_table("spine (warm local stack, 2 CPUs)", rows)
    print("results:", save("spine", rows, {"repeats": REPEATS, "ddp_repeats": DDP_REPEATS}))
    return rows


if __name__ == "__main__":
    main()
