"""Job spec files on the command line: reading one (a file or stdin) with `--set` overrides,
`submit --dry-run`'s answer, and `trainserve spec-schema` (the JSON Schema editors use to
complete and check spec files)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from trainserve.cli import render
from trainserve.cli.app import app
from trainserve.cli.render import Output
from trainserve.core import errors
from trainserve.core.pb import spec_pb2

SetOption = Annotated[list[str] | None, typer.Option(
    "--set", "-s", metavar="KEY.PATH=VALUE",
    help="Override a spec field, e.g. training.epochs=50 or model.mlp.hidden=[16,16] (the "
         "value is read as YAML); repeatable, applied in order.")]
DryRunOption = Annotated[bool, typer.Option(
    "--dry-run", help="Check the spec (field names and types, with --set applied) and print "
                      "it as it would be sent; submit nothing.")]


def read_spec(file: str, overrides: list[str] | None = None) -> spec_pb2.JobSpec:
    """The JobSpec of spec file `file` ('-': stdin) with `overrides` ("key.path=value")."""
    from trainserve.core.spec import parse_spec, read_spec_doc
    from trainserve.core.spec_overrides import apply_overrides
    source = "stdin" if file == "-" else file
    doc = _stdin_doc() if file == "-" else read_spec_doc(Path(file))
    if overrides:
        if not isinstance(doc, dict):
            raise errors.InvalidArgument(f"{source} must be a mapping of spec fields",
                                         field="spec")
        doc = apply_overrides(doc, overrides)
    return parse_spec(doc, source)


def _stdin_doc():
    import yaml
    try:
        return yaml.safe_load(sys.stdin.read())
    except yaml.YAMLError as exc:
        raise errors.InvalidArgument(f"stdin is not valid YAML/JSON: {exc}") from None


def print_dry_run(spec: spec_pb2.JobSpec, output: Output) -> None:
    """The spec as `submit` would send it: YAML (the fields that are set), or its JSON."""
    from google.protobuf import json_format
    if output is Output.json:
        render.print_messages(None, spec)
        return
    import yaml
    doc = json_format.MessageToDict(spec, preserving_proto_field_name=True)
    sys.stdout.write("# dry run: the spec's fields and types are valid; nothing was "
                     "submitted\n# (the server checks names, ranges and quotas on submit)\n")
    sys.stdout.write(yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))


@app.command("spec-schema")
def spec_schema(
    out: Annotated[Path | None, typer.Option(
        "--out", metavar="FILE", help="Write it to FILE instead of stdout.")] = None,
) -> None:
    """Print the JSON Schema of job spec files, generated from the proto: point your editor
    at it to complete and check specs (docs/cli.md)."""
    from trainserve.core.spec_schema import spec_schema as schema
    text = json.dumps(schema(), indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
        return
    out.write_text(text)
    render.stderr().print(f"wrote {out}", highlight=False)
