"""The typer application, its global options and its one error handler: every error becomes a
single red line on stderr (exit 2 for invalid input, 1 otherwise), never a traceback."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Annotated

import typer
from typer.core import TyperGroup

from trainserve.core import errors
from trainserve.cli.render import Output, stderr

EXIT_FAILED = 1
EXIT_INVALID = 2


class _Group(TyperGroup):
    """Runs a command and turns the errors users can act on into one readable line."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except errors.InvalidArgument as exc:
            fail(str(exc), EXIT_INVALID)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except BrokenPipeError:
            stdout_closed()
        except Exception as exc:  # noqa: BLE001 - the CLI never shows a traceback
            if _is_cli_framework(exc) or os.environ.get("TRAINSERVE_DEBUG"):
                raise
            fail(_message(exc), EXIT_FAILED)


def stdout_closed() -> None:
    """Whoever read our output stopped (`trainserve logs JOB | head -2`): end quietly and
    successfully, as `cat` does. Python would still report the failed flush of stdout at
    exit, so stdout is pointed at /dev/null first."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (a test's capture)
        pass
    raise typer.Exit(0)


def _is_cli_framework(exc: BaseException) -> bool:
    """Exit, Abort, usage errors: typer (which vendors click as typer._click) handles them."""
    return type(exc).__module__.split(".")[0] in ("typer", "click")


def _message(exc: BaseException) -> str:
    from trainserve.local import LocalStackError
    if isinstance(exc, (errors.TrainserveError, LocalStackError, TimeoutError)):
        return str(exc)
    return f"internal error ({type(exc).__name__}): {exc} (TRAINSERVE_DEBUG=1 shows more)"


def fail(message: str, code: int = EXIT_FAILED) -> None:
    """Print `message` as the error (first line red, the rest as detail) and exit."""
    first, _, rest = message.partition("\n")
    console = stderr()
    console.print(f"[bold red]error:[/bold red] [red]{first}[/red]", highlight=False,
                  soft_wrap=True)
    if rest:
        console.print(rest, style="dim", highlight=False, soft_wrap=True, markup=False)
    raise typer.Exit(code)


app = typer.Typer(
    cls=_Group, name="trainserve", no_args_is_help=True, add_completion=True,
    pretty_exceptions_enable=False,
    help="Train the networks of the course on Ray, serve them with Ray Serve.")


@dataclass
class Settings:
    api: str | None = None
    token: str | None = None


@app.callback()
def _options(
    ctx: typer.Context,
    api: Annotated[str | None, typer.Option(
        "--api", envvar="TRAINSERVE_API", metavar="HOST:PORT",
        help="Job API address (default: the local stack's, else 127.0.0.1:50051).")] = None,
    token: Annotated[str | None, typer.Option(
        "--token", envvar="TRAINSERVE_TOKEN", show_envvar=True,
        help="Job API bearer token (default: the local stack's admin token). TLS: "
             "TRAINSERVE_TLS_CA, and TRAINSERVE_TLS_CERT/KEY for mutual TLS.")] = None,
) -> None:
    ctx.obj = Settings(api=api, token=token)


def client(ctx: typer.Context):
    """The SDK client for this invocation (short retries: a person is waiting)."""
    from trainserve.client import Client
    settings = ctx.find_object(Settings) or Settings()
    return Client(settings.api, timeout=30.0, retry_for=3.0, token=settings.token)


OutputOption = Annotated[Output, typer.Option(
    "-o", "--output", case_sensitive=False, help="table, or the proto3 JSON of the messages.")]
