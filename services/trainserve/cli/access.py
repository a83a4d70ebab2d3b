"""`trainserve whoami` and `trainserve api-token create|list|revoke`: who the CLI acts as on
the job API, and the API's bearer tokens (admins only). The local stack's admin token is made
by `trainserve up` (`<state-dir>/run/admin-token`) and used by default."""
from __future__ import annotations

from typing import Annotated

import typer

from trainserve.cli import render
from trainserve.cli.app import OutputOption, _Group, app, client
from trainserve.cli.render import Output

token_app = typer.Typer(cls=_Group, no_args_is_help=True,
                        help="Create, list and revoke job API tokens (admins only).")
app.add_typer(token_app, name="api-token")


@app.command()
def whoami(ctx: typer.Context, output: OutputOption = Output.table) -> None:
    """Show the user and role the job API sees for this CLI's token."""
    from trainserve.core.pb import auth_pb2
    with client(ctx) as ts:
        me = ts.call_auth("WhoAmI", auth_pb2.WhoAmIRequest())
    if output is Output.json:
        render.print_messages(None, me)
    elif not me.auth_enabled:
        render.stdout().print("authentication is off on this server: every caller is an "
                              "admin", highlight=False)
    else:
        render.stdout().print(f"{me.user} ({me.role})", highlight=False)


@token_app.command("create")
def create(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="Who the token is for (lowercase name).")],
    role: Annotated[str, typer.Option("--role", help="user or admin.")] = "user",
    label: Annotated[str, typer.Option("--label", help="A note kept with it.")] = "",
) -> None:
    """Create a token: prints it once (the server keeps only its SHA-256)."""
    from trainserve.core.pb import auth_pb2
    with client(ctx) as ts:
        made = ts.call_auth("CreateToken", auth_pb2.CreateTokenRequest(user=user, role=role,
                                                                      label=label))
    render.stderr().print(f"token {made.info.id} for {made.info.user} ({made.info.role}); "
                          "shown only this once. Clients send it as TRAINSERVE_TOKEN or "
                          "`--token`.", style="dim", highlight=False, soft_wrap=True)
    render.stdout().print(made.token, highlight=False, soft_wrap=True)


@token_app.command("list")
def list_tokens(ctx: typer.Context, output: OutputOption = Output.table) -> None:
    """List the tokens: id, user, role, label, created."""
    from trainserve.core.pb import auth_pb2
    with client(ctx) as ts:
        tokens = ts.call_auth("ListTokens", auth_pb2.ListTokensRequest()).tokens
    if output is Output.json:
        render.print_messages("tokens", tokens)
        return
    for t in tokens:
        render.stdout().print(f"{t.id}  {t.user:20} {t.role:6} "
                              f"{t.created_at.ToDatetime():%Y-%m-%d %H:%M}  {t.label}",
                              highlight=False)


@token_app.command("revoke")
def revoke(
    ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(metavar="ID", help="The token's id (8+ hex).")],
) -> None:
    """Revoke a token (effective on the next call)."""
    from trainserve.core.pb import auth_pb2
    with client(ctx) as ts:
        gone = ts.call_auth("RevokeToken", auth_pb2.RevokeTokenRequest(id=token_id))
    render.stdout().print(f"revoked token {gone.id} of {gone.user}", highlight=False)
