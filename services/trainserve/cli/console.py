"""`trainserve console`: a one-time link that signs this machine's browser in to the local
stack's web console as its admin (the console itself: trainserve.console, docs/console.md)."""
from __future__ import annotations

import webbrowser
from typing import Annotated

import typer

from trainserve.cli import render
from trainserve.cli.app import app
from trainserve.cli.stack import StateDir
from trainserve.console.links import CODE_TTL_S, new_signin_url
from trainserve.core import errors
from trainserve.local import LocalStack


@app.command("console")
def console(
    state_dir: StateDir = None,
    open_browser: Annotated[bool, typer.Option(
        "--open", help="Also open the link in this machine's browser.")] = False,
) -> None:
    """Print a link that signs you in to the web console of the local stack, as its admin:
    it works once, within 10 minutes. Anyone else signs in with a job API token."""
    stack = LocalStack.from_state_dir(state_dir)
    if not stack.is_running("console"):
        raise errors.FailedPrecondition(
            f"the web console of the stack in {stack.config.state_dir} is not running "
            "(`trainserve up` starts it)")
    url = new_signin_url(stack.config.console_url, stack.config.state_dir)
    render.stdout().print(url, highlight=False, soft_wrap=True)
    render.stderr().print(f"a one-time sign-in link, valid {CODE_TTL_S / 60:g} minutes",
                          style="dim", highlight=False)
    if open_browser:
        webbrowser.open(url)
