"""Job records, their indexes and the queue entry, kept consistent by Lua scripts.

A job is a Redis hash `ts:job:<id>` of plain fields (so progress updates and state changes
touch disjoint fields and never overwrite each other). `ts:jobs` and `ts:jobs:<STATE>` are
sorted sets with score 0 ordered by the id, which starts with the creation time in
milliseconds, so the indexes list newest first and page by id.

What a user can make the store hold is bounded here, atomically: a request id is its owner's
(`keys.request`) and expires (`REQUEST_ID_TTL_S`); a user's queued jobs are counted in
`ts:queued-of:<owner>` by the same scripts that queue and start them, so concurrent
submissions cannot pass the limit; a job's event stream is capped (`events.MAXLEN`) and, once
the job is finished, its event and worker-log streams expire (`RETENTION_S`). The job hash
stays: ListJobs and GetJob show finished jobs.
"""
from __future__ import annotations

import json
import time
from typing import Callable

import redis

from trainserve.core.errors import FailedPrecondition, NotFound, ResourceExhausted
from trainserve.core.scheduling import AGING_S, need_of
from trainserve.core.state import JobState, sources_of
from trainserve.core.pb import job_pb2, spec_pb2
from trainserve.store.events import MAXLEN as EVENTS_MAXLEN
from trainserve.store.events import EventLog, state_event
from trainserve.store import keys

# A request id stands for its job this long (a client's retries come within seconds).
REQUEST_ID_TTL_S = 24 * 3600
# A finished job's event and worker-log streams are kept this long (0: forever).
RETENTION_S = 7 * 24 * 3600
# The job hash field holding the newest fencing token of the job's lease (store.fencing).
FENCE_FIELD = "fence"

# KEYS: request-id key, the owner's queued set. ARGV: priority, aging (ms per priority level),
# event pb, request-id TTL in seconds (0: none), the owner's queued-jobs limit (0: none), events
# MAXLEN, then field/value pairs. Returns {id, 1} when created, {id, 0} for a known request id,
# {'', -1, queued} when the owner already has `limit` queued jobs: counted and added in one step,
# so concurrent submissions cannot overshoot. The id is `j-` + the server's time in ms + a
# sequence number, both taken here, so ids (and FIFO order within a priority) follow the order
# submissions were accepted.
_SUBMIT = keys.lua("""
local existing = redis.call('GET', KEYS[1])
if existing then return {existing, 0} end
local limit = tonumber(ARGV[5])
if limit > 0 then
  local queued = redis.call('ZCARD', KEYS[2])
  if queued >= limit then return {'', -1, queued} end
end
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seq = redis.call('INCR', '$JOB_SEQ') % 4294967296
local id = 'j-' .. string.format('%011x', ms) .. string.format('%08x', seq)
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[1], id, 'EX', tonumber(ARGV[4]))
else
  redis.call('SET', KEYS[1], id)
end
local job = '$JOB' .. id
for i = 7, #ARGV, 2 do redis.call('HSET', job, ARGV[i], ARGV[i + 1]) end
redis.call('ZADD', '$JOBS', 0, id)
redis.call('ZADD', '$JOBS_IN' .. redis.call('HGET', job, 'state'), 0, id)
redis.call('ZADD', '$JOBS_OF' .. redis.call('HGET', job, 'owner'), 0, id)
redis.call('ZADD', KEYS[2], 0, id)
redis.call('XADD', '$EVENTS' .. id, 'MAXLEN', '~', tonumber(ARGV[6]), '*', 'pb', ARGV[3])
redis.call('ZADD', '$PENDING', ms - tonumber(ARGV[1]) * tonumber(ARGV[2]), id)
return {id, 1}
""")

# KEYS: job hash, events stream, lease key (or ''), worker log stream, cancel flag. ARGV: id,
# target state, allowed sources (comma list), event pb, lease owner, lease seconds, the queued-set
# prefix, retention seconds (> 0 only for a terminal target), events MAXLEN, fencing token (or
# ''), then field/value pairs. Returns {1, old} on success, {0, old} if refused, {-1} if the job
# does not exist, {-2, old} if the lease is held by someone else, {-3, old} if the token is
# older than the job's. Leaving QUEUED removes the job from the pending
# set and from its owner's queued set; with a lease key, the lease is taken in the same step (a
# job never runs without one). Reaching a terminal state starts the retention clock of the
# job's streams (the job hash itself stays: ListJobs shows it).
_TRANSITION = keys.lua("""
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return {-1, ''} end
-- A fenced transition (ARGV[10] a token, see store.fencing) from a superseded lease holder.
if ARGV[10] ~= '' then
  if tonumber(redis.call('HGET', KEYS[1], '$FENCE_FIELD') or '0') > tonumber(ARGV[10]) then
    return {-3, cur}
  end
end
local ok = false
for s in string.gmatch(ARGV[3], '[^,]+') do if s == cur then ok = true end end
if not ok then return {0, cur} end
if KEYS[3] ~= '' then
  if not redis.call('SET', KEYS[3], ARGV[5], 'NX', 'EX', tonumber(ARGV[6])) then
    return {-2, cur}
  end
end
for i = 11, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'state', ARGV[2])
redis.call('ZREM', '$JOBS_IN' .. cur, ARGV[1])
redis.call('ZADD', '$JOBS_IN' .. ARGV[2], 0, ARGV[1])
if redis.call('ZREM', '$PENDING', ARGV[1]) == 1 then
  redis.call('HDEL', KEYS[1], 'queue_reason')
end
redis.call('ZREM', ARGV[7] .. (redis.call('HGET', KEYS[1], 'owner') or ''), ARGV[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', tonumber(ARGV[9]), '*', 'pb', ARGV[4])
local keep = tonumber(ARGV[8])
if keep > 0 then
  for _, key in ipairs({KEYS[2], KEYS[4], KEYS[5]}) do redis.call('EXPIRE', key, keep) end
end
return {1, cur}
""", FENCE_FIELD=FENCE_FIELD)


# KEYS: job hash, its events, worker logs, cancel flag, lease, trials, best trial, model-by-job.
# ARGV: id, the terminal states (comma list). Removes a finished job and everything kept under
# its id, and its entries in every index, in one step: {1} when done, {0, state} when the job
# is not finished, {-1} when there is none. Its request id goes too (when it still names this
# job), so a retried submission makes a new job rather than naming a deleted one.
_DELETE = keys.lua("""
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return {-1} end
local done = false
for s in string.gmatch(ARGV[2], '[^,]+') do if s == cur then done = true end end
if not done then return {0, cur} end
local owner = redis.call('HGET', KEYS[1], 'owner') or ''
local rid = redis.call('HGET', KEYS[1], 'request_id') or ''
if rid ~= '' then
  local rkey = '$REQUEST' .. owner .. ':' .. rid
  if redis.call('GET', rkey) == ARGV[1] then redis.call('DEL', rkey) end
end
for _, key in ipairs(KEYS) do redis.call('DEL', key) end
redis.call('ZREM', '$JOBS', ARGV[1])
redis.call('ZREM', '$JOBS_IN' .. cur, ARGV[1])
redis.call('ZREM', '$JOBS_OF' .. owner, ARGV[1])
redis.call('ZREM', '$QUEUED_OF' .. owner, ARGV[1])
redis.call('ZREM', '$PENDING', ARGV[1])
return {1}
""")


class Superseded(FailedPrecondition):
    """A fenced write refused: another dispatcher has taken the job's lease since."""


class JobStore:
    """Create, read, list and move jobs through the state machine."""

    def __init__(self, client: redis.Redis, aging_s: float = AGING_S,
                 request_id_ttl_s: int = REQUEST_ID_TTL_S, retention_s: int = RETENTION_S):
        self.r = client
        self.aging_s = aging_s
        self.request_id_ttl_s = request_id_ttl_s
        self.retention_s = retention_s
        self.events = EventLog(client)
        self._submit = client.register_script(_SUBMIT)
        self._transition = client.register_script(_TRANSITION)
        self._delete = client.register_script(_DELETE)

    def submit(self, spec: spec_pb2.JobSpec, request_id: str, owner: str = "",
               max_queued: int = 0) -> tuple[job_pb2.Job, bool]:
        """Record and enqueue a job atomically (priority: `spec.priority`; `owner`: the user
        its quota counts against). Returns (job, created); the owner's known request id
        returns the job it created before and `created=False`. With `max_queued`, refuses
        (`ResourceExhausted`) a new job of an owner who already has that many queued."""
        job_id, created, fields = self._submit_fields(spec, request_id, owner, max_queued)
        if not created:
            return self.get(job_id), False
        # What the script just wrote, as of its acceptance: no round trip to read it back.
        return _to_job(job_id, {k.encode(): _bytes(v) for k, v in fields.items()}), True

    def submit_raw(self, spec: spec_pb2.JobSpec, request_id: str, owner: str = "",
                   max_queued: int = 0) -> tuple[str, bool]:
        """`submit` without the job: (job id, created)."""
        return self._submit_fields(spec, request_id, owner, max_queued)[:2]

    def _submit_fields(self, spec: spec_pb2.JobSpec, request_id: str, owner: str,
                       max_queued: int) -> tuple[str, bool, dict]:
        """(job id, created, the fields of the job's hash it wrote when created)."""
        now = time.time()
        need = need_of(spec)
        fields = {"spec": spec.SerializeToString(), "request_id": request_id,
                  "created_at": repr(now), "state": str(int(JobState.QUEUED)),
                  "owner": owner, "total_epochs": str(spec.training.epochs), "attempts": "0",
                  "priority": str(spec.priority), "cpus": repr(need.cpus),
                  "gpus": repr(need.gpus), "message": "queued"}
        # The event's job_id is filled in when read back, so it can stay empty here.
        event = state_event("", JobState.QUEUED, "queued", now)
        args = [str(spec.priority), repr(self.aging_s * 1000.0), event.SerializeToString(),
                str(int(self.request_id_ttl_s)), str(int(max_queued)), str(EVENTS_MAXLEN)]
        for k, v in fields.items():
            args += [k, v]
        got = self._submit(keys=[keys.request(owner, request_id), keys.queued_of(owner)], args=args)
        if got[1] == -1:
            who = f"user {owner!r}" if owner else "the anonymous user"
            raise ResourceExhausted(f"{who} has {got[2]} queued jobs, the limit "
                                    f"({max_queued}); wait for some to start or cancel some")
        return got[0].decode(), bool(got[1]), fields

    def get(self, job_id: str) -> job_pb2.Job:
        raw = self.r.hgetall(keys.job(job_id)) if job_id else {}
        if not raw:
            raise NotFound(f"job {job_id!r} not found")
        return _to_job(job_id, raw)

    def exists(self, job_id: str) -> bool:
        return bool(self.r.exists(keys.job(job_id)))

    def list(self, state: JobState | None = None, page_size: int = 50,
             page_token: str = "", owner: str | None = None,
             where: Callable[[job_pb2.Job], bool] | None = None
             ) -> tuple[list[job_pb2.Job], str]:
        """Newest first; `page_token` is the last id of the previous page. With `owner`, only
        that user's jobs (read from the user's own index, filtered by state); with `where`,
        only the jobs it keeps (a page holds `page_size` of those)."""
        where = where or (lambda j: True)
        if owner is None:
            index = keys.JOBS if state is None else keys.jobs_in(state)
            return self._page(index, page_size, page_token, where)
        return self._page(keys.jobs_of(owner), page_size, page_token,
                          lambda j: (state is None or j.state == int(state)) and where(j))

    def _page(self, index: str, page_size: int, page_token: str, keep
              ) -> tuple[list[job_pb2.Job], str]:
        jobs: list[job_pb2.Job] = []
        upper = f"({page_token}" if page_token else "+"
        while True:
            ids = [i.decode() for i in self.r.zrevrangebylex(index, upper, "-", start=0,
                                                             num=page_size + 1)]
            pipe = self.r.pipeline(transaction=False)
            for job_id in ids:
                pipe.hgetall(keys.job(job_id))
            for job_id, raw in zip(ids, pipe.execute()):
                if raw and keep(job := _to_job(job_id, raw)):
                    jobs.append(job)
                    if len(jobs) == page_size + 1:
                        return jobs[:page_size], jobs[page_size - 1].id
            if len(ids) <= page_size:
                return jobs, ""
            upper = f"({ids[-1]}"

    def delete(self, job_id: str) -> None:
        """Remove a finished job's record, its indexes' entries and everything Redis keeps
        under its id (events, worker logs, trials, flags); FailedPrecondition while it is not
        finished, NotFound when there is no such job."""
        touched = [keys.job(job_id), keys.events(job_id), keys.logs(job_id),
                   keys.cancel(job_id), keys.lease(job_id), keys.trials(job_id),
                   keys.best_trial(job_id), keys.model_by_job(job_id)]
        terminal = ",".join(str(int(s)) for s in JobState if s.is_terminal)
        got = self._delete(keys=touched, args=[job_id, terminal])
        if got[0] == -1:
            raise NotFound(f"job {job_id!r} not found")
        if got[0] == 0:
            raise FailedPrecondition(f"job {job_id} is {JobState(int(got[1])).name}; cancel "
                                     "it first (a job is deleted once it has finished)")

    def unfinished(self) -> list[job_pb2.Job]:
        """Every QUEUED or RUNNING job, of every user (what a deletion must not pull files
        from under)."""
        ids = [i.decode() for state in (JobState.QUEUED, JobState.RUNNING)
               for i in self.r.zrange(keys.jobs_in(state), 0, -1)]
        pipe = self.r.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(keys.job(job_id))
        return [_to_job(job_id, raw) for job_id, raw in zip(ids, pipe.execute()) if raw]

    def transition(self, job_id: str, target: JobState, message: str = "",
                   lease_owner: str = "", lease_s: int = 0, fence: int | None = None,
                   **fields) -> job_pb2.Job:
        """Move a job to `target` if the state machine allows it from its current state;
        otherwise `FailedPrecondition` naming both states. With `lease_owner`, also take the
        job's lease for `lease_s` seconds in the same step (`FailedPrecondition` if another
        holds it). With `fence` (a fencing token, `store.fencing`), refused (`Superseded`)
        when a newer token exists: a dispatcher that lost the job's lease records nothing."""
        now = time.time()
        if target == JobState.RUNNING:
            fields.setdefault("started_at", repr(now))
        if target.is_terminal:
            fields.setdefault("finished_at", repr(now))
        fields["message"] = message
        event = state_event(job_id, target, message, now)
        allowed = ",".join(str(int(s)) for s in sources_of(target))
        keep = self.retention_s if target.is_terminal else 0
        args = [job_id, str(int(target)), allowed, event.SerializeToString(), lease_owner,
                str(int(lease_s)), keys.QUEUED_OF, str(int(keep)), str(EVENTS_MAXLEN),
                "" if fence is None else str(int(fence))]
        for k, v in fields.items():
            args += [k, _encode(v)]
        touched = [keys.job(job_id), keys.events(job_id), keys.lease(job_id) if lease_owner else "",
                   keys.logs(job_id), keys.cancel(job_id)]
        ok, cur = self._transition(keys=touched, args=args)
        if ok == -1:
            raise NotFound(f"job {job_id!r} not found")
        if ok == -3:
            raise Superseded(f"job {job_id} is run under a newer lease than token {fence}")
        if ok == -2:
            raise FailedPrecondition(f"job {job_id} is leased by another dispatcher")
        if ok == 0:
            cur_name = JobState(int(cur)).name
            raise FailedPrecondition(f"job {job_id} is {cur_name}; cannot become {target.name}")
        return self.get(job_id)

    def update(self, job_id: str, **fields) -> None:
        """Set progress fields (epoch, metrics, attempts, ...) without touching the state."""
        if fields:
            self.r.hset(keys.job(job_id), mapping={k: _encode(v) for k, v in fields.items()})

    def request_cancel(self, job_id: str) -> job_pb2.Job:
        """Cancel a queued job at once; flag a running one so its runner stops it."""
        job = self.get(job_id)
        state = JobState(job.state)
        if state == JobState.QUEUED:
            try:
                return self.transition(job_id, JobState.CANCELLED, "cancelled before start")
            except FailedPrecondition:
                job = self.get(job_id)  # it started meanwhile: fall through to the flag
                state = JobState(job.state)
        if state.is_terminal:
            raise FailedPrecondition(f"job {job_id} is already {state.name}")
        self.r.set(keys.cancel(job_id), b"1")
        self.update(job_id, cancel_requested=True)
        self.events.log(job_id, "cancel requested", level="warning")
        return self.get(job_id)

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.r.exists(keys.cancel(job_id)))


def _encode(value) -> str | bytes:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, bytes):
        return value
    return str(value)


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _ts(raw: dict, key: bytes, msg) -> None:
    if raw.get(key):
        msg.FromNanoseconds(int(float(raw[key]) * 1e9))


def _to_job(job_id: str, raw: dict) -> job_pb2.Job:
    get = lambda k, d="": raw.get(k.encode(), b"").decode() or d  # noqa: E731
    job = job_pb2.Job(
        id=job_id, request_id=get("request_id"), state=int(get("state", "0")),
        message=get("message"), epoch=int(get("epoch", "0")),
        total_epochs=int(get("total_epochs", "0")), model_name=get("model_name"),
        model_version=int(get("model_version", "0")), cancel_requested=get("cancel_requested") == "1",
        attempts=int(get("attempts", "0")), deployment=get("deployment"), user=get("owner"),
        priority=int(get("priority", "0")), queue_reason=get("queue_reason"))
    job.spec.ParseFromString(raw.get(b"spec", b""))
    job.metrics.update(json.loads(get("metrics", "{}")))
    job.tracking.update(json.loads(get("tracking", "{}")))
    _ts(raw, b"created_at", job.created_at)
    _ts(raw, b"started_at", job.started_at)
    _ts(raw, b"finished_at", job.finished_at)
    return job
