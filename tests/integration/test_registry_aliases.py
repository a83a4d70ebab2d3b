"""Aliases and tags of model versions through the real job API (gRPC, Redis, the dispatcher,
Ray, Serve), from the SDK and the CLI: a user's two small XOR versions; `production` names
one, moves to the other, and Deploy, Rollout, GetModel and ExportModel resolve it when they
are called; tags are set and removed; another user can neither see, resolve nor change any of
it."""
from __future__ import annotations

import json

import grpc
import pytest
from typer.testing import CliRunner

from tests.integration.helpers import example, rpc_error, wait_job
from trainserve.core.pb import deployment_pb2, job_pb2, model_pb2

pytestmark = pytest.mark.integration

NOT_FOUND, INVALID = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def versions(people):
    """Alice's model `reg-<tag>` with versions 1 and 2 (two finished 3-epoch XOR jobs)."""
    alice, _, tag = people
    jobs = [alice.submit(example("xor_mlp", name=f"reg-{tag}", training={"epochs": 3}))
            for _ in range(2)]
    done = [wait_job(alice, job.id, timeout=240) for job in jobs]
    assert all(j.state == job_pb2.JOB_STATE_SUCCEEDED for j in done), [j.message for j in done]
    return f"reg-{tag}", done


@pytest.fixture
def cli(stack, monkeypatch):
    """Runs `trainserve ARGS...` as the user whose token it is given."""
    from trainserve.cli.main import app
    monkeypatch.setenv("TRAINSERVE_API", stack.config.api_address)
    monkeypatch.setenv("COLUMNS", "200")

    def run(token: str, *args: str):
        monkeypatch.setenv("TRAINSERVE_TOKEN", token)
        return CliRunner().invoke(app, list(args))
    return run


def sdk(stack, user):
    from trainserve.client import Client
    return Client(stack.config.api_address, token=user.token, retry_for=3.0)


def test_an_alias_resolves_where_a_version_is_named_when_it_is_used(stack, people, versions,
                                                                    cli):
    alice, _, tag = people
    name, _ = versions
    endpoint = f"reg-{tag}"
    with sdk(stack, alice) as ts:
        assert ts.set_model_alias(f"{name}:1", "production").aliases == ["production"]
        dep = ts.deploy(f"{name}@production", name=endpoint, timeout=180)
        assert (dep.model_version, dep.state) == (1, deployment_pb2.DEPLOYMENT_STATE_READY)
        moved = cli(alice.token, "model", "alias", f"{name}:2", "production")
        assert moved.exit_code == 0, moved.output
        assert ts.get_model(f"{name}@production").version == 2
        assert list(ts.get_model(name, 1).aliases) == []  # taken off version 1
        assert ts.get_deployment(endpoint).model_version == 1  # the endpoint kept its version
        rolled = cli(alice.token, "rollout", endpoint, "--alias", "production", "--percent",
                     "30", "--no-wait")
        assert rolled.exit_code == 0, rolled.output
        assert ts.get_deployment(endpoint).canary_version == 2
        assert ts.export_model(name, alias="production", format="torchscript")
        shown = json.loads(cli(alice.token, "model", f"{name}@production", "-o", "json").stdout)
        assert (shown["version"], shown["aliases"]) == (2, ["production"])
        ts.rollback(endpoint)
        ts.undeploy(endpoint)


def test_cli_lists_aliases_and_sets_and_removes_tags(people, versions, cli):
    alice, _, _ = people
    name, _ = versions
    assert cli(alice.token, "model", "alias", f"{name}:1", "staging").exit_code == 0
    listed = cli(alice.token, "models", name)
    assert listed.exit_code == 0, listed.output
    assert "aliases" in listed.stdout and "staging" in listed.stdout
    doc = json.loads(cli(alice.token, "models", name, "-o", "json").stdout)
    assert {m["version"]: m.get("aliases", []) for m in doc["models"]}[1] == ["staging"]
    tagged = cli(alice.token, "model", "tag", f"{name}@staging", "reviewed=yes", "by=ana")
    assert tagged.exit_code == 0, tagged.output
    assert "reviewed=yes" in tagged.stdout
    untagged = cli(alice.token, "model", "tag", f"{name}:1", "--remove", "by", "-o", "json")
    assert json.loads(untagged.stdout)["tags"] == {"reviewed": "yes"}
    shown = cli(alice.token, "model", f"{name}:1")
    assert "staging" in shown.stdout and "reviewed=yes" in shown.stdout
    removed = cli(alice.token, "model", "unalias", f"{name}@staging")
    assert removed.exit_code == 0 and "it named" in removed.stdout
    missing = cli(alice.token, "model", f"{name}@staging")
    assert missing.exit_code == 1 and "no alias 'staging'" in missing.stderr


def test_bad_aliases_and_tags_are_refused_with_the_field(people, versions):
    alice, _, _ = people
    name, _ = versions
    for alias in ("latest", "3", "Prod", "x" * 64):
        err = rpc_error(alice.models.SetModelAlias, model_pb2.SetModelAliasRequest(
            name=name, alias=alias, version=1), timeout=10)
        assert err.code() == INVALID and err.details().startswith("alias"), err.details()
    err = rpc_error(alice.models.GetModel, model_pb2.GetModelRequest(
        name=name, version=1, alias="production"), timeout=10)
    assert err.code() == INVALID and "not both" in err.details()
    err = rpc_error(alice.models.UpdateModelTags, model_pb2.UpdateModelTagsRequest(
        name=name, version=1, set={"bad key": "v"}), timeout=10)
    assert err.code() == INVALID and err.details().startswith("set['bad key']")
    err = rpc_error(alice.deployments.Deploy, deployment_pb2.DeployRequest(
        name="x", model_name=name, model_alias="nope"), timeout=10)
    assert err.code() == NOT_FOUND and "no alias 'nope'" in err.details()


def test_another_user_can_neither_see_resolve_nor_change_aliases(stack, people, versions):
    alice, bob, tag = people
    name, _ = versions
    with sdk(stack, alice) as ts:
        ts.set_model_alias(f"{name}:2", "shared")
    calls = [
        (bob.models.GetModel, model_pb2.GetModelRequest(name=name, alias="shared")),
        (bob.models.GetModel, model_pb2.GetModelRequest(name=name, alias="other")),
        (bob.models.SetModelAlias, model_pb2.SetModelAliasRequest(name=name, alias="shared",
                                                                  version=1)),
        (bob.models.SetModelAlias, model_pb2.SetModelAliasRequest(name=name, alias="mine",
                                                                  version=1)),
        (bob.models.DeleteModelAlias, model_pb2.DeleteModelAliasRequest(name=name,
                                                                        alias="shared")),
        (bob.models.UpdateModelTags, model_pb2.UpdateModelTagsRequest(
            name=name, alias="shared", set={"k": "v"})),
        (bob.models.DeleteModelVersion, model_pb2.DeleteModelVersionRequest(name=name,
                                                                            version=1)),
        (bob.deployments.Deploy, deployment_pb2.DeployRequest(
            name=f"bob-{tag}", model_name=name, model_alias="shared")),
    ]
    for method, request in calls:
        err = rpc_error(method, request, timeout=10)
        assert err.code() == NOT_FOUND, (request, err.details())
        assert "alias" not in err.details() and "shared" not in err.details()
    assert not bob.models.ListModels(model_pb2.ListModelsRequest(), timeout=10).models
    with sdk(stack, alice) as ts:
        mv = ts.get_model(f"{name}@shared")
        assert mv.version == 2 and "shared" in mv.aliases and "mine" not in mv.aliases
        assert "k" not in mv.tags
        assert not ts.get_model(name, 1).aliases
