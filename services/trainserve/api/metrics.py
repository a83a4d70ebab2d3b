"""Control-plane and training metrics of the job API, in Prometheus naming conventions.

The counters and histograms below are recorded by the API process itself (the interceptor,
the servicers). Everything about jobs, the queue, the dispatchers and running trainings is
read from Redis at scrape time by the collectors, so any API replica reports the same numbers,
none keeps counts of its own, and the series of a job that finished disappear by themselves:
the per-job label sets are bounded by the jobs running now. docs/monitoring.md lists them all.
"""
from __future__ import annotations

import abc

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

GRPC_REQUESTS = Counter("trainserve_grpc_requests_total",
                        "gRPC requests handled by the job API.", ["method", "code"])
GRPC_LATENCY = Histogram("trainserve_grpc_request_duration_seconds",
                         "gRPC request handling time (streams: until the stream ends).",
                         ["method"], buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5,
                                              1, 2.5, 5, 10, 60, 600))
SUBMISSIONS = Counter("trainserve_job_submissions_total",
                      "SubmitJob calls that created a new job.")
REDIS_ERRORS = Counter("trainserve_redis_errors_total", "Redis calls that failed.")

TRAINING, SEARCH = "training", "search"
KINDS = (TRAINING, SEARCH)
# Epoch metrics named `<split>_<name>` (train_loss, val_accuracy, ...) get a `split` label.
SPLITS = ("train", "val")
# Epoch events are interleaved with log lines; look this far back for the latest epoch.
_EVENTS_BACK = 200


def job_kind(spec) -> str:
    """"search" for a spec with a `search` section (a Ray Tune search), else "training"."""
    return SEARCH if spec.HasField("search") else TRAINING


class _RedisCollector(Collector):
    """Reads its families from Redis at scrape time (`_families`); a Redis error counts in
    `trainserve_redis_errors_total` and that scrape yields nothing from it."""

    def collect(self):
        try:
            families = self._families()
        except Exception:  # a scrape must not fail because Redis blinked
            REDIS_ERRORS.inc()
            return
        yield from families

    @abc.abstractmethod
    def _families(self) -> list:
        """This scrape's metric families, read from Redis."""


class JobStateCollector(_RedisCollector):
    """Jobs by state and kind, the queue's depth and the age of its oldest job, and whether a
    dispatcher is alive, read from Redis at scrape time."""

    def __init__(self, client):
        self.r = client
        # job id -> kind; a job's kind never changes, so each spec is read once. Pruned to
        # the ids still indexed on every scrape.
        self._kinds: dict[str, str] = {}

    def describe(self):
        """The families without samples (so registering reads nothing from Redis)."""
        return [GaugeMetricFamily("trainserve_jobs", "", labels=["state", "kind"]),
                *(GaugeMetricFamily(n, "") for n in (
                    "trainserve_queue_depth", "trainserve_queue_oldest_waiting_age_seconds",
                    "trainserve_dispatcher_ready"))]

    def _families(self) -> list:
        from trainserve.core.state import JobState
        from trainserve.store import keys

        jobs = GaugeMetricFamily("trainserve_jobs", "Jobs by state and kind (training or "
                                 "search).", labels=["state", "kind"])
        pipe = self.r.pipeline(transaction=False)
        for s in JobState:
            pipe.zrange(keys.jobs_in(s), 0, -1)
        ids_by_state = [[i.decode() for i in ids] for ids in pipe.execute()]
        kinds = self._kinds_of([i for ids in ids_by_state for i in ids])
        for s, ids in zip(JobState, ids_by_state):
            for kind in KINDS:
                jobs.add_metric([s.name.lower(), kind], sum(kinds.get(i) == kind for i in ids))
        return [jobs, *self._queue_families(), self._dispatcher_family()]

    def _kinds_of(self, ids: list[str]) -> dict[str, str]:
        from trainserve.core.pb import spec_pb2
        from trainserve.store import keys

        self._kinds = {i: k for i, k in self._kinds.items() if i in set(ids)}
        new = [i for i in ids if i not in self._kinds]
        pipe = self.r.pipeline(transaction=False)
        for i in new:
            pipe.hget(keys.job(i), "spec")
        for i, raw in zip(new, pipe.execute()):
            if raw is not None:
                self._kinds[i] = job_kind(spec_pb2.JobSpec.FromString(raw))
        return self._kinds

    def _queue_families(self) -> list:
        from trainserve.store.queue import oldest_waiting_age, waiting_count

        depth = GaugeMetricFamily("trainserve_queue_depth",
                                  "Jobs in the queue: queued and not started.")
        age = GaugeMetricFamily("trainserve_queue_oldest_waiting_age_seconds",
                                "How long the longest-waiting queued job has waited (0 when "
                                "none waits).")
        depth.add_metric([], waiting_count(self.r))
        age.add_metric([], oldest_waiting_age(self.r))
        return [depth, age]

    def _dispatcher_family(self) -> GaugeMetricFamily:
        from trainserve.store.keys import DISPATCHER_READY

        ready = GaugeMetricFamily("trainserve_dispatcher_ready", "1 while a dispatcher's "
                                  "heartbeat key is fresh in Redis (it expires when no "
                                  "dispatcher renews it), else 0.")
        ready.add_metric([], 1.0 if self.r.exists(DISPATCHER_READY) else 0.0)
        return ready


class TrainingCollector(_RedisCollector):
    """The latest epoch of every RUNNING job and the trials of every running search, labelled
    by job id and name, read from Redis at scrape time."""

    def __init__(self, client):
        self.r = client

    def describe(self):
        """The families without samples (so registering reads nothing from Redis)."""
        return _TrainingFamilies().all()

    def _families(self) -> list:
        from trainserve.core.state import JobState
        from trainserve.core.pb import spec_pb2
        from trainserve.store import keys

        fam = _TrainingFamilies()
        ids = [i.decode() for i in self.r.zrange(keys.jobs_in(JobState.RUNNING), 0, -1)]
        pipe = self.r.pipeline(transaction=False)
        for i in ids:
            pipe.hget(keys.job(i), "spec")
        for job_id, raw in zip(ids, pipe.execute()):
            if raw is None:
                continue
            spec = spec_pb2.JobSpec.FromString(raw)
            labels = [job_id, spec.name]
            if job_kind(spec) == SEARCH:
                fam.add_search(labels, self._trials(job_id))
            else:
                event = self._latest_epoch(job_id)
                if event is not None:
                    fam.add_epoch(labels, event)
        return fam.all()

    def _latest_epoch(self, job_id: str):
        from trainserve.core.pb import job_pb2
        from trainserve.store import keys

        for eid, fields in self.r.xrevrange(keys.events(job_id), "+", "-", count=_EVENTS_BACK):
            event = job_pb2.JobEvent.FromString(fields[b"pb"])
            if event.HasField("epoch"):
                event.event_id = eid.decode()
                return event
        return None

    def _trials(self, job_id: str) -> list:
        from trainserve.store.trials import TrialStore
        return TrialStore(self.r).list(job_id)


class _TrainingFamilies:
    """The gauge families of `TrainingCollector`, filled job by job."""

    def __init__(self):
        job = ["job_id", "job_name"]

        def gauge(name, doc, extra=()):
            return GaugeMetricFamily(name, doc, labels=[*job, *extra])
        self.epoch = gauge("trainserve_training_epoch", "Latest finished epoch of a running "
                           "training job (1-based).")
        self.total = gauge("trainserve_training_planned_epochs",
                           "Epochs a running training job will train at most.")
        self.loss = gauge("trainserve_training_loss", "Latest epoch's mean loss of a running "
                          "training job, by split (train, val).", ["split"])
        self.metric = gauge("trainserve_training_metric", "Latest epoch's metrics of a running "
                            "training job by split (train, val) and name (accuracy, ...); "
                            "metrics of no split have split=\"\".", ["split", "metric"])
        self.lr = gauge("trainserve_training_learning_rate", "Learning rate of the latest "
                        "epoch of a running training job.")
        self.sps = gauge("trainserve_training_samples_per_second", "Training samples per "
                         "second in the latest epoch (all ranks together).")
        self.elapsed = gauge("trainserve_training_elapsed_seconds", "Training time of the "
                             "running attempt at the latest epoch.")
        self.last = gauge("trainserve_training_last_epoch_timestamp_seconds",
                          "When the latest epoch of a running training job ended.")
        self.gpu_util = gauge("trainserve_training_gpu_utilization_ratio", "GPU utilization "
                              "(0-1) at the latest epoch; only jobs that train on a GPU.")
        self.gpu_mem = gauge("trainserve_training_gpu_memory_bytes", "GPU memory allocated by "
                             "the training at the latest epoch; only jobs that train on a GPU.")
        self.trials = gauge("trainserve_search_trials", "Trials of a running search by state "
                            "(running, finished, stopped_early, failed, cancelled).", ["state"])
        self.trial_epoch = gauge("trainserve_search_trial_epoch", "Epochs a trial of a running "
                                 "search has reported.", ["trial"])
        self.trial_metric = gauge("trainserve_search_trial_metric", "Latest reported metrics of "
                                  "each trial of a running search (val_loss, val_accuracy, ...).",
                                  ["trial", "metric"])

    def add_epoch(self, labels: list[str], event) -> None:
        e = event.epoch
        self.epoch.add_metric(labels, e.epoch)
        self.total.add_metric(labels, e.total_epochs)
        self.sps.add_metric(labels, e.samples_per_second)
        self.elapsed.add_metric(labels, e.elapsed_seconds)
        self.last.add_metric(labels, event.time.ToNanoseconds() / 1e9)
        for name, value in sorted(e.metrics.items()):
            if name == "lr":
                self.lr.add_metric(labels, value)
            elif name == "gpu_utilization":
                self.gpu_util.add_metric(labels, value)
            elif name == "gpu_memory_bytes":
                self.gpu_mem.add_metric(labels, value)
            elif name == "fold":
                continue  # cross-validation's fold number: a tag, not a measurement
            else:
                split, _, rest = name.partition("_")
                if split in SPLITS and rest == "loss":
                    self.loss.add_metric([*labels, split], value)
                elif split in SPLITS and rest:
                    self.metric.add_metric([*labels, split, rest], value)
                else:
                    self.metric.add_metric([*labels, "", name], value)

    def add_search(self, labels: list[str], trials: list) -> None:
        states: dict[str, int] = {}
        for t in trials:
            states[t.state] = states.get(t.state, 0) + 1
            self.trial_epoch.add_metric([*labels, t.id], t.epochs)
            for name, value in sorted(t.metrics.items()):
                if name not in ("epoch", "trial_done", "fold"):
                    self.trial_metric.add_metric([*labels, t.id, name], value)
        for state, n in sorted(states.items()):
            self.trials.add_metric([*labels, state], n)

    def all(self) -> list:
        return [self.epoch, self.total, self.loss, self.metric, self.lr, self.sps,
                self.elapsed, self.last, self.gpu_util, self.gpu_mem, self.trials,
                self.trial_epoch, self.trial_metric]
