"""`trainserve up / down / restart / status`: the one-machine stack (trainserve.local).

The options of `up` are derived from the settings, `trainserve.local.Config`: one flag per
field, `--<field-with-dashes>`, whose help is the field's `doc`; a few flags keep their
older names as hidden aliases (`--ray-port` for `--ray-gcs-port`, ...).
"""
from __future__ import annotations

import inspect
from dataclasses import Field, fields
from pathlib import Path
from typing import Annotated, Any

import typer

from trainserve.core import errors
from trainserve.cli import render
from trainserve.cli.app import OutputOption, app
from trainserve.cli.render import Output
from trainserve.console.links import new_signin_url
from trainserve.local import (ALL_COMPONENTS, Config, LocalStack, declared, default_state_dir,
                              recorded_config)
from trainserve.local.settings import flag, setting_type

StateDir = Annotated[Path | None, typer.Option(
    "--state-dir", envvar="TRAINSERVE_STATE_DIR", file_okay=False,
    help="Logs, pid files, Redis data and models (default: ~/.trainserve).")]


# -- up: its options, one per setting ------------------------------------------------------------

def _option_type(f: Field) -> type:
    return Path if f.metadata["path"] else setting_type(f)


def _option(f: Field, decl: str, hidden: bool = False, help: str = "") -> typer.models.OptionInfo:
    meta = f.metadata
    lo, hi = meta["bounds"]
    kind = _option_type(f)
    if kind is bool:
        decl = f"{decl}/{meta['off_flag'] or '--no-' + decl[2:]}"
    extra: dict[str, Any] = {"metavar": meta["metavar"]} if meta["metavar"] else {}
    if kind in (int, float):
        extra.update(min=lo, max=hi)
    if kind is Path:
        extra.update(file_okay=meta["path"] == "file", dir_okay=meta["path"] == "dir")
    return typer.Option(None, decl, help=help or meta["doc"], hidden=hidden,
                        show_default=False, **extra)


def _alias_parameter(alias: str) -> str:
    return "old_" + alias[2:].replace("-", "_")


def _up_parameters() -> list[inspect.Parameter]:
    """One keyword parameter per setting, plus a hidden one per older flag name."""
    params = []
    for f in fields(Config):
        kind = _option_type(f) | None
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=kind,
                                        default=_option(f, flag(f.name))))
        for alias in f.metadata["aliases"]:
            params.append(inspect.Parameter(
                _alias_parameter(alias), inspect.Parameter.KEYWORD_ONLY, annotation=kind,
                default=_option(f, alias, hidden=True, help=f"Older name of {flag(f.name)}.")))
    return params


def _settings_given(given: dict[str, Any]) -> dict[str, Any]:
    """The settings given on the command line, by their names (an older flag name counts as
    its setting's; both with different values is an error)."""
    values: dict[str, Any] = {}
    for f in fields(Config):
        value = given.get(f.name)
        for alias in f.metadata["aliases"]:
            old = given.get(_alias_parameter(alias))
            if old is not None and value is not None and old != value:
                raise errors.InvalidArgument(f"{alias} is an older name of {flag(f.name)}: "
                                             "give one of them")
            value = old if value is None else value
        if value is not None:
            values[f.name] = str(value) if isinstance(value, Path) else value
    return values


def up(**given: Any) -> None:
    """Start redis, Ray, the job API and the dispatcher (with Ray Serve) on this machine.

    Every setting is also the environment variable TRAINSERVE_<SETTING> (e.g.
    TRAINSERVE_REDIS_PORT); a flag beats the variable."""
    overrides = _settings_given(given)
    config = _config(overrides.pop("state_dir", None), overrides)
    console = render.stdout()
    stack = LocalStack(config, on_event=_printer(console))
    if all(stack.is_running(name) for name in stack.components):
        console.print(f"the stack in {config.state_dir} is already up", highlight=False)
    else:
        console.print(f"starting the local stack in {config.state_dir}", highlight=False)
        stack.up()
    console.print(render.stack_table(stack.status(), config.state_dir))
    ray = (f"Ray cluster {config.ray_address}" if config.external_ray
           else f"Ray dashboard {config.dashboard_url}")
    console.print(f"\njob API {config.api_address} · inference http://{config.serve_http}/v2 "
                  f"· {ray}"
                  + (f" · Prometheus {config.prometheus_url}" if config.with_prometheus else "")
                  + "\n"
                  "try: trainserve submit examples/xor_mlp.yaml --wait", highlight=False)
    if stack.is_ready("console"):
        console.print(f"web console (a one-time sign-in link; `trainserve console` prints "
                      f"another): {new_signin_url(config.console_url, config.state_dir)}",
                      highlight=False, soft_wrap=True)


up.__signature__ = inspect.Signature(_up_parameters(), return_annotation=None)
app.command()(up)


def _config(state_dir: Path | None, overrides: dict) -> Config:
    """The config to start with: the recorded one while any component of the stack in
    `state_dir` runs (changing its settings then is an error, but for those of a component
    that is stopped), else defaults + env + flags."""
    state_dir = state_dir or default_state_dir()
    try:
        fresh = Config.from_env(state_dir=state_dir, **overrides)
    except ValueError as exc:
        raise errors.InvalidArgument(str(exc)) from None
    recorded = recorded_config(fresh.state_dir)
    if recorded is None:
        return fresh
    stack = LocalStack(recorded)
    running = [n for n in ALL_COMPONENTS if stack.is_running(n)]
    if not running:
        return fresh
    wanted = recorded.replace(**{k: v for k, v in overrides.items() if v is not None})
    # A setting only `up` reads, or only a component that is stopped, may change.
    free = {f.name for f in fields(Config) if (only := f.metadata["only_for"])
            and (only == "up" or not stack.is_running(only))}
    recorded = recorded.replace(**{k: getattr(wanted, k) for k in free})
    if wanted != recorded:
        raise errors.FailedPrecondition(
            f"the stack in {recorded.state_dir} is running ({', '.join(running)}) with other "
            "settings; run `trainserve down` first to change them")
    return recorded


# -- down, restart, status ---------------------------------------------------------------------

Components = Annotated[list[str] | None, typer.Argument(
    metavar="COMPONENT", show_default=False,
    help=f"Only these ({', '.join(ALL_COMPONENTS)}); the others keep running.")]


@app.command()
def down(components: Components = None, state_dir: StateDir = None) -> None:
    """Stop every component `up` started (and nothing else), or only the ones named."""
    console = render.stdout()
    stack = LocalStack.from_state_dir(state_dir, on_event=_printer(console))
    if components:
        _check_running(stack, components)
        _note_needed(stack, components, restarting=False)
        stopped = stack.down(components)
    else:
        stopped = stack.down()
    where = stack.config.state_dir
    console.print(f"stopped {', '.join(stopped)}" if stopped else f"nothing running in {where}",
                  highlight=False)


@app.command()
def restart(
    component: Annotated[str, typer.Argument(
        metavar="COMPONENT", help=f"One of {', '.join(ALL_COMPONENTS)}.")],
    state_dir: StateDir = None,
) -> None:
    """Stop one component of the running stack and start it again, waiting until it is
    ready; the others keep running."""
    console = render.stdout()
    stack = LocalStack.from_state_dir(state_dir, on_event=_printer(console))
    _check_running(stack, [component])
    _note_needed(stack, [component], restarting=True)
    stack.restart(component)
    console.print(f"restarted {component}: {stack.address(component)}", highlight=False)


@app.command()
def status(state_dir: StateDir = None, output: OutputOption = Output.table) -> None:
    """Show each component of the local stack: running or not, pid, address, ready."""
    stack = LocalStack.from_state_dir(state_dir)
    statuses = stack.status()
    if output is Output.json:
        render.print_json({"state_dir": str(stack.config.state_dir),
                           "components": render.stack_json(statuses)})
    else:
        render.stdout().print(render.stack_table(statuses, stack.config.state_dir))


def _check_running(stack: LocalStack, names: list[str]) -> None:
    """Refuse an unknown component (exit 2), one the stack uses from elsewhere, and one that
    is not running, naming those that are."""
    for name in names:
        try:
            component = declared(name)
        except ValueError as exc:
            raise errors.InvalidArgument(str(exc)) from None
        if where := component.elsewhere(stack.config):
            raise errors.FailedPrecondition(f"this stack uses {where}; it neither starts nor "
                                            f"stops {name}")
    stopped = [n for n in names if not stack.is_running(n)]
    if stopped:
        running = [n for n in ALL_COMPONENTS if stack.is_running(n)]
        raise errors.FailedPrecondition(
            f"{', '.join(stopped)} {'is' if len(stopped) == 1 else 'are'} not running in "
            f"{stack.config.state_dir} (running: {', '.join(running) or 'nothing'}); "
            "`trainserve up` starts what is missing")


def _note_needed(stack: LocalStack, names: list[str], restarting: bool) -> None:
    """Say which running components need one being stopped or restarted."""
    for name in names:
        users = [n for n in stack.components if name in declared(n).needs
                 and n not in names and stack.is_running(n)]
        if not users:
            continue
        one = len(users) == 1
        fix = (f"restart {'it if it fails' if one else 'any of them that fails'} once {name} "
               f"is back (`trainserve restart {users[0]}`)" if restarting
               else f"`trainserve up` starts {name} again")
        render.stderr().print(f"note: {', '.join(users)} {'needs' if one else 'need'} {name}; "
                              f"{fix}", style="yellow", highlight=False, soft_wrap=True)


def _printer(console):
    return lambda name, msg: console.print(f"  {name}: {msg}", style="dim", highlight=False)
