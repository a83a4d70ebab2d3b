"""The dispatcher process: queue consumer, crash recovery, leases, deploy reconciler.

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

from trainserve.config import Config
from trainserve.dispatch.metrics import DispatcherMetrics
from trainserve.dispatch.runner import JobRunner
from trainserve.jobs.service import CLUSTER_KEY
from trainserve.registry.service import DeploymentsCore
from trainserve.store.jobs import JobStore
from trainserve.store.models import ModelStore
from trainserve.store.queue import LEASE_SECONDS, JobQueue, QueueEntry
from trainserve.store.redis import PREFIX, connect

log = logging.getLogger("trainserve.dispatch")
READY_KEY = PREFIX + "dispatcher:ready"


@dataclass
class DispatcherConfig:
    redis_url: str = "redis://127.0.0.1:6380/0"
    ray_address: str = "127.0.0.1:6379"
    storage_dir: str = field(default_factory=lambda: str(Config.from_env().storage_path))
    serve_http: str = "127.0.0.1:8000"
    serve_grpc: str = "127.0.0.1:9000"
    max_concurrent_jobs: int = 4
    consumer: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    start_serve: bool = True
    # Inference bearer-token authentication (ServeConfig.inference_token_file); "" = open.
    inference_token_file: str = ""
    # More `ServeConfig` fields (replicas, autoscaling, resources), by name.
    serve_options: dict = field(default_factory=dict)


class Dispatcher:
    def __init__(self, cfg: DispatcherConfig):
        self.cfg = cfg
        self.r = connect(cfg.redis_url)
        self.store = JobStore(self.r)
        self.queue = JobQueue(self.r, cfg.consumer)
        self.deployments = DeploymentsCore(self.r, cfg.serve_http, cfg.serve_grpc)
        self.runner = JobRunner(self.store, ModelStore(self.r), self.deployments, cfg.redis_url,
                                cfg.storage_dir)
        self.metrics = DispatcherMetrics()
        self.running: dict[str, QueueEntry] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.serve_ready = threading.Event()

    # -- start-up ---------------------------------------------------------------------------
    def start(self) -> None:
        import ray

        os.makedirs(self.cfg.storage_dir, exist_ok=True)
        ray.init(address=self.cfg.ray_address, namespace="trainserve", log_to_driver=False,
                 logging_level=logging.WARNING)
        self._publish_cluster()
        loops = [self._queue_loop, self._recovery_loop, self._lease_loop, self._cluster_loop]
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
        try:
            from trainserve.train.launch import prewarm
            prewarm()
        except Exception:  # noqa: BLE001 - only an optimization
            log.warning("prewarm failed", exc_info=True)

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
        log.info("Serve ready on http %s, grpc %s", self.cfg.serve_http, self.cfg.serve_grpc)

    # -- jobs --------------------------------------------------------------------------------
    def _queue_loop(self) -> None:
        while not self.stop.is_set():
            self.r.set(READY_KEY, self.cfg.consumer, ex=15)
            self.metrics.heartbeat.set_to_current_time()
            free = self.cfg.max_concurrent_jobs - len(self.running)
            if free <= 0:
                time.sleep(0.2)
                continue
            for entry in self.queue.read(count=free, block_ms=500):
                self._launch(entry)

    def _recovery_loop(self) -> None:
        """Claim queue entries whose dispatcher died (no lease) and finish or resume them."""
        while not self.stop.wait(2.0):
            for entry in self.queue.pending():
                with self.lock:
                    if entry.job_id in self.running:
                        continue
                if not self.store.exists(entry.job_id):
                    self.queue.ack(entry)
                elif not self.r.exists(f"{PREFIX}lease:{entry.job_id}"):
                    self.queue.claim(entry)
                    self._launch(entry)

    def _launch(self, entry: QueueEntry) -> None:
        if not self.queue.acquire_lease(entry.job_id, self.cfg.consumer):
            return  # another dispatcher runs it
        with self.lock:
            self.running[entry.job_id] = entry
        threading.Thread(target=self._run_one, args=(entry,), name=f"job-{entry.job_id}",
                         daemon=True).start()

    def _run_one(self, entry: QueueEntry) -> None:
        start = time.time()
        try:
            state = self.runner.run(entry.job_id)
            self.queue.ack(entry)
            self.metrics.finished(state.name.lower(), time.time() - start)
        except Exception:  # noqa: BLE001 - leave it pending: recovery retries it
            log.exception("job %s: runner failed; it stays queued for recovery", entry.job_id)
        finally:
            self.queue.release_lease(entry.job_id, self.cfg.consumer)
            with self.lock:
                self.running.pop(entry.job_id, None)

    def _lease_loop(self) -> None:
        while not self.stop.wait(LEASE_SECONDS / 3):
            with self.lock:
                ids = list(self.running)
            for job_id in ids:
                self.queue.renew_lease(job_id, self.cfg.consumer)
            self.metrics.running.set(len(ids))

    def _cluster_loop(self) -> None:
        while not self.stop.wait(10.0):
            self._publish_cluster()

    def _publish_cluster(self) -> None:
        import ray

        res = ray.cluster_resources()
        mapping = {"CPU": res.get("CPU", 0.0), "GPU": res.get("GPU", 0.0),
                   "updated_at": time.time()}
        self.r.hset(CLUSTER_KEY, mapping={k: repr(float(v)) for k, v in mapping.items()})

    # -- deployments ---------------------------------------------------------------------------
    def _deploy_loop(self) -> None:
        from trainserve.dispatch.deployer import Deployer

        self.serve_ready.wait()
        Deployer(self.r, self.deployments.store, self.cfg.consumer).run(self.stop)

    def shutdown(self) -> None:
        self.stop.set()
        self.r.delete(READY_KEY)
