"""Aliases and tags of model versions (`core.modelrefs`, `store.models`, `registry.service`)
against a real redis-server: an alias names one version at a time and resolves when used;
a second user can neither see, resolve, set nor remove another's; every bound refuses with
the field at fault."""
from __future__ import annotations

import json

import pytest

from tests.unit.test_cli_commands import assert_error, cli  # noqa: F401 - fixtures
from tests.unit.test_client_sdk import fake_api  # noqa: F401 - fixtures

from trainserve.core import errors
from trainserve.core.modelrefs import MAX_ALIASES, MAX_TAGS, ModelRef, check_alias, parse_ref
from trainserve.core.pb import model_pb2
from trainserve.core.tenancy import Principal
from trainserve.registry.service import DeploymentsCore, ModelsCore
from trainserve.store.models import ModelStore

ALICE, BOB, ADMIN = Principal("alice", "user"), Principal("bob", "user"), Principal("root", "admin")


def register(client, name: str = "digits", user: str = "alice", n: int = 1,
             artifact: str = "") -> list[model_pb2.ModelVersion]:
    """`n` versions of `name` for `user`, as registration writes them."""
    store, made = ModelStore(client), []
    for _ in range(n):
        version = store.allocate_version(name, f"j-{name}-{len(store.versions(name)) + 1}")
        mv = model_pb2.ModelVersion(name=name, version=version, user=user,
                                    job_id=f"j-{name}-{version}",
                                    artifact_uri=artifact or f"/nowhere/{name}/{version}")
        store.put(mv)
        made.append(mv)
    return made


# -- references and rules -----------------------------------------------------------------------

@pytest.mark.parametrize("text, ref", [
    ("digits", ModelRef("digits")), ("digits:3", ModelRef("digits", 3)),
    ("digits@production", ModelRef("digits", alias="production")),
    ("a.b-c_d@x1", ModelRef("a.b-c_d", alias="x1"))])
def test_references(text, ref):
    assert parse_ref(text) == ref
    assert str(ref) == text


@pytest.mark.parametrize("text", ["digits:x", "digits@", "digits:"])
def test_malformed_references_are_refused(text):
    with pytest.raises(errors.InvalidArgument):
        parse_ref(text)


@pytest.mark.parametrize("alias, why", [
    ("", "required"), ("latest", "reserved"), ("3", "not an alias"),
    ("Production", "not an alias"), ("prod uction", "not an alias"),
    ("p" * 64, "not an alias"), ("-x", "not an alias")])
def test_alias_rules(alias, why):
    with pytest.raises(errors.InvalidArgument, match=why) as info:
        check_alias(alias)
    assert info.value.field == "alias"


# -- aliases ------------------------------------------------------------------------------------

def test_an_alias_moves_and_resolves_to_its_version_now(redis_client):
    register(redis_client, n=3)
    core = ModelsCore(redis_client)
    assert core.set_alias("digits", "production", 2, ALICE).aliases == ["production"]
    assert core.get("digits", 0, ALICE, alias="production").version == 2
    core.set_alias("digits", "staging", 0, ALICE)  # 0: the latest now
    moved = core.set_alias("digits", "production", 3, ALICE)
    assert moved.version == 3 and moved.aliases == ["production", "staging"]
    assert core.get("digits", 2, ALICE).aliases == []  # taken off v2
    assert core.get("digits", 0, ALICE, alias="production").version == 3
    assert core.get("digits", 0, ALICE, alias="latest").version == 3
    listed = {mv.version: list(mv.aliases) for mv in core.list("digits", ALICE)}
    assert listed == {1: [], 2: [], 3: ["production", "staging"]}


def test_removing_an_alias(redis_client):
    register(redis_client, n=2)
    core = ModelsCore(redis_client)
    core.set_alias("digits", "production", 1, ALICE)
    assert core.delete_alias("digits", "production", ALICE).version == 1
    with pytest.raises(errors.NotFound, match="no alias 'production'"):
        core.delete_alias("digits", "production", ALICE)
    with pytest.raises(errors.NotFound, match="no alias 'production'"):
        core.get("digits", 0, ALICE, alias="production")


def test_alias_requests_are_checked(redis_client):
    register(redis_client, n=1)
    core = ModelsCore(redis_client)
    with pytest.raises(errors.InvalidArgument, match="not both") as info:
        core.get("digits", 1, ALICE, alias="production")
    assert info.value.field == "alias"
    with pytest.raises(errors.InvalidArgument, match="reserved"):
        core.set_alias("digits", "latest", 1, ALICE)
    with pytest.raises(errors.NotFound, match="no version 7"):
        core.set_alias("digits", "production", 7, ALICE)
    with pytest.raises(errors.InvalidArgument) as info:
        core.set_alias("", "production", 1, ALICE)
    assert info.value.field == "name"


def test_a_model_has_at_most_so_many_aliases(redis_client):
    register(redis_client, n=1)
    core = ModelsCore(redis_client)
    for i in range(MAX_ALIASES):
        core.set_alias("digits", f"a{i}", 1, ALICE)
    with pytest.raises(errors.ResourceExhausted, match="aliases"):
        core.set_alias("digits", "one-more", 1, ALICE)
    core.set_alias("digits", "a0", 1, ALICE)  # moving one it has is no new alias


def test_another_user_neither_sees_nor_resolves_nor_changes_aliases(redis_client):
    register(redis_client, n=2)
    core = ModelsCore(redis_client)
    core.set_alias("digits", "production", 1, ALICE)
    for call in (lambda: core.get("digits", 0, BOB, alias="production"),
                 lambda: core.get("digits", 0, BOB, alias="nope"),
                 lambda: core.set_alias("digits", "production", 2, BOB),
                 lambda: core.set_alias("digits", "mine", 2, BOB),
                 lambda: core.delete_alias("digits", "production", BOB),
                 lambda: core.update_tags("digits", 1, "", {"k": "v"}, [], BOB),
                 lambda: core.update_tags("digits", 0, "production", {"k": "v"}, [], BOB)):
        with pytest.raises(errors.NotFound, match="model 'digits' not found"):
            call()
    assert core.list("", BOB) == []
    assert core.get("digits", 0, ALICE, alias="production").version == 1  # unchanged
    assert core.set_alias("digits", "production", 2, ADMIN).version == 2  # an admin may


def test_deploy_and_rollout_by_alias_pin_the_version_it_names_then(redis_client):
    register(redis_client, n=3)
    models, deps = ModelsCore(redis_client), DeploymentsCore(redis_client)
    models.set_alias("digits", "production", 1, ALICE)
    models.set_alias("digits", "candidate", 3, ALICE)
    dep = deps.deploy("digits", "digits", 0, None, ALICE, alias="production")
    assert (dep.model_name, dep.model_version) == ("digits", 1)
    models.set_alias("digits", "production", 2, ALICE)
    assert deps.get("digits", ALICE).model_version == 1  # the endpoint keeps its version
    dep = deps.rollout("digits", "", 0, 20, ALICE, alias="candidate")
    assert dep.canary_version == 3
    with pytest.raises(errors.InvalidArgument) as info:
        deps.deploy("d2", "digits", 2, None, ALICE, alias="production")
    assert info.value.field == "model_alias"
    with pytest.raises(errors.NotFound):
        deps.deploy("bobs", "digits", 0, None, BOB, alias="production")


# -- tags ---------------------------------------------------------------------------------------

def test_tags_are_set_overwritten_and_removed(redis_client):
    register(redis_client, n=2)
    core = ModelsCore(redis_client)
    got = core.update_tags("digits", 1, "", {"reviewed": "yes", "by": "ana"}, [], ALICE)
    assert dict(got.tags) == {"reviewed": "yes", "by": "ana"}
    got = core.update_tags("digits", 1, "", {"reviewed": "no"}, ["by", "absent"], ALICE)
    assert dict(got.tags) == {"reviewed": "no"}
    assert dict(core.get("digits", 2, ALICE).tags) == {}
    core.set_alias("digits", "production", 2, ALICE)
    got = core.update_tags("digits", 0, "production", {"stage": "prod"}, [], ALICE)
    assert got.version == 2 and dict(got.tags) == {"stage": "prod"}


def test_tag_bounds(redis_client):
    register(redis_client, n=1)
    core = ModelsCore(redis_client)
    with pytest.raises(errors.InvalidArgument) as info:
        core.update_tags("digits", 1, "", {"bad key": "v"}, [], ALICE)
    assert info.value.field == "set['bad key']"
    with pytest.raises(errors.InvalidArgument) as info:
        core.update_tags("digits", 1, "", {"k": "v" * 257}, [], ALICE)
    assert info.value.field == "set['k']"
    with pytest.raises(errors.InvalidArgument) as info:
        core.update_tags("digits", 1, "", {}, ["ok", ""], ALICE)
    assert info.value.field == "remove[1]"
    core.update_tags("digits", 1, "", {f"k{i}": "v" for i in range(MAX_TAGS)}, [], ALICE)
    with pytest.raises(errors.ResourceExhausted, match="tags"):
        core.update_tags("digits", 1, "", {"one-more": "v"}, [], ALICE)
    got = core.update_tags("digits", 1, "", {"one-more": "v"}, ["k0"], ALICE)  # room made
    assert len(got.tags) == MAX_TAGS


def test_a_transfer_source_may_be_named_by_alias(redis_client):
    from trainserve.jobs.service import JobsCore
    register(redis_client, n=2)
    ModelsCore(redis_client).set_alias("digits", "production", 1, ALICE)
    jobs = JobsCore(redis_client)
    assert jobs.model_artifact("digits@production", 0, ALICE) == "/nowhere/digits/1"
    assert jobs.model_artifact("digits", 0, ALICE) == "/nowhere/digits/2"
    assert jobs.model_artifact("digits@production", 2, ALICE) is None  # not both
    assert jobs.model_artifact("digits@nope", 0, ALICE) is None
    assert jobs.model_artifact("digits@production", 0, BOB) is None  # never another's
    assert jobs.model_artifact("digits", 0, BOB) is None


# -- the CLI's parsing (against the fake job API of the CLI's tests) ---------------------------

def test_cli_model_shows_a_version_with_or_without_show(cli):  # noqa: F811
    from tests.unit.test_cli_commands import add_model
    add_model(cli.api, 1)
    assert "xor-mlp:1" in cli("model", "xor-mlp").stdout
    assert "xor-mlp:1" in cli("model", "show", "xor-mlp:1").stdout
    assert json.loads(cli("model", "-o", "json", "xor-mlp").stdout)["version"] == 1


@pytest.mark.parametrize("args, text", [
    (("model", "unalias", "xor-mlp"), "NAME@ALIAS"),
    (("model", "delete", "xor-mlp"), "by its number"),
    (("model", "delete", "xor-mlp@production"), "by its number"),
    (("model", "tag", "xor-mlp:1"), "KEY=VALUE"),
    (("model", "tag", "xor-mlp:1", "novalue"), "not KEY=VALUE"),
    (("model", "alias", "xor-mlp:x", "production"), "positive number"),
    (("deploy", "xor-mlp@"), "an alias follows '@'")])
def test_cli_refuses_malformed_references_before_calling(cli, args, text):  # noqa: F811
    assert_error(cli(*args), 2, text)
    assert not [name for name, _ in cli.api.requests]
