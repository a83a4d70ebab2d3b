"""Short job ids on a real job API (real gRPC, real Redis, authentication on): any unique
prefix of a job id names the job in every call that takes one, as Docker takes short ids; an
ambiguous prefix is refused naming the candidates; and a prefix is resolved only among the
jobs the caller may see, so another user's jobs neither make it ambiguous nor answer it."""
from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from tests.integration.helpers import example
from tests.integration.test_api_auth import Server, _cfg
from trainserve.client import Client
from trainserve.core import errors
from trainserve.core.pb import auth_pb2, job_pb2

pytestmark = pytest.mark.integration


@pytest.fixture
def api(redis_server, redis_client, tmp_path):
    """(address, {"admin"|"alice"|"bob": token}) of a fresh API with authentication; no
    dispatcher, so jobs stay QUEUED."""
    token_file = tmp_path / "admin-token"
    with Server(_cfg(redis_server, tmp_path, auth=True,
                     admin_token_file=str(token_file))) as server:
        tokens = {"admin": token_file.read_text().strip()}
        with Client(server.address, token=tokens["admin"]) as admin:
            for user in ("alice", "bob"):
                tokens[user] = admin.call_auth(
                    "CreateToken", auth_pb2.CreateTokenRequest(user=user)).token
        yield server.address, tokens


def common_prefix(*ids: str) -> str:
    return os.path.commonprefix(list(ids))


def unique_prefix(target: str, others: list[str]) -> str:
    """The shortest prefix of `target` that starts none of `others`."""
    return target[:len(max((common_prefix(target, o) for o in others), key=len)) + 1]


@pytest.fixture
def jobs(api):
    """Alice's jobs a and c, bob's b between them (ids follow submission order)."""
    address, tokens = api
    ids = {}
    for key, user in (("a", "alice"), ("b", "bob"), ("c", "alice")):
        with Client(address, token=tokens[user]) as ts:
            ids[key] = ts.submit(example("xor_mlp", name=f"{user}-{key}")).id
    return ids


def test_a_unique_prefix_names_the_job_in_every_call(api, jobs):
    address, tokens = api
    a, c = jobs["a"], jobs["c"]
    short = unique_prefix(a, [c])
    assert len(short) < len(a)
    with Client(address, token=tokens["alice"]) as alice:
        assert alice.get_job(short).id == a
        assert alice.curves_message(short).job_id == a
        assert list(alice.logs(short)) == []
        assert alice.list_artifacts(short) is not None
        compared = alice.compare([short, unique_prefix(c, [a])])
        assert [j.job_id for j in compared.jobs] == [a, c]
        assert alice.cancel(short).id == a
        events = list(alice.watch(short))  # cancelled: the history, then the stream ends
        assert events and all(e.job_id == a for e in events)
        assert alice.get_job(a).state == job_pb2.JOB_STATE_CANCELLED
        assert alice.get_job(c).state == job_pb2.JOB_STATE_QUEUED


def test_an_ambiguous_prefix_is_refused_naming_the_callers_candidates(api, jobs):
    address, tokens = api
    a, b, c = jobs["a"], jobs["b"], jobs["c"]
    shared = common_prefix(a, b, c)
    with Client(address, token=tokens["alice"]) as alice:
        with pytest.raises(errors.InvalidArgument) as refused:
            alice.get_job(shared)
    assert refused.value.field == "job_id"
    assert a in str(refused.value) and c in str(refused.value)
    assert b not in str(refused.value)  # bob's job is not alice's to know of
    with Client(address, token=tokens["admin"]) as admin:  # an admin sees every job
        with pytest.raises(errors.InvalidArgument, match=b):
            admin.get_job(shared)


def test_a_prefix_is_resolved_only_among_the_callers_jobs(api, jobs):
    address, tokens = api
    a, b, c = jobs["a"], jobs["b"], jobs["c"]
    with Client(address, token=tokens["bob"]) as bob:
        # Ambiguous for alice (a and c) and the admin, unique among bob's own jobs.
        assert bob.get_job(common_prefix(a, b, c)).id == b
        with pytest.raises(errors.NotFound):
            bob.get_job(unique_prefix(a, [b, c]))
        with pytest.raises(errors.NotFound):
            bob.cancel(unique_prefix(a, [b, c]))
        with pytest.raises(errors.NotFound):
            bob.get_job(a)  # the full id of another user's job: as if it did not exist
    with Client(address, token=tokens["alice"]) as alice:
        assert alice.get_job(a).state == job_pb2.JOB_STATE_QUEUED
        with pytest.raises(errors.NotFound):
            alice.get_job("j-0000")


def test_the_cli_takes_short_ids(api, jobs):
    address, tokens = api
    a, c = jobs["a"], jobs["c"]

    def cli(*args):
        return CliRunner().invoke(
            __import__("trainserve.cli.main", fromlist=["app"]).app,
            ["--api", address, "--token", tokens["alice"], *args],
            env={"TRAINSERVE_TOKEN": "", "COLUMNS": "100"})
    short = unique_prefix(a, [c])
    shown = cli("job", short)
    assert shown.exit_code == 0, shown.output
    assert a in shown.stdout
    cancelled = cli("cancel", short)
    assert cancelled.exit_code == 0 and f"job {a}: cancelled" in cancelled.stdout
    watched = cli("watch", short)
    assert watched.exit_code == 1 and "CANCELLED" in watched.stdout
    ambiguous = cli("job", common_prefix(a, c))
    assert ambiguous.exit_code == 2
    assert "several jobs" in ambiguous.stderr and a in ambiguous.stderr
