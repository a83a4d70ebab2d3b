"""The Redis keys: each spelled once, in store/keys.py, and pinned here.

Existing data lives under these spellings, so changing one is a migration: this table makes
it a visible decision. A key added to store/keys.py needs its row here."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from trainserve.core.state import JobState
from trainserve.store import keys

SERVICES = Path(__file__).resolve().parents[2] / "services"

# name in store/keys.py -> (its value, or a builder called with example arguments; the key).
PINNED = {
    "PREFIX": (keys.PREFIX, "ts:"),
    "JOB": (keys.JOB, "ts:job:"),
    "job": (keys.job("j-1"), "ts:job:j-1"),
    "JOBS": (keys.JOBS, "ts:jobs"),
    "JOBS_IN": (keys.JOBS_IN, "ts:jobs:"),
    "jobs_in": (keys.jobs_in(JobState.RUNNING), "ts:jobs:2"),
    "JOBS_OF": (keys.JOBS_OF, "ts:jobs-of:"),
    "jobs_of": (keys.jobs_of("alice"), "ts:jobs-of:alice"),
    "JOB_SEQ": (keys.JOB_SEQ, "ts:job-seq"),
    "REQUEST": (keys.REQUEST, "ts:reqid:"),
    "request": (keys.request("alice", "r-1"), "ts:reqid:alice:r-1"),
    "EVENTS": (keys.EVENTS, "ts:events:"),
    "events": (keys.events("j-1"), "ts:events:j-1"),
    "LOGS": (keys.LOGS, "ts:logs:"),
    "logs": (keys.logs("j-1"), "ts:logs:j-1"),
    "CANCEL": (keys.CANCEL, "ts:cancel:"),
    "cancel": (keys.cancel("j-1"), "ts:cancel:j-1"),
    "TRIALS": (keys.TRIALS, "ts:trials:"),
    "trials": (keys.trials("j-1"), "ts:trials:j-1"),
    "BEST_TRIAL": (keys.BEST_TRIAL, "ts:best_trial:"),
    "best_trial": (keys.best_trial("j-1"), "ts:best_trial:j-1"),
    "PENDING": (keys.PENDING, "ts:pending"),
    "QUEUE": (keys.QUEUE, "ts:queue"),
    "QUEUED_OF": (keys.QUEUED_OF, "ts:queued-of:"),
    "queued_of": (keys.queued_of("alice"), "ts:queued-of:alice"),
    "LEASE": (keys.LEASE, "ts:lease:"),
    "lease": (keys.lease("j-1"), "ts:lease:j-1"),
    "SCHEDULER": (keys.SCHEDULER, "ts:scheduler"),
    "CLUSTER": (keys.CLUSTER, "ts:cluster"),
    "QUOTA": (keys.QUOTA, "ts:quota:"),
    "quota": (keys.quota("alice"), "ts:quota:alice"),
    "QUOTA_DEFAULT": (keys.QUOTA_DEFAULT, "ts:quota-default"),
    "DISPATCHER_READY": (keys.DISPATCHER_READY, "ts:dispatcher:ready"),
    "DISPATCHER_WARM": (keys.DISPATCHER_WARM, "ts:dispatcher:warm"),
    "MODEL": (keys.MODEL, "model"),
    "DEPLOYMENT": (keys.DEPLOYMENT, "deployment"),
    "DATASET": (keys.DATASET, "dataset"),
    "NAME_KINDS": (keys.NAME_KINDS, ("model", "deployment", "dataset")),
    "MODELS": (keys.MODELS, "ts:models"),
    "DEPLOY_QUEUE": (keys.DEPLOY_QUEUE, "ts:deploy-queue"),
    "record": ((keys.record("deployment", "digits"), keys.record("dataset", "scans")),
               ("ts:deployment:digits", "ts:dataset:scans")),
    "records": ((keys.records("deployment"), keys.records("dataset")),
                ("ts:deployments", "ts:datasets")),
    "model": (keys.model("digits"), "ts:model:digits"),
    "model_seq": (keys.model_seq("digits"), "ts:model-seq:digits"),
    "model_by_job": (keys.model_by_job("j-1"), "ts:model-by-job:j-1"),
    "model_aliases": (keys.model_aliases("digits"), "ts:model-alias:digits"),
    "model_tags": (keys.model_tags("digits", 3), "ts:model-tags:digits:3"),
    "claim": ((keys.claim("model", "m"), keys.claim("deployment", "d"),
               keys.claim("dataset", "s")),
              ("ts:name:model:m", "ts:name:deployment:d", "ts:name:dataset:s")),
    "TOKENS": (keys.TOKENS, "ts:tokens"),
    "TOKENS_REVOKED": (keys.TOKENS_REVOKED, "ts:tokens:revoked"),
}

NOT_KEYS = {"lua"}  # helpers of store/keys.py that name no key


@pytest.mark.parametrize("name", sorted(PINNED))
def test_each_key_keeps_its_spelling(name):
    got, expected = PINNED[name]
    assert got == expected


def test_every_key_is_pinned():
    public = {n for n, v in vars(keys).items()
              if not n.startswith("_") and getattr(v, "__module__", keys.__name__) == keys.__name__
              and (inspect.isfunction(v) or n.isupper())}
    assert public - NOT_KEYS == set(PINNED)


def test_a_name_claim_of_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown kind"):
        keys.claim("job", "j-1")


def test_lua_scripts_take_the_prefixes_from_here():
    assert keys.lua("redis.call('GET', '$JOB' .. id, '$F')", F="fence") == \
        "redis.call('GET', 'ts:job:' .. id, 'fence')"
    with pytest.raises(KeyError):
        keys.lua("'$NOT_A_KEY'")


# A key literal: a string starting with the prefix (Lua inside Python strings included), or
# the prefix used to build one. Docstrings and comments may name keys in backticks.
LITERAL = re.compile(r"""["']ts:|\bPREFIX\b""")


def test_no_key_is_spelled_outside_store_keys():
    found = []
    for path in sorted((SERVICES / "trainserve").rglob("*.py")):
        rel = path.relative_to(SERVICES)
        if rel.parts[1] == "_gen" or rel.as_posix() == "trainserve/store/keys.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if LITERAL.search(line):
                found.append(f"{rel}:{n}: {line.strip()}")
    assert not found, "Redis keys are spelled in store/keys.py only:\n" + "\n".join(found)


def test_a_user_called_default_cannot_overwrite_everyone_s_quota():
    assert keys.quota("default") != keys.QUOTA_DEFAULT
    assert not keys.QUOTA_DEFAULT.startswith(keys.QUOTA)
