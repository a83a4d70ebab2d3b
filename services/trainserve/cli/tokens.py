"""`trainserve token create|list|revoke`: bearer tokens of the inference endpoints.

The token file lists SHA-256 digests only, each with the user it belongs to, its role and
optionally the endpoints it is limited to (trainserve.serve.auth); a user's token reaches
only that user's endpoints, an admin's every endpoint. The gateway re-reads the file within
a second of a change, so no restart is needed. The local stack checks tokens when started
with `TRAINSERVE_INFERENCE_AUTH=true`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trainserve.cli import render
from trainserve.cli.app import OutputOption, _Group, app
from trainserve.cli.render import Output
from trainserve.cli.stack import StateDir
from trainserve.local import Config, default_state_dir, recorded_config

token_app = typer.Typer(cls=_Group, no_args_is_help=True,
                        help="Create, list and revoke bearer tokens of the inference "
                             "endpoints.")
app.add_typer(token_app, name="token")

TokenFileOption = Annotated[Path | None, typer.Option(
    "--file", dir_okay=False,
    help="Token file (default: the local stack's, <state-dir>/run/inference-tokens).")]


def _token_file(state_dir: Path | None, file: Path | None) -> tuple[Path, Config | None]:
    """(the token file, the recorded local stack config, if any)."""
    recorded = recorded_config(state_dir or default_state_dir())
    if file is not None:
        return file, recorded
    config = recorded or Config(state_dir=state_dir or default_state_dir())
    return config.inference_token_path, recorded


@token_app.command("create")
def create(
    state_dir: StateDir = None,
    file: TokenFileOption = None,
    user: Annotated[str, typer.Option(
        "--user", help="Whose token it is: it reaches that user's endpoints (those the "
                       "user deployed). Needed unless --role admin.")] = "",
    role: Annotated[str, typer.Option(
        "--role", help="user (the user's endpoints) or admin (every endpoint).")] = "user",
    endpoint: Annotated[list[str] | None, typer.Option(
        "--endpoint", help="Limit the token to this endpoint (repeat for several).")] = None,
    label: Annotated[str, typer.Option(
        "--label", help="A note kept beside the digest.")] = "",
) -> None:
    """Create an inference token: prints it once (only its digest is kept)."""
    from trainserve.serve.auth import TOKEN_ENV, create_token
    path, recorded = _token_file(state_dir, file)
    token, digest = create_token(path, label, user=user, role=role, endpoints=endpoint or ())
    err = render.stderr()
    whose = f"of {user} ({role})" if user else f"({role})"
    err.print(f"token {digest[:12]} {whose} added to {path}; it is shown only this once. "
              f"Clients send "
              f"`Authorization: Bearer <token>`; the SDK and `trainserve predict` read "
              f"${TOKEN_ENV}.", style="dim", highlight=False, soft_wrap=True)
    if file is None and recorded is not None and not recorded.inference_auth:
        err.print(f"note: the stack in {recorded.state_dir} does not check tokens; restart it "
                  "with TRAINSERVE_INFERENCE_AUTH=true", style="yellow", highlight=False,
                  soft_wrap=True)
    render.stdout().print(token, highlight=False, soft_wrap=True)


@token_app.command("list")
def list_tokens(
    state_dir: StateDir = None,
    file: TokenFileOption = None,
    output: OutputOption = Output.table,
) -> None:
    """List the inference tokens: digest prefix, user, role, endpoints, label."""
    from trainserve.serve.auth import list_tokens as grants_of
    path, _ = _token_file(state_dir, file)
    grants = grants_of(path)
    if output is Output.json:
        render.print_json({"tokens": [
            {"digest": g.digest[:12], "user": g.user, "role": g.role,
             "endpoints": sorted(g.endpoints), "label": g.label, "legacy": g.legacy}
            for g in grants]})
        return
    if not grants:
        render.stdout().print(f"no inference token in {path}", highlight=False)
    for g in grants:
        role = f"{g.role} (legacy)" if g.legacy else g.role
        reach = ",".join(sorted(g.endpoints)) or ("every endpoint" if g.role == "admin"
                                                   else "own endpoints")
        render.stdout().print(f"{g.digest[:12]}  {g.user or '-':20} {role:15} {reach:24} "
                              f"{g.label}", highlight=False)


@token_app.command("revoke")
def revoke(
    digest: Annotated[str, typer.Argument(
        metavar="DIGEST", help="The token's digest, or its first 8+ hex characters.")],
    state_dir: StateDir = None,
    file: TokenFileOption = None,
) -> None:
    """Revoke an inference token (effective within a second)."""
    from trainserve.serve.auth import revoke as revoke_digest
    path, _ = _token_file(state_dir, file)
    removed = revoke_digest(path, digest)
    render.stdout().print(f"revoked token {removed[:12]} in {path}", highlight=False)
