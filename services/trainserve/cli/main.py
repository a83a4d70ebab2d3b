"""Entry point of the `trainserve` console script."""
from __future__ import annotations

from trainserve.cli import (  # noqa: F401 - importing registers the commands
    access, commands, compare, console, datasets, export, logs, plot, registry, rollout, stack)
from trainserve.cli import tokens  # noqa: F401 - registers `trainserve token`
from trainserve.cli import specs  # noqa: F401 - registers `trainserve spec-schema`
from trainserve.cli import evaluate  # noqa: F401 - registers `trainserve evaluate`
from trainserve.cli import tensorboard  # noqa: F401 - registers `trainserve tensorboard`
from trainserve.cli.app import app


def main() -> None:
    app(prog_name="trainserve")


if __name__ == "__main__":
    main()
