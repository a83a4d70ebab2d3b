"""The commands that talk to the job API and the inference endpoints."""
from __future__ import annotations

from typing import Annotated

import typer

from trainserve.core import errors
from trainserve.cli import render
from trainserve.cli.app import EXIT_FAILED, OutputOption, app, client
from trainserve.cli.completion import endpoint_names, job_ids, model_names
from trainserve.cli.render import Output
from trainserve.cli.specs import DryRunOption, SetOption, print_dry_run, read_spec
from trainserve.cli.watch import print_outcome, progress_for
from trainserve.core.modelrefs import parse_ref
from trainserve.core.pb import job_pb2

JobId = Annotated[str, typer.Argument(
    metavar="JOB_ID", help="The job's id, or any unique start of it.",
    autocompletion=job_ids)]
Endpoint = Annotated[str, typer.Argument(help="Endpoint name.", autocompletion=endpoint_names)]


# -- jobs -----------------------------------------------------------------------------------

@app.command()
def submit(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(metavar="FILE",
                                        help="Job spec, YAML or JSON ('-' reads stdin).")],
    wait: Annotated[bool, typer.Option("--wait", help="Watch until the job ends; exit 1 "
                                                      "unless it succeeded.")] = False,
    request_id: Annotated[str | None, typer.Option(
        "--request-id", help="Idempotency key: resubmitting with it returns the same job.")
    ] = None,
    set_: SetOption = None,
    dry_run: DryRunOption = False,
    output: OutputOption = Output.table,
) -> None:
    """Submit a training job."""
    spec = read_spec(file, set_)
    if dry_run:
        print_dry_run(spec, output)
        return
    with client(ctx) as ts:
        job = ts.submit(spec, request_id=request_id)
        if output is Output.json and not wait:
            render.print_messages(None, job)
            return
        if output is Output.table:
            render.stdout().print(f"submitted job [bold]{job.id}[/bold] ({job.spec.name}), "
                                  f"{render.job_state_name(job.state)}", highlight=False)
        if wait:
            _follow(ts, job.id, output, job)


@app.command()
def jobs(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(
        "--state", help="Only jobs in this state: queued, running, succeeded, failed, "
                        "cancelled.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many, "
                                                                     "newest first.")] = 50,
    label: Annotated[list[str] | None, typer.Option(
        "--label", "-l", metavar="KEY=VALUE",
        help="Only jobs whose spec.labels hold this label; repeat: all of them.")] = None,
    output: OutputOption = Output.table,
) -> None:
    """List jobs, newest first."""
    with client(ctx) as ts:
        found = []
        for job in ts.iter_jobs(state, page_size=min(limit, 1000), labels=label or None):
            found.append(job)
            if len(found) >= limit:
                break
    render.show_list("jobs", found, output, render.jobs_table, _no_jobs(state, label))


def _no_jobs(state: str | None, labels: list[str] | None) -> str:
    return ("no jobs" + (f" in state {state}" if state else "")
            + (f" labelled {', '.join(labels)}" if labels else ""))


@app.command()
def job(ctx: typer.Context, job_id: JobId, output: OutputOption = Output.table) -> None:
    """Show one job: state, timing, model and metrics; a search's trials, best first."""
    with client(ctx) as ts:
        found = ts.get_job(job_id)
        curves = _last_epochs(ts, found.id) if output is Output.table else None
    render.show_one(found, output, lambda one: render.job_detail(one, curves))


def _last_epochs(ts, job_id: str) -> job_pb2.JobCurves | None:
    """The job's curves, for its last epoch's metrics; None from a server without them."""
    from trainserve.client import NotSupported
    try:
        return ts.curves_message(job_id)
    except NotSupported:
        return None


@app.command()
def watch(ctx: typer.Context, job_id: JobId, output: OutputOption = Output.table) -> None:
    """Follow a job's progress until it ends; exit 1 unless it succeeded."""
    with client(ctx) as ts:
        _follow(ts, job_id, output)


def _follow(ts, job_id: str, output: Output, job: job_pb2.Job | None = None) -> None:
    """Watch until terminal; print the outcome; exit non-zero unless it succeeded. `job`
    (fetched when not given) picks the display: a search's trials, or the epochs."""
    if output is Output.json:
        final = ts.wait(job_id)
        render.print_messages(None, final)
    else:
        console = render.stdout()
        job = job if job is not None else ts.get_job(job_id)
        with progress_for(console, job) as progress:
            final = ts.wait(job_id, on_event=progress.on_event)
        print_outcome(console, final)
    if final.state != job_pb2.JOB_STATE_SUCCEEDED:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def cancel(ctx: typer.Context, job_id: JobId, output: OutputOption = Output.table) -> None:
    """Cancel a queued or running job."""
    with client(ctx) as ts:
        found = ts.cancel(job_id)
    if output is Output.json:
        render.print_messages(None, found)
        return
    state = render.job_state_name(found.state)
    what = "cancelled" if state == "cancelled" else f"cancellation requested ({state})"
    render.stdout().print(f"job {found.id}: {what}", highlight=False)


# -- deployments ----------------------------------------------------------------------------

@app.command()
def deploy(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="MODEL[:VERSION|@ALIAS]",
                                       autocompletion=model_names,
                                       help="Model to serve: a version, the version an alias "
                                            "names now, or (neither) the latest.")],
    name: Annotated[str | None, typer.Option(
        "--name", help="Endpoint name (default: the model's name).")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Return once recorded, "
                                                            "before the model is loaded.")
                       ] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for READY.")
                       ] = 300.0,
    max_batch_size: Annotated[int, typer.Option(
        "--max-batch-size", help="Dynamic batching: concurrent requests run as one forward "
                                 "pass of up to this many instances (0 or 1: off).")] = 0,
    batch_wait_ms: Annotated[float | None, typer.Option(
        "--batch-wait-ms", help="How long a batch waits for more requests (default 2).")
                             ] = None,
    output: OutputOption = Output.table,
) -> None:
    """Serve a model version at an inference endpoint (creates or re-points it)."""
    model = parse_ref(ref)
    batching = {"max_batch_size": max_batch_size, "batch_wait_ms": batch_wait_ms,
                "alias": model.alias}
    with client(ctx) as ts:
        if output is Output.table and not no_wait:
            with render.stdout().status(f"deploying {ref} …"):
                dep = ts.deploy(model.name, model.version, name=name, wait=True,
                                timeout=timeout, **batching)
        else:
            dep = ts.deploy(model.name, model.version, name=name, wait=not no_wait,
                            timeout=timeout, **batching)
    if output is Output.json:
        render.print_messages(None, dep)
        return
    state = render.deployment_state_name(dep.state)
    render.stdout().print(f"endpoint [bold]{dep.name}[/bold] → "
                          f"{render.model_ref(dep.model_name, dep.model_version)}: "
                          f"{state.upper()}", highlight=False)
    render.stdout().print(f"  REST {dep.rest_url}\n  gRPC {dep.grpc_target}", highlight=False)


@app.command()
def undeploy(ctx: typer.Context, name: Endpoint,
             output: OutputOption = Output.table) -> None:
    """Remove an inference endpoint."""
    with client(ctx) as ts:
        dep = ts.undeploy(name)
    if output is Output.json:
        render.print_messages(None, dep)
    else:
        render.stdout().print(f"endpoint {dep.name or name} removed", highlight=False)


@app.command()
def deployments(ctx: typer.Context, output: OutputOption = Output.table) -> None:
    """List inference endpoints."""
    with client(ctx) as ts:
        found = ts.list_deployments()
    render.show_list("deployments", found, output, render.deployments_table, "no deployments")


@app.command()
def deployment(ctx: typer.Context, name: Endpoint,
               output: OutputOption = Output.table) -> None:
    """Show one inference endpoint."""
    with client(ctx) as ts:
        dep = ts.get_deployment(name)
    render.show_one(dep, output, render.deployment_detail)


# -- inference ------------------------------------------------------------------------------

@app.command()
def predict(
    ctx: typer.Context,
    name: Endpoint,
    input: Annotated[str | None, typer.Option(
        "--input", "-i", metavar="FILE|JSON",
        help="Instances: a .npy/.csv/.json file, or inline JSON (a list of instances or an "
             "OIP v2 request).")] = None,
    text: Annotated[list[str] | None, typer.Option(
        "--text", "-t", metavar="PROMPT",
        help="A prompt for a language model; repeat for a batch.")] = None,
    num_samples: Annotated[int | None, typer.Option(
        "--num-samples", "-n", help="Generate this many samples (GAN, VAE).")] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", "-p", metavar="KEY=VALUE",
        help="A request parameter, e.g. seed=3 or max_new_tokens=50; repeatable.")] = None,
    http: Annotated[str | None, typer.Option(
        "--http", envvar="TRAINSERVE_HTTP", metavar="HOST:PORT",
        help="Inference REST address (default: the endpoint's, from the job API).")] = None,
    token: Annotated[str | None, typer.Option(
        "--token", envvar="TRAINSERVE_INFERENCE_TOKEN", show_envvar=True,
        help="Bearer token for endpoints that require one (`trainserve token create`).")
    ] = None,
    output: OutputOption = Output.table,
) -> None:
    """Query an endpoint over the Open Inference Protocol (REST)."""
    from trainserve.cli.inputs import parse_params, samples_request
    from trainserve.client import outputs_to_numpy
    if sum(x is not None for x in (input, text or None, num_samples)) != 1:
        raise errors.InvalidArgument("give one of --input, --text or --num-samples")
    params = parse_params(param or [])
    with client(ctx) as ts:
        if token:
            ts.inference_token = token
        base = http or ts.get_deployment(name).rest_url
        request = (samples_request(num_samples) if num_samples is not None
                   else _predict_request(ts, name, base, input, text))
        if params:
            request = {**request, "parameters": {**request.get("parameters", {}), **params}}
        response = ts.infer(name, request, base)
    if output is Output.json:
        render.print_json(response)
    else:
        render.stdout().print(render.predictions_table(outputs_to_numpy(response)))


def _predict_request(ts, name: str, base: str, input: str | None, text: list[str] | None):
    """The OIP request of `--input` (instances shaped to the signature, or a whole request)
    or `--text` (prompts)."""
    from trainserve.cli.inputs import fit_to_signature, read_input, text_request
    from trainserve.client import infer_request
    if text:
        return text_request(text, ts.model_metadata(name, base))
    kind, value = read_input(input)
    if kind == "instances":
        arr, input_name, datatype = fit_to_signature(value, ts.model_metadata(name, base))
        value = infer_request(arr, input_name, datatype)
    return value
