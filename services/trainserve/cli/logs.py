"""`trainserve logs JOB [-f]`: a job's worker output, through the job API (StreamLogs)."""
from __future__ import annotations

import json
import sys
import time
from typing import Annotated

import typer

from trainserve.cli.app import OutputOption, app, client
from trainserve.cli.completion import job_ids as complete_job_ids
from trainserve.cli.render import Output, to_json
from trainserve.core.pb import job_pb2


@app.command()
def logs(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(
        metavar="JOB_ID", help="The job's id, or any unique start of it.",
        autocompletion=complete_job_ids)],
    follow: Annotated[bool, typer.Option("-f", "--follow",
                                         help="Keep printing new lines until the job ends.")
                      ] = False,
    output: OutputOption = Output.table,
) -> None:
    """Print a job's worker output: its progress lines, Python logging records, stdout and
    stderr, each with the worker's rank (`-o json`: one JSON object per line)."""
    with client(ctx) as ts:
        for line in ts.logs(job_id, follow=follow):
            text = json.dumps(to_json(line)) if output is Output.json else log_text(line)
            sys.stdout.write(text + "\n")
            sys.stdout.flush()


def log_text(line: job_pb2.JobLogLine) -> str:
    """"12:03:04 [rank 0] text", with the level when it is above info."""
    when = time.strftime("%H:%M:%S", time.localtime(line.time.seconds)) if line.time.seconds \
        else "--:--:--"
    level = f"{line.level.upper()} " if line.level not in ("", "info", "debug") else ""
    return f"{when} [rank {line.rank}] {level}{line.text}"
