"""The job API's core, transport-neutral: what SubmitJob, GetJob, ListJobs, CancelJob,
WatchJob, StreamLogs, GetJobCurves and CompareJobs do, in plain Python over the Redis store
(a job's files: `jobs.artifacts`; curves and comparisons: `jobs.curves`, `jobs.compare`).
The gRPC servicer only converts."""
from __future__ import annotations

import re
import shutil
import uuid
from dataclasses import dataclass
from typing import Iterator, Sequence

import redis

from google.protobuf import unknown_fields
from google.protobuf.message import Message

from trainserve.core.errors import (FailedPrecondition, InvalidArgument, NotFound,
                                   PermissionDenied, ResourceExhausted)
from trainserve.core.scheduling import (DEFAULT_PRIORITY, MAX_FAILURES_RANGE, PRIORITY_RANGE,
                                        check_fits, need_of)
from trainserve.jobs.admission import check_submission
from trainserve.jobs.evaluation import check_evaluation
from trainserve.jobs.compare import (MAX_JOBS, MAX_TRIALS, MIN_JOBS, check_ids, compared_job,
                                     compared_trial, comparison_of, split_trial_ref,
                                     trial_spec)
from trainserve.jobs.curves import epoch_points, job_curves, trial_points
from trainserve.jobs.labels import matches, parse_selector
from trainserve.core.state import JobState
from trainserve.core.pb import job_pb2, spec_pb2
from trainserve.core.modelrefs import ModelRef, parse_ref
from trainserve.registry.datasets import dataset_path
from trainserve.registry.service import resolve
from trainserve.store.datasets import DatasetStore
from trainserve.store.jobs import REQUEST_ID_TTL_S, RETENTION_S, JobStore
from trainserve.store.logs import JobLogs
from trainserve.store.models import ModelStore
from trainserve.store.names import DEPLOYMENT, MODEL, NameClaims
from trainserve.store.queue import cluster_and_quota
from trainserve.store.trials import TrialStore
from trainserve.core.tenancy import Principal, check_visible, claim, visible
from trainserve.training.paths import JobPaths

MAX_PAGE = 1000
USER_RE = re.compile(r"[A-Za-z0-9._@-]*")
STREAM_ID = re.compile(r"\d+-\d+")
# The largest example spec serializes to 368 bytes: 64 KiB leaves room for long descriptions
# and labels while a spec can never weigh on Redis or the API.
MAX_SPEC_BYTES = 64 << 10
USER_MAX_QUEUED = 100


@dataclass(frozen=True)
class Admission:
    """What one submission and one user may put into the store (0: no limit).
    `user_max_queued`: the jobs a user may have QUEUED at once (`ts:quota:<user>` field
    `queued` overrides it per user; a submission an admin sends is not limited);
    `request_id_ttl_s`: how long a request id returns its job; `retention_s`: how long a
    finished job's events and worker logs are kept."""
    max_spec_bytes: int = MAX_SPEC_BYTES
    user_max_queued: int = USER_MAX_QUEUED
    request_id_ttl_s: int = REQUEST_ID_TTL_S
    retention_s: int = RETENTION_S


class JobsCore:
    def __init__(self, client: redis.Redis, storage_dir: str = "",
                 admission: Admission = Admission()):
        self.r = client
        self.admission = admission
        self.store = JobStore(client, request_id_ttl_s=admission.request_id_ttl_s,
                              retention_s=admission.retention_s)
        self.trials = TrialStore(client)
        self.datasets = DatasetStore(client)
        self.names = NameClaims(client)
        self.worker_logs = JobLogs(client)
        self.storage_dir = storage_dir

    def submit(self, spec: spec_pb2.JobSpec, request_id: str,
               owner: str, caller: Principal,
               by: Principal | None = None) -> tuple[job_pb2.Job, bool]:
        """Validate, admit and queue a job for `owner` (the user its quota counts against).
        A job that could never start (more than the cluster or the user's quota holds) is
        refused here; one that cannot start yet waits QUEUED with its `queue_reason`. The
        datasets and transfer sources it names must be `caller`'s, and its model and endpoint
        names not another user's (`tenancy`). `by` is who sends it (default `caller`; else an
        admin submitting for `owner`): only an admin may raise a priority or queue past the
        owner's queued-jobs limit. `request_id` is the owner's own: a retry returns the job."""
        by = caller if by is None else by
        if len(request_id) > 128:
            raise InvalidArgument("at most 128 characters", field="request_id")
        if len(owner) > 128 or not USER_RE.fullmatch(owner):
            raise InvalidArgument("at most 128 letters, digits or . _ @ -", field="user")
        check_spec_size(spec, self.admission.max_spec_bytes)
        _check_scheduling_fields(spec, by)
        cluster, quota = cluster_and_quota(self.r, owner)
        if spec.HasField("evaluate"):  # external validation: registers nothing, claims nothing
            full = check_evaluation(spec, cluster, lambda n: self.uploaded(n, caller),
                                    lambda n, v, a: resolve(ModelStore(self.r), n, v, a, caller,
                                                           ("spec.evaluate.model",) * 3))
        else:
            full = check_submission(spec, cluster, lambda n: self.uploaded(n, caller),
                                    lambda n, v=0: self.model_artifact(n, v, caller))
        check_fits(need_of(full), cluster, quota, owner)
        if not full.HasField("evaluate"):
            self._claim_names(full, owner)  # last check: a job refused above claims nothing
        max_queued = 0 if by.is_admin else quota.queued or self.admission.user_max_queued
        return self.store.submit(full, request_id or uuid.uuid4().hex, owner=owner,
                                 max_queued=max_queued)

    def _claim_names(self, spec: spec_pb2.JobSpec, owner: str) -> None:
        """Claim for `owner`, now, the model name (spec.name) and the endpoint name
        (spec.deploy.name) the job will create, so no other user's job can take them while
        this one waits or trains; ALREADY_EXISTS naming the field if another user holds one."""
        wanted = [(MODEL, spec.name, "spec.name")]
        if spec.HasField("deploy"):
            wanted.append((DEPLOYMENT, spec.deploy.name or spec.name, "spec.deploy.name"))
        claim(self.names, wanted, owner)

    def uploaded(self, name: str, caller: Principal) -> spec_pb2.UploadedContent | None:
        """Where the user dataset `name` lives now, or None if there is none (or it is
        another user's)."""
        ds = self.datasets.find(name)
        if ds is None or not visible(ds.user, caller):
            return None
        path = dataset_path(self.storage_dir, ds.sha256, ds.format)
        # The schema recorded at upload: validation never reads the file (training.userdata).
        return spec_pb2.UploadedContent(sha256=ds.sha256, format=ds.format, path=str(path),
                                        schema=ds.schema)

    def model_artifact(self, name: str, version: int, caller: Principal) -> str | None:
        """The artifact directory of a registered model version (0: the latest; `name` may be
        "NAME@ALIAS", the version the alias names now), or None (also for another user's)."""
        try:
            ref = parse_ref(name, "spec.model.transfer.model") if "@" in name else \
                ModelRef(name, version)
            if ref.alias and version:
                return None  # one or the other
            mv = resolve(ModelStore(self.r), ref.name, ref.version, ref.alias, caller)
        except (NotFound, InvalidArgument):
            return None
        return mv.artifact_uri or None

    def owned(self, job_id: str, caller: Principal) -> job_pb2.Job:
        """The job's record (a search's without its trials) if `caller` may see it; NOT_FOUND
        naming the id otherwise, as if it did not exist."""
        if not job_id:
            raise InvalidArgument("required", field="job_id")
        job = self.store.get(job_id)
        check_visible(job.user, caller, f"job {job_id!r} not found")
        return job

    def get(self, job_id: str, caller: Principal) -> job_pb2.Job:
        job = self.owned(job_id, caller)
        if job.spec.HasField("search"):
            job.trials.extend(self.trials.list(job_id))
            job.best_trial = self.trials.best(job_id)
        return job

    def list(self, state: int, page_size: int, page_token: str, caller: Principal,
             labels: Sequence[str] = ()) -> tuple[list[job_pb2.Job], str]:
        """A page of jobs, newest first: all of them for an admin, a user's own otherwise;
        with `labels` ("key=value" each, `jobs.labels`), only those whose labels hold all."""
        if page_size < 0 or page_size > MAX_PAGE:
            raise InvalidArgument(f"must be in [0, {MAX_PAGE}]", field="page_size")
        try:
            st = JobState(state) if state else None
        except ValueError:
            raise InvalidArgument(f"unknown state {state}", field="state") from None
        if page_token and not page_token.startswith("j-"):
            raise InvalidArgument("not a token this server issued", field="page_token")
        pairs = parse_selector(labels)
        owner = None if caller.is_admin else caller.user
        return self.store.list(st, page_size or 50, page_token, owner=owner,
                               where=(lambda job: matches(job, pairs)) if pairs else None)

    def cancel(self, job_id: str, caller: Principal) -> job_pb2.Job:
        self.get(job_id, caller)
        return self.store.request_cancel(job_id)

    def delete(self, job_id: str, caller: Principal) -> job_pb2.Job:
        """Remove a finished job: its record, events, worker logs, trials (`store.jobs`), then
        its files. Refused while it is not finished (cancel it first) or while the model
        version it registered is there (delete that first). Returns the job as it was."""
        job = self.get(job_id, caller)
        if not JobState(job.state).is_terminal:
            raise FailedPrecondition(f"job {job_id} is {JobState(job.state).name}; cancel it "
                                     "first (a job is deleted once it has finished)")
        version = self._registered(job)
        if version:
            ref = f"{job.spec.name}:{version}"
            raise FailedPrecondition(f"job {job_id} registered model version {ref}, which is "
                                     f"still there; delete it first (trainserve model delete "
                                     f"{ref})")
        self.store.delete(job_id)
        if self.storage_dir:  # the records are gone first: nothing names a half-removed folder
            shutil.rmtree(JobPaths.of(self.storage_dir, job_id).root, ignore_errors=True)
        return job

    def _registered(self, job: job_pb2.Job) -> int:
        """The version of `job`'s model still registered (0: none), also one registered by a
        run that did not live to record it on the job."""
        models = ModelStore(self.r)
        for version in {job.model_version, models.version_of_job(job.id)} - {0}:
            if models.exists(job.model_name or job.spec.name, version):
                return version
        return 0

    def curves(self, job_id: str, caller: Principal) -> job_pb2.JobCurves:
        """Every metric the job reported, epoch by epoch (`jobs.curves`): its epoch events, a
        search's trials' curves."""
        job = self.owned(job_id, caller)
        if job.spec.HasField("search"):  # its epochs are its trials' (`runtime.search`)
            return job_curves(job, [], self.trials.list(job_id), self.trials.best(job_id))
        return job_curves(job, self.store.events.history(job_id))

    def compare(self, job_ids: Sequence[str], caller: Principal) -> job_pb2.CompareJobsResponse:
        """2 to 20 jobs (or trials: "SEARCH_ID/TRIAL_ID") side by side (`jobs.compare`), each
        checked as GetJob checks it; one search's id alone: its trials side by side."""
        if len(job_ids) == 1 and job_ids[0]:
            return self._compare_trials(job_ids[0], caller)
        refs = check_ids(job_ids)
        return comparison_of([self._row(ref, f"job_ids[{i}]", caller)
                              for i, ref in enumerate(refs)])

    def _compare_trials(self, ref: str, caller: Principal) -> job_pb2.CompareJobsResponse:
        """The trials of the search `ref` (the first `MAX_TRIALS`, in trial order)."""
        job_id, trial_id = split_trial_ref(ref, "job_ids[0]")
        job = self.owned(job_id, caller)
        if trial_id or not job.spec.HasField("search"):
            raise InvalidArgument(f"give {MIN_JOBS} to {MAX_JOBS} job ids, or one search's "
                                  f"id to compare its trials ({ref} is not a search)",
                                  field="job_ids")
        trials = self.trials.list(job_id)[:MAX_TRIALS]
        if not trials:
            raise FailedPrecondition(f"search {job_id} has no trials yet")
        return comparison_of([(compared_trial(job, t), trial_spec(job, t)) for t in trials])

    def _row(self, ref: str, field: str, caller: Principal
             ) -> tuple[job_pb2.ComparedJob, spec_pb2.JobSpec]:
        """One row of a comparison and the spec it ran: a job's, or one trial's of a search."""
        job_id, trial_id = split_trial_ref(ref, field)
        job = self.owned(job_id, caller)
        if not trial_id:
            return compared_job(job, self._epochs(job)), job.spec
        trial = self.trials.get(job_id, trial_id) if job.spec.HasField("search") else None
        if trial is None:
            raise NotFound(f"job {job_id} has no trial {trial_id!r}")
        return compared_trial(job, trial), trial_spec(job, trial)

    def _epochs(self, job: job_pb2.Job) -> list:
        """The job's per-epoch reports: its epoch events; a search's best trial's curve."""
        if not job.spec.HasField("search"):
            return epoch_points(self.store.events.history(job.id))
        best = self.trials.best(job.id)
        trial = self.trials.get(job.id, best) if best else None
        return trial_points(trial) if trial is not None else []

    def is_terminal(self, job_id: str) -> bool:
        return JobState(self.store.get(job_id).state).is_terminal

    def logs(self, job_id: str, after_id: str, follow: bool, caller: Principal
             ) -> Iterator[job_pb2.JobLogLine]:
        """The job's worker log lines after `after_id`; with `follow`, live ones until the job
        is terminal. Checks the request now (NOT_FOUND, INVALID_ARGUMENT), reads lazily."""
        self.get(job_id, caller)
        if after_id and not STREAM_ID.fullmatch(after_id):
            raise InvalidArgument("not a log line id this server issued", field="after_id")
        return self.worker_logs.follow(job_id, after_id, follow,
                                       is_done=lambda: self.is_terminal(job_id))


def check_spec_size(spec: spec_pb2.JobSpec, max_bytes: int) -> None:
    """Refuse a spec carrying fields this server does not know (INVALID_ARGUMENT naming where:
    they would be stored with the job, unread) or larger than `max_bytes` serialized
    (RESOURCE_EXHAUSTED; 0: no limit)."""
    _refuse_unknown(spec, "spec")
    size = spec.ByteSize()
    if max_bytes and size > max_bytes:
        raise ResourceExhausted(f"spec: {size} bytes serialized, more than the limit of "
                                f"{max_bytes} bytes (max_spec_bytes)")


def _refuse_unknown(msg: Message, path: str) -> None:
    unknown = unknown_fields.UnknownFieldSet(msg)
    if len(unknown):
        raise InvalidArgument(f"unknown field number {unknown[0].field_number}", field=path)
    for fd, value in msg.ListFields():
        if fd.message_type is None:
            continue
        if fd.message_type.GetOptions().map_entry:
            if fd.message_type.fields_by_name["value"].message_type is not None:
                for key, item in value.items():
                    _refuse_unknown(item, f"{path}.{fd.name}[{key!r}]")
        elif fd.is_repeated:
            for i, item in enumerate(value):
                _refuse_unknown(item, f"{path}.{fd.name}[{i}]")
        else:
            _refuse_unknown(value, f"{path}.{fd.name}")


def _check_scheduling_fields(spec: spec_pb2.JobSpec, by: Principal) -> None:
    low, high = PRIORITY_RANGE
    if not low <= spec.priority <= high:
        raise InvalidArgument(f"must be in [{low}, {high}]", field="spec.priority")
    if spec.priority > DEFAULT_PRIORITY and not by.is_admin:
        raise PermissionDenied(f"spec.priority: only an admin may raise a job's priority above "
                               f"{DEFAULT_PRIORITY} (lowering it is fine)")
    low, high = MAX_FAILURES_RANGE
    sc = spec.scaling
    if sc.HasField("max_failures") and not low <= sc.max_failures <= high:
        raise InvalidArgument(f"must be in [{low}, {high}]", field="spec.scaling.max_failures")


# -- short job ids ------------------------------------------------------------------------------

# How many of the matching ids the refusal of an ambiguous prefix names.
PREFIX_CANDIDATES = 5
# A whole job id as the submit script makes it: `j-`, 11 hex digits of ms, 8 of a counter.
FULL_JOB_ID = re.compile(r"j-[0-9a-f]{19}")


def resolve_job_id(core: JobsCore, job_id: str, caller: Principal) -> str:
    """The id of the job `job_id` names: itself when a job has that id, else the one job
    `caller` can see (a user: their own; an admin: any) whose id starts with it, as Docker
    takes short ids. NOT_FOUND when none does; INVALID_ARGUMENT naming the candidates when
    several do. Another user's jobs are never candidates, so a prefix reveals nothing."""
    from trainserve.store import keys
    if not job_id or FULL_JOB_ID.fullmatch(job_id) or core.store.exists(job_id):
        return job_id  # the full id: visibility is checked where the job is read
    index = keys.JOBS if caller.is_admin else keys.jobs_of(caller.user)
    low = job_id.encode()
    found = [m.decode() for m in core.r.zrangebylex(index, b"[" + low, b"[" + low + b"\xff",
                                                    start=0, num=PREFIX_CANDIDATES + 1)]
    if not found:
        raise NotFound(f"job {job_id!r} not found")
    if len(found) > 1:
        more = " and more" if len(found) > PREFIX_CANDIDATES else ""
        raise InvalidArgument(f"{job_id!r} is the start of several jobs' ids: "
                              f"{', '.join(found[:PREFIX_CANDIDATES])}{more}; give more of "
                              "the id", field="job_id")
    return found[0]


def resolve_job_refs(core: JobsCore, refs: Sequence[str], caller: Principal) -> list[str]:
    """`resolve_job_id` of the job part of each "JOB_ID" or "SEARCH_ID/TRIAL_ID" of a
    comparison; more refs than a comparison takes are left as given, for its refusal."""
    from trainserve.jobs.compare import MAX_JOBS
    if len(refs) > MAX_JOBS:
        return list(refs)
    resolved = []
    for ref in refs:
        job_id, sep, trial = ref.partition("/")
        resolved.append(resolve_job_id(core, job_id, caller) + sep + trial)
    return resolved
