"""Spec files on the command line: `submit --set key.path=value` (typed like the file's own
values, checked with field paths), `submit --dry-run` (checks and prints, submits nothing),
and `trainserve spec-schema` (a JSON Schema generated from the proto that every example
passes and wrong specs fail)."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.unit.test_cli_commands import assert_error, cli, spec_file  # noqa: F401 - fixtures
from tests.unit.test_client_sdk import fake_api  # noqa: F401 - fixture
from trainserve.core import errors
from trainserve.core.pb import spec_pb2
from trainserve.core.spec import parse_spec
from trainserve.core.spec_overrides import apply_overrides
from trainserve.core.spec_schema import spec_schema

EXAMPLES = sorted(Path(__file__).resolve().parents[2].glob("examples/**/*.yaml"))
BASE = {"name": "xor-mlp", "dataset": {"name": "xor"}, "model": {"mlp": {"hidden": [8]}},
        "training": {"epochs": 3}, "labels": {"course": "dl"}}


# -- --set ------------------------------------------------------------------------------------

def test_overrides_are_typed_like_the_files_values():
    doc = apply_overrides(BASE, [
        "training.epochs=50", "optimizer.lr=1e-3", "model.mlp.hidden=[16, 16]",
        "scaling.use_gpu=true", "labels.week=3", "name=007",
        "search.space.optimizer.lr=loguniform(1e-4, 1e-1)"])
    spec = parse_spec(doc)
    assert spec.training.epochs == 50 and spec.optimizer.lr == pytest.approx(1e-3)
    assert list(spec.model.mlp.hidden) == [16, 16] and spec.scaling.use_gpu is True
    assert dict(spec.labels) == {"course": "dl", "week": "3"} and spec.name == "007"
    assert spec.search.space["optimizer.lr"] == "loguniform(1e-4, 1e-1)"
    assert BASE["training"] == {"epochs": 3}  # the document itself is left as it was


def test_naming_another_architecture_replaces_the_first():
    spec = parse_spec(apply_overrides(BASE, ["model.lenet5.dropout=0.3"]))
    assert spec.model.WhichOneof("arch") == "lenet5"
    assert spec.model.lenet5.dropout == pytest.approx(0.3)


def test_later_overrides_win_and_sections_can_be_set_whole():
    spec = parse_spec(apply_overrides(BASE, ["training.epochs=5", "training.epochs=7",
                                             "model.mlp={hidden: [4], activation: relu}"]))
    assert spec.training.epochs == 7 and list(spec.model.mlp.hidden) == [4]


@pytest.mark.parametrize("override, field, text", [
    ("training.epoch=5", "spec.training.epoch", "unknown field 'epoch'; known fields: epochs"),
    ("model.lenet6.dropout=1", "spec.model.lenet6", "unknown architecture 'lenet6'"),
    ("name.first=1", "spec.name.first", "name has no fields"),
    ("training", "--set", "expected KEY.PATH=VALUE"),
    ("training..epochs=1", "--set", "expected KEY.PATH=VALUE"),
])
def test_bad_paths_name_the_field(override, field, text):
    with pytest.raises(errors.InvalidArgument) as refused:
        apply_overrides(BASE, [override])
    assert refused.value.field == field and text in str(refused.value)


def test_a_wrongly_typed_value_names_its_field(cli, spec_file):  # noqa: F811
    result = cli("submit", spec_file, "--set", "model.mlp.hidden=8")
    assert_error(result, 2, "spec.model.mlp.hidden: expected a list of integers, got 8")
    assert cli.api.requests == []


def test_submit_sends_the_overridden_spec(cli, spec_file):  # noqa: F811
    result = cli("submit", spec_file, "--set", "training.epochs=40", "-s", "labels.week=3",
                 "-o", "json")
    assert result.exit_code == 0, result.output
    sent = next(r for name, r in cli.api.requests if name == "SubmitJob")
    assert sent.spec.training.epochs == 40 and sent.spec.labels["week"] == "3"


# -- --dry-run --------------------------------------------------------------------------------

def test_dry_run_prints_the_resolved_spec_and_submits_nothing(cli, spec_file):  # noqa: F811
    result = cli("submit", spec_file, "--dry-run", "--set", "training.epochs=12")
    assert result.exit_code == 0, result.output
    assert cli.api.requests == []
    assert result.stdout.startswith("# dry run")
    printed = parse_spec(yaml.safe_load(result.stdout))  # feeds back into submit
    assert printed.training.epochs == 12 and printed.name == "xor-mlp"
    as_json = cli("submit", spec_file, "--dry-run", "-o", "json")
    assert json.loads(as_json.stdout)["model"]["mlp"]["hidden"] == [8]
    assert cli.api.requests == []


def test_dry_run_refuses_what_submit_would(cli, tmp_path):  # noqa: F811
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndataset: {name: xor}\nmodel: {mlp: {hidden: 8}}\n")
    assert_error(cli("submit", bad, "--dry-run"), 2, "spec.model.mlp.hidden")


# -- spec-schema ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def validator():
    schema = spec_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_passes_the_schema(validator, path):
    doc = yaml.safe_load(path.read_text())
    assert [e.message for e in validator.iter_errors(doc)] == []
    parse_spec(doc)  # and the parser agrees


@pytest.mark.parametrize("doc, message", [
    ({"model": {"mlp": {"hidden": 8}}}, "8 is not of type 'array'"),
    ({"trainig": {"epochs": 3}}, "'trainig' was unexpected"),
    ({"model": {"mlp": {"hidden": [8]}, "lenet5": None}}, "False schema"),
    ({"training": {"epochs": "ten"}}, "'ten' is not of type 'integer'"),
    ({"labels": {"week": 3}}, "3 is not of type 'string'"),
])
def test_wrong_specs_fail_the_schema(validator, doc, message):
    assert any(message in e.message for e in validator.iter_errors({"name": "x", **doc}))


def test_the_schema_follows_the_proto(validator):
    schema = spec_schema()
    job_spec = schema["$defs"]["trainserve.v1.JobSpec"]
    assert set(job_spec["properties"]) == {f.name for f in spec_pb2.JobSpec.DESCRIPTOR.fields}
    arch = spec_pb2.ModelSpec.DESCRIPTOR.oneofs_by_name["arch"]
    model = schema["$defs"]["trainserve.v1.ModelSpec"]
    assert set(model["dependentSchemas"]) == {f.name for f in arch.fields}


def test_spec_schema_command_prints_or_writes_it(cli, tmp_path):  # noqa: F811
    printed = cli("spec-schema")
    assert printed.exit_code == 0 and json.loads(printed.stdout) == spec_schema()
    out = tmp_path / "spec.schema.json"
    assert cli("spec-schema", "--out", out).exit_code == 0
    assert json.loads(out.read_text()) == spec_schema()
