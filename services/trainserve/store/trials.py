"""The trials of a search (`ts:trials:<job id>`, a hash trial id -> `Trial`), and their events.

Written by the search's driver as Tune reports (`record`), read by GetJob (`list`). Each write
also appends a `TrialEvent` to the job's event stream, in one transaction, so WatchJob shows
trials start, report and end in the order the store saw them.
"""
from __future__ import annotations

import redis

from trainserve.core.pb import job_pb2
from trainserve.store import keys
from trainserve.store.events import MAXLEN

STARTED, REPORTED, ENDED = "started", "reported", "ended"


class TrialStore:
    def __init__(self, client: redis.Redis):
        self.r = client

    def record(self, job_id: str, trial: job_pb2.Trial, kind: str) -> None:
        """Store `trial` (with its curve) and append a `kind` event (without it)."""
        summary = job_pb2.Trial()
        summary.CopyFrom(trial)
        summary.ClearField("curve")
        event = job_pb2.JobEvent(job_id=job_id, trial=job_pb2.TrialEvent(kind=kind,
                                                                          trial=summary))
        event.time.GetCurrentTime()
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(keys.trials(job_id), trial.id, trial.SerializeToString())
        pipe.xadd(keys.events(job_id), {"pb": event.SerializeToString()}, maxlen=MAXLEN,
                  approximate=True)
        pipe.execute()

    def get(self, job_id: str, trial_id: str) -> job_pb2.Trial | None:
        raw = self.r.hget(keys.trials(job_id), trial_id)
        return job_pb2.Trial.FromString(raw) if raw else None

    def list(self, job_id: str) -> list[job_pb2.Trial]:
        """Every trial of the search, by id (Tune's ids sort in creation order)."""
        raw = self.r.hgetall(keys.trials(job_id))
        return [job_pb2.Trial.FromString(raw[k]) for k in sorted(raw)]

    def set_best(self, job_id: str, trial_id: str) -> None:
        self.r.set(keys.best_trial(job_id), trial_id)

    def best(self, job_id: str) -> str:
        raw = self.r.get(keys.best_trial(job_id))
        return raw.decode() if raw else ""
