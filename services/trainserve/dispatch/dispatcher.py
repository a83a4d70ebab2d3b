"""The dispatcher process: scheduler, crash recovery, leases, deploy reconciler.

Every loop here is a daemon thread around blocking Redis and Ray calls; the state they act on
lives in Redis, so killing this process loses nothing: a restarted (or another) dispatcher
claims the jobs whose leases expired and resumes them.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field

from trainserve.core.locations import default_storage_dir
from trainserve.core.tracking import StackTracking
from trainserve.dispatch.metrics import DispatcherMetrics
from trainserve.dispatch.runner import JobRunner
from trainserve.registry.service import DeploymentsCore
from trainserve.store.jobs import RETENTION_S, JobStore
from trainserve.store.models import ModelStore
from trainserve.core.scheduling import Quota, plan
from trainserve.store import keys
from trainserve.store.queue import LEASE_SECONDS, JobQueue, Lease, cluster_resources, quota_of
from trainserve.store.redis import connect
from trainserve.training.validate import MAX_JOB_DURATION_S

log = logging.getLogger("trainserve.dispatch")
PREWARM_AFTER_SERVE_S = 60.0  # the longest the worker warming waits for Serve


@dataclass
class DispatcherConfig:
    redis_url: str = "redis://127.0.0.1:6380/0"
    ray_address: str = "127.0.0.1:6379"
    storage_dir: str = field(default_factory=lambda: str(default_storage_dir()))
    serve_http: str = "127.0.0.1:8000"
    # Where clients reach Serve (recorded in each Deployment's rest_url / grpc_target);
    # default: serve_http / serve_grpc. In a cluster Serve binds 0.0.0.0 behind a Service.
    public_http: str = ""
    public_grpc: str = ""
    serve_grpc: str = "127.0.0.1:9000"
    max_concurrent_jobs: int = 4
    consumer: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    start_serve: bool = True
    # Inference bearer-token authentication (ServeConfig.inference_token_file); "" = open.
    inference_token_file: str = ""
    # More `ServeConfig` fields (replicas, autoscaling, resources), by name.
    serve_options: dict = field(default_factory=dict)
    # Default per-user quota (0 = unlimited): concurrent jobs, CPUs, GPUs. Published to
    # `keys.QUOTA_DEFAULT`; the fields of `keys.quota(user)` override it per user. One user's
    # jobs alone cannot take every slot of a shared cluster beyond `user_max_jobs`.
    user_max_jobs: int = 4
    user_max_cpus: float = 0.0
    user_max_gpus: float = 0.0
    # How often the scheduler looks at the queue, and how many queued jobs it ranks.
    schedule_interval_s: float = 0.25
    schedule_window: int = 1000
    # Wall-clock limit of a job whose spec sets none (`training.max_duration_s` 0), and the
    # most any job gets here; specs asking more than MAX_JOB_DURATION_S are refused at
    # submission.
    max_job_duration_s: float = MAX_JOB_DURATION_S
    # How long a finished job's events and worker logs are kept, in seconds (0: forever).
    job_retention_s: int = RETENTION_S
    # The trackers of jobs whose spec names none (docs/tracking.md).
    tracking: StackTracking = field(default_factory=StackTracking)


class Dispatcher:
    def __init__(self, cfg: DispatcherConfig):
        self.cfg = cfg
        self.r = connect(cfg.redis_url)
        self.store = JobStore(self.r, retention_s=cfg.job_retention_s)
        self.queue = JobQueue(self.r, cfg.consumer, self.store)
        self.deployments = DeploymentsCore(self.r, cfg.public_http or cfg.serve_http,
                                           cfg.public_grpc or cfg.serve_grpc)
        self.runner = JobRunner(self.store, ModelStore(self.r), self.deployments, cfg.redis_url,
                                cfg.storage_dir, max_duration_s=cfg.max_job_duration_s,
                                tracking=cfg.tracking)
        self.metrics = DispatcherMetrics()
        self.running: dict[str, Lease] = {}  # the jobs this dispatcher runs, by id
        self._reasons: dict[str, str] = {}  # the waiting reasons last written
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.serve_ready = threading.Event()

    # -- start-up ---------------------------------------------------------------------------
    def start(self) -> None:
        import ray

        self.started_at = time.monotonic()
        os.makedirs(self.cfg.storage_dir, exist_ok=True)
        ray.init(address=self.cfg.ray_address, namespace="trainserve", log_to_driver=False,
                 logging_level=logging.WARNING)
        log.info("connected to Ray %s", self._since_start())
        self._publish_cluster()
        self.queue.publish_default_quota(Quota(self.cfg.user_max_jobs, self.cfg.user_max_cpus,
                                               self.cfg.user_max_gpus))
        migrated = self.queue.migrate_stream()
        if migrated:
            log.info("queued %d jobs from the stream of an earlier version", migrated)
        loops = [self._schedule_loop, self._recovery_loop, self._lease_loop, self._cluster_loop]
        if self.cfg.start_serve:
            loops += [self._serve_start, self._deploy_loop]
        else:
            self.serve_ready.set()
        for fn in loops:
            threading.Thread(target=self._guard(fn), name=fn.__name__, daemon=True).start()
        threading.Thread(target=self._prewarm, daemon=True).start()

    def _guard(self, fn):
        """Keep a loop alive through Redis blips; log and retry instead of dying silently."""
        def loop():
            while not self.stop.is_set():
                try:
                    fn()
                    return
                except Exception:  # noqa: BLE001
                    log.exception("%s failed; retrying in 1 s", fn.__name__)
                    self.metrics.loop_errors.labels(fn.__name__).inc()
                    time.sleep(1)
        return loop

    def _prewarm(self) -> None:
        # After Serve is up: warming imports torch in one worker per CPU, which on a small
        # machine would slow Serve's start-up (and so the stack's readiness) by seconds.
        self.serve_ready.wait(PREWARM_AFTER_SERVE_S)
        try:
            from trainserve.runtime.launch import prewarm
            prewarm()
        except Exception:  # noqa: BLE001 - only an optimization
            log.warning("prewarm failed", exc_info=True)
        finally:
            self.r.set(keys.DISPATCHER_WARM, self.cfg.consumer)
            log.info("pooled workers warm %s", self._since_start())

    def _serve_start(self) -> None:
        from trainserve.serve.control import ServeConfig, ensure_serve

        http_host, http_port = self.cfg.serve_http.rsplit(":", 1)
        grpc_port = int(self.cfg.serve_grpc.rsplit(":", 1)[1])
        ensure_serve(ServeConfig(http_host=http_host, http_port=int(http_port),
                                 grpc_port=grpc_port, redis_url=self.cfg.redis_url,
                                 storage_dir=self.cfg.storage_dir,
                                 inference_token_file=self.cfg.inference_token_file,
                                 **self.cfg.serve_options))
        self.serve_ready.set()
        log.info("Serve ready on http %s, grpc %s %s", self.cfg.serve_http, self.cfg.serve_grpc,
                 self._since_start())

    def _since_start(self) -> str:
        """`(N.N s after start)`, for the start-up log lines (bench/spine.py reads them)."""
        return f"({time.monotonic() - self.started_at:.1f} s after start)"

    # -- jobs --------------------------------------------------------------------------------
    def _schedule_loop(self) -> None:
        while not self.stop.wait(self.cfg.schedule_interval_s):
            self.r.set(keys.DISPATCHER_READY, self.cfg.consumer, ex=15)
            self.metrics.heartbeat.set_to_current_time()
            if self.queue.depth() and self.queue.lock_scheduler():
                try:
                    self.schedule_once()
                finally:
                    self.queue.unlock_scheduler()

    def schedule_once(self) -> list[str]:
        """Start what the policy allows now (`jobs.scheduling.plan`) and record why the rest
        waits. Returns the ids started."""
        with self.lock:
            slots = self.cfg.max_concurrent_jobs - len(self.running)
        quotas: dict[str, Quota] = {}

        def quota(user: str) -> Quota:
            if user not in quotas:
                quotas[user] = quota_of(self.r, user)
            return quotas[user]

        decided = plan(self.queue.candidates(self.cfg.schedule_window), self.queue.running(),
                       self._cluster(), quota, max(0, slots))
        started = []
        for job_id in decided.start:
            fence = self.queue.start(job_id)
            if fence:
                started.append(job_id)
                self._launch(job_id, fence)
        changed = {j: r for j, r in decided.reasons.items() if self._reasons.get(j) != r}
        if changed:
            self.queue.set_reasons(changed)
        self._reasons = dict(decided.reasons)
        return started

    def _cluster(self) -> dict:
        return cluster_resources(self.r)

    def _recovery_loop(self) -> None:
        """Resume RUNNING jobs whose dispatcher died (their lease expired)."""
        while not self.stop.wait(2.0):
            for job_id in self.queue.orphans():
                with self.lock:
                    if job_id in self.running:
                        continue
                fence = self.queue.acquire_lease(job_id)
                if fence:
                    log.warning("job %s: its dispatcher is gone; resuming it", job_id)
                    self._launch(job_id, fence, resume=True)

    def _launch(self, job_id: str, fence: int, resume: bool = False) -> None:
        """Run a job this dispatcher holds the lease (with fencing token `fence`) of, in a
        thread of its own."""
        lease = Lease(job_id, self.cfg.consumer, fence)
        with self.lock:
            self.running[job_id] = lease
        threading.Thread(target=self._run_one, args=(lease, resume), name=f"job-{job_id}",
                         daemon=True).start()

    def _run_one(self, lease: Lease, resume: bool) -> None:
        start, job_id = time.time(), lease.job_id
        try:
            state = self.runner.run(job_id, started=not resume, lease=lease)
            if state.is_terminal:
                self.metrics.finished(state.name.lower(), time.time() - start)
        except Exception as exc:  # noqa: BLE001 - it stays RUNNING, unleased: recovery retries
            log.exception("job %s: runner failed; recovery will resume it", job_id)
            try:
                self.runner.record_interruption(job_id, f"its runner failed: {exc}")
            except Exception:  # noqa: BLE001 - only a better message for later
                log.warning("job %s: could not record why it stopped", job_id, exc_info=True)
        finally:
            if not lease.lost.is_set():
                self.queue.release_lease(job_id)
            with self.lock:
                self.running.pop(job_id, None)

    def _lease_loop(self) -> None:
        """Renew the leases of the jobs running here. A lease that is gone or someone
        else's, or that could not be renewed for LEASE_SECONDS (Redis unreachable, this
        process stalled), is lost: its job's run is stopped at once and records nothing,
        since another dispatcher may be running the job already."""
        while not self.stop.wait(LEASE_SECONDS / 3):
            with self.lock:
                leases = list(self.running.values())
            for lease in leases:
                self._renew(lease)
            self.metrics.running.set(len(leases))

    def _renew(self, lease: Lease) -> None:
        if lease.lost.is_set():
            return
        # Judged before asking: a renewal that comes after the lease ran out is too late
        # even if it succeeds (another dispatcher may have come and gone meanwhile).
        asked = time.monotonic()
        late = asked - lease.renewed_at >= LEASE_SECONDS
        try:
            ok = bool(self.queue.renew_lease(lease.job_id)) and not late
        except Exception:  # noqa: BLE001 - e.g. Redis unreachable: retried next round
            log.warning("job %s: lease renewal failed", lease.job_id, exc_info=True)
            ok = None if not late else False
        if ok:
            lease.renewed_at = asked  # the new expiry counts from no earlier than this
        elif ok is False:
            log.error("job %s: this dispatcher lost its lease; stopping its run of the job",
                      lease.job_id)
            lease.lost.set()

    def _cluster_loop(self) -> None:
        while not self.stop.wait(10.0):
            self._publish_cluster()

    def _publish_cluster(self) -> None:
        import ray

        res = ray.cluster_resources()
        mapping = {"CPU": res.get("CPU", 0.0), "GPU": res.get("GPU", 0.0),
                   "updated_at": time.time()}
        self.r.hset(keys.CLUSTER, mapping={k: repr(float(v)) for k, v in mapping.items()})

    # -- deployments ---------------------------------------------------------------------------
    def _deploy_loop(self) -> None:
        from trainserve.dispatch.deployer import Deployer

        self.serve_ready.wait()
        Deployer(self.r, self.deployments.store, self.cfg.consumer).run(self.stop)

    def shutdown(self) -> None:
        self.stop.set()
        self.r.delete(keys.DISPATCHER_READY, keys.DISPATCHER_WARM)
