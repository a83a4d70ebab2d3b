"""The `trainserve` command (typer + rich): the local stack, jobs, models, deployments and
predictions. `trainserve.cli.main:main` is the console script."""
