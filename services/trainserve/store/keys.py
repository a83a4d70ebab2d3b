"""Every Redis key of trainserve, spelled once.

Keys start with `PREFIX`. A module that reads or writes a key imports its name or its
builder from here; nothing else spells a key, Lua scripts included (`lua` writes these
names into a script's text). A family of keys, one per job or per name, has an upper-case
prefix (what a Lua script appends an id to) and a lower-case builder.

The spellings are what existing data is stored under: renaming one is a migration
(tests/unit/test_store_keys.py pins each of them).
"""
from __future__ import annotations

import string

PREFIX = "ts:"

# -- jobs -------------------------------------------------------------------------------------
# `JOB + id`: the job's hash of plain fields (state, spec, owner, progress, the fencing token).
JOB = PREFIX + "job:"
# Sorted sets of job ids (score 0, ordered by id, i.e. by submission): every job, and those
# in one state (`JOBS_IN + str(int(state))`).
JOBS = PREFIX + "jobs"
JOBS_IN = PREFIX + "jobs:"
# `JOBS_OF + owner`: one user's job ids, ordered the same way.
JOBS_OF = PREFIX + "jobs-of:"
# The counter whose next value ends a new job's id.
JOB_SEQ = PREFIX + "job-seq"
# `REQUEST + owner:request_id` -> the job that request id created (expires).
REQUEST = PREFIX + "reqid:"
# `EVENTS + id`: the job's event stream; `LOGS + id`: its workers' log stream.
EVENTS = PREFIX + "events:"
LOGS = PREFIX + "logs:"
# `CANCEL + id`: set when cancellation of a running job is requested.
CANCEL = PREFIX + "cancel:"
# `TRIALS + id`: a search's trials (hash trial id -> Trial); `BEST_TRIAL + id`: the best's id.
TRIALS = PREFIX + "trials:"
BEST_TRIAL = PREFIX + "best_trial:"


def job(job_id: str) -> str:
    return f"{JOB}{job_id}"


def jobs_in(state: int) -> str:
    """The index of the jobs in `state` (a `JobState`), by its number."""
    return f"{JOBS_IN}{int(state)}"


def jobs_of(owner: str) -> str:
    return f"{JOBS_OF}{owner}"


def request(owner: str, request_id: str) -> str:
    """One user's request id (users never share one: `owner` has no ':')."""
    return f"{REQUEST}{owner}:{request_id}"


def events(job_id: str) -> str:
    return f"{EVENTS}{job_id}"


def logs(job_id: str) -> str:
    return f"{LOGS}{job_id}"


def cancel(job_id: str) -> str:
    return f"{CANCEL}{job_id}"


def trials(job_id: str) -> str:
    return f"{TRIALS}{job_id}"


def best_trial(job_id: str) -> str:
    return f"{BEST_TRIAL}{job_id}"


# -- the queue, leases, scheduling ------------------------------------------------------------
# Queued jobs waiting to start: a sorted set scored by `scheduling.queue_score`.
PENDING = PREFIX + "pending"
# The stream the queue used to be (read once by `store.queue.JobQueue.migrate_stream`).
QUEUE = PREFIX + "queue"
# `QUEUED_OF + owner`: the ids of a user's jobs still QUEUED (what the queued-jobs limit counts).
QUEUED_OF = PREFIX + "queued-of:"
# `LEASE + id`: the dispatcher that runs the job (a consumer name, with a TTL it renews).
LEASE = PREFIX + "lease:"
# The lock of the dispatcher scheduling now.
SCHEDULER = PREFIX + "scheduler"
# The resources the dispatcher last saw in the Ray cluster ({"CPU": ..., "GPU": ...} and
# `updated_at`), published for admission at submission.
CLUSTER = PREFIX + "cluster"
# `QUOTA + user`: an operator's per-user limits (fields jobs, cpus, gpus, queued,
# dataset_bytes); `QUOTA_DEFAULT`, what the dispatcher publishes for every user.
QUOTA = PREFIX + "quota:"
# The dispatcher's heartbeat: set with a short expiry and renewed while a dispatcher is up.
DISPATCHER_READY = PREFIX + "dispatcher:ready"
# The consumer name of the dispatcher whose pooled workers are warm (or whose warming gave
# up): the local stack counts as ready only then, so its first job starts as fast as later ones.
DISPATCHER_WARM = PREFIX + "dispatcher:warm"


def queued_of(owner: str) -> str:
    return f"{QUEUED_OF}{owner}"


def lease(job_id: str) -> str:
    return f"{LEASE}{job_id}"


def quota(user: str) -> str:
    return f"{QUOTA}{user}"


QUOTA_DEFAULT = PREFIX + "quota-default"  # outside QUOTA + user: a user may be called "default"

# -- models, named records, name claims -------------------------------------------------------
# The kinds of named things: each kind's names are claimed by their first owner, and
# deployments and datasets are records `record(kind, name)` indexed in `records(kind)`.
MODEL, DEPLOYMENT, DATASET = "model", "deployment", "dataset"
NAME_KINDS = (MODEL, DEPLOYMENT, DATASET)
# Model names with versions (a sorted set); the deployer's queue of deploy requests (a stream).
MODELS = PREFIX + "models"
DEPLOY_QUEUE = PREFIX + "deploy-queue"


def record(kind: str, name: str) -> str:
    """A named record (serialized message) of `kind`; for a model, its hash of versions."""
    return f"{PREFIX}{kind}:{name}"


def records(kind: str) -> str:
    """The set of the names of `kind`'s records."""
    return f"{PREFIX}{kind}s"


def model(name: str) -> str:
    """The hash version -> serialized ModelVersion of model `name`."""
    return record(MODEL, name)


def model_seq(name: str) -> str:
    """The counter of model `name`'s versions."""
    return f"{PREFIX}model-seq:{name}"


def model_by_job(job_id: str) -> str:
    """The version a job's model got (registration is exactly-once per job)."""
    return f"{PREFIX}model-by-job:{job_id}"


def model_aliases(name: str) -> str:
    """The hash alias -> version of model `name`."""
    return f"{PREFIX}model-alias:{name}"


def model_tags(name: str, version: int) -> str:
    """The hash key -> value of the tags of `name`:`version` (names never hold ':')."""
    return f"{PREFIX}model-tags:{name}:{int(version)}"


def claim(kind: str, name: str) -> str:
    """Who holds `name` of `kind` (one of `NAME_KINDS`)."""
    if kind not in NAME_KINDS:
        raise ValueError(f"unknown kind of name {kind!r}")
    return f"{PREFIX}name:{kind}:{name}"


# -- job API tokens ---------------------------------------------------------------------------
# Hash token digest -> who it stands for; the set of revoked digests.
TOKENS = PREFIX + "tokens"
TOKENS_REVOKED = PREFIX + "tokens:revoked"


# -- Lua --------------------------------------------------------------------------------------
def lua(script: str, **names: str) -> str:
    """`script` with each `$NAME` replaced by this module's constant NAME (or by `names`):
    a Lua script appends ids to the prefixes above instead of spelling them."""
    mapping = {k: v for k, v in globals().items() if k.isupper() and isinstance(v, str)}
    mapping.update(names)
    for value in mapping.values():
        if "'" in value or "\\" in value:
            raise ValueError(f"{value!r} cannot be written inside a Lua string")
    return string.Template(script).substitute(mapping)
