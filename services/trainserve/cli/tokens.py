"""`trainserve token create|revoke`: bearer tokens of the inference endpoints.

The token file lists SHA-256 digests only (trainserve.serve.auth); the gateway re-reads it
within a second of a change, so no restart is needed. The local stack checks tokens when
started with `TRAINSERVE_INFERENCE_AUTH=true`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trainserve.cli import render
from trainserve.cli.app import _Group, app
from trainserve.cli.stack import StateDir
from trainserve.config import Config, default_state_dir, recorded_config

token_app = typer.Typer(cls=_Group, no_args_is_help=True,
                        help="Create and revoke bearer tokens of the inference endpoints.")
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
    label: Annotated[str, typer.Option(
        "--label", help="A note kept beside the digest (who the token is for).")] = "",
) -> None:
    """Create an inference token: prints it once (only its digest is kept)."""
    from trainserve.serve.auth import TOKEN_ENV, create_token
    path, recorded = _token_file(state_dir, file)
    token, digest = create_token(path, label)
    err = render.stderr()
    err.print(f"token {digest[:12]} added to {path}; it is shown only this once. Clients send "
              f"`Authorization: Bearer <token>`; the SDK and `trainserve predict` read "
              f"${TOKEN_ENV}.", style="dim", highlight=False, soft_wrap=True)
    if file is None and recorded is not None and not recorded.inference_auth:
        err.print(f"note: the stack in {recorded.state_dir} does not check tokens; restart it "
                  "with TRAINSERVE_INFERENCE_AUTH=true", style="yellow", highlight=False,
                  soft_wrap=True)
    render.stdout().print(token, highlight=False, soft_wrap=True)


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
