"""Scheduling policy: which queued jobs start now, and why the others wait. Pure functions,
no Redis: the dispatcher feeds them what it read and acts on the answer.

The policy (docs/architecture.md, "Scheduling"):

- **Order.** Queued jobs are ranked by `queue_score` = submission time (ms) minus
  `priority × AGING_S` (in ms), then by id: higher priority first, FIFO within a priority,
  and a job gains one priority level for every `AGING_S` it has waited, so a low-priority job
  ends up ahead of any stream of newer, higher-priority work (no starvation by priority).
- **Quotas.** Per user: concurrent jobs, CPUs, GPUs (0 = unlimited). A job over its user's
  quota waits and reserves nothing, so one user's backlog never holds up another's jobs.
- **Resources, with reservation.** In rank order, a job starts if its CPUs/GPUs fit in what
  the running jobs leave free. A job that does not fit reserves its resources: the jobs
  ranked after it may use only what is left beyond it. So small jobs cannot overtake a big
  one forever (it starts as soon as enough running jobs end), and a big one cannot block
  small ones beyond the time the jobs it waits for need to finish.
- **Never fits.** A job needing more than the whole cluster (or its user's whole quota) is
  refused at submission (`check_fits`), never queued.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from trainserve.core.errors import InvalidArgument
from trainserve.core.pb import spec_pb2

AGING_S = 300.0          # one priority level gained per this many seconds waited
PRIORITY_RANGE = (-100, 100)
# A job's priority unless set; only an admin may submit above it (anyone may go below).
DEFAULT_PRIORITY = 0
MAX_FAILURES_RANGE = (0, 100)
EPS = 1e-9


def queue_score(created_ms: int, priority: int, aging_s: float = AGING_S) -> float:
    """The rank of a queued job: lower starts first (ties: the lower id, i.e. the older)."""
    return float(created_ms) - priority * aging_s * 1000.0


@dataclass(frozen=True)
class Need:
    cpus: float = 0.0
    gpus: float = 0.0


def need_of(spec: spec_pb2.JobSpec) -> Need:
    """What a job holds while it runs: every worker's CPUs and GPUs. A search counts as one
    trial: Tune runs as many trials at once as the cluster has room for."""
    sc = spec.scaling
    workers = sc.num_workers if sc.HasField("num_workers") else 1
    cpus = sc.cpus_per_worker if sc.HasField("cpus_per_worker") else 1.0
    return Need(cpus=workers * cpus, gpus=float(workers if sc.use_gpu else 0))


@dataclass(frozen=True)
class Quota:
    """Per-user limits; 0 means unlimited (`queued`, the jobs a user may have waiting, is
    enforced at submission: 0 there means the API's own default)."""
    jobs: int = 0
    cpus: float = 0.0
    gpus: float = 0.0
    queued: int = 0

    @classmethod
    def from_fields(cls, raw: dict) -> "Quota":
        get = lambda k: raw.get(k) or raw.get(k.encode()) or 0  # noqa: E731
        return cls(jobs=int(float(get("jobs"))), cpus=float(get("cpus")),
                   gpus=float(get("gpus")), queued=int(float(get("queued"))))

    def merged(self, override: "Quota | None") -> "Quota":
        """This quota with the non-zero fields of `override` replacing its own."""
        if override is None:
            return self
        return Quota(jobs=override.jobs or self.jobs, cpus=override.cpus or self.cpus,
                     gpus=override.gpus or self.gpus, queued=override.queued or self.queued)


@dataclass
class Usage:
    jobs: int = 0
    cpus: float = 0.0
    gpus: float = 0.0

    def add(self, need: Need) -> None:
        self.jobs += 1
        self.cpus += need.cpus
        self.gpus += need.gpus


@dataclass(frozen=True)
class Candidate:
    """A queued job, in rank order when handed to `plan`."""
    job_id: str
    user: str
    need: Need


@dataclass(frozen=True)
class Running:
    job_id: str
    user: str
    need: Need


@dataclass
class Plan:
    start: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # job id -> why it waits


def check_fits(need: Need, cluster: dict, quota: Quota, user: str) -> None:
    """Refuse (INVALID_ARGUMENT on the scaling field) a job that could never start: more than
    the cluster has in all, or more than its user may ever hold at once."""
    have_cpu, have_gpu = cluster.get("CPU"), cluster.get("GPU")
    if have_cpu is not None and need.cpus > have_cpu + EPS:
        raise InvalidArgument(f"needs {need.cpus:g} CPUs but the cluster has {have_cpu:g} in "
                              "all", field="spec.scaling.num_workers")
    if have_gpu is not None and need.gpus > have_gpu + EPS:
        raise InvalidArgument(f"needs {need.gpus:g} GPUs but the cluster has {have_gpu:g} in "
                              "all", field="spec.scaling.use_gpu")
    who = f"user {user!r}" if user else "an anonymous user"
    if quota.cpus and need.cpus > quota.cpus + EPS:
        raise InvalidArgument(f"needs {need.cpus:g} CPUs but {who} may hold at most "
                              f"{quota.cpus:g}", field="spec.scaling.num_workers")
    if quota.gpus and need.gpus > quota.gpus + EPS:
        raise InvalidArgument(f"needs {need.gpus:g} GPUs but {who} may hold at most "
                              f"{quota.gpus:g}", field="spec.scaling.use_gpu")


def plan(queued: list[Candidate], running: list[Running], cluster: dict,
         quota_of, slots: int) -> Plan:
    """Which of `queued` (in rank order) start now, at most `slots` of them, given the
    `running` jobs, the cluster's `{"CPU", "GPU"}` and `quota_of(user) -> Quota`; and for
    each one that waits, why."""
    free_cpu = cluster.get("CPU", 0.0)
    free_gpu = cluster.get("GPU", 0.0)
    per_user: dict[str, Usage] = {}
    for r in running:
        free_cpu -= r.need.cpus
        free_gpu -= r.need.gpus
        per_user.setdefault(r.user, Usage()).add(r.need)
    out = Plan()
    reserved = False  # a job ranked ahead waits for resources (it reserved them)
    for c in queued:
        used = per_user.setdefault(c.user, Usage())
        over = _over_quota(c.need, used, quota_of(c.user), c.user)
        if over:
            out.reasons[c.job_id] = over
            continue
        fits = c.need.cpus <= free_cpu + EPS and c.need.gpus <= free_gpu + EPS
        if fits and len(out.start) < slots:
            out.start.append(c.job_id)
            used.add(c.need)
        elif fits:
            out.reasons[c.job_id] = "waiting for a dispatcher slot"
        else:
            out.reasons[c.job_id] = _resource_reason(c.need, free_cpu, free_gpu, reserved)
            reserved = True
        # Started or waiting for resources, it holds them ahead of the jobs ranked after it.
        free_cpu -= c.need.cpus
        free_gpu -= c.need.gpus
    return out


def _over_quota(need: Need, used: Usage, quota: Quota, user: str) -> str:
    who = f"user {user!r}" if user else "anonymous users"
    if quota.jobs and used.jobs + 1 > quota.jobs:
        return f"waiting for the quota of {who}: {used.jobs} of {quota.jobs} jobs running"
    if quota.cpus and used.cpus + need.cpus > quota.cpus + EPS:
        return (f"waiting for the quota of {who}: needs {need.cpus:g} CPUs, "
                f"{used.cpus:g} of {quota.cpus:g} in use")
    if quota.gpus and used.gpus + need.gpus > quota.gpus + EPS:
        return (f"waiting for the quota of {who}: needs {need.gpus:g} GPUs, "
                f"{used.gpus:g} of {quota.gpus:g} in use")
    return ""


def _resource_reason(need: Need, free_cpu: float, free_gpu: float, behind: bool) -> str:
    parts = [f"needs {need.cpus:g} CPUs, {max(free_cpu, 0):g} free"]
    if need.gpus:
        parts.append(f"{need.gpus:g} GPUs, {max(free_gpu, 0):g} free")
    tail = " after the jobs ahead of it" if behind else ""
    return f"waiting for resources: {'; '.join(parts)}{tail}"
