"""`trainserve up / down / status`: the one-machine stack (trainserve.local)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trainserve.core import errors
from trainserve.cli import render
from trainserve.cli.app import OutputOption, app
from trainserve.cli.render import Output
from trainserve.config import Config, default_state_dir, recorded_config
from trainserve.local import ALL_COMPONENTS, LocalStack

StateDir = Annotated[Path | None, typer.Option(
    "--state-dir", envvar="TRAINSERVE_STATE_DIR", file_okay=False,
    help="Logs, pid files, Redis data and models (default: ~/.trainserve).")]


def _port(flag: str, what: str):
    return typer.Option(flag, min=1, max=65535, help=f"{what} port.", show_default=False)


@app.command()
def up(
    state_dir: StateDir = None,
    api_port: Annotated[int | None, _port("--api-port", "Job API (gRPC)")] = None,
    redis_port: Annotated[int | None, _port("--redis-port", "Redis")] = None,
    ray_port: Annotated[int | None, _port("--ray-port", "Ray GCS")] = None,
    dashboard_port: Annotated[int | None, _port("--dashboard-port", "Ray dashboard")] = None,
    serve_http_port: Annotated[int | None, _port("--serve-http-port",
                                                 "Inference REST (Serve HTTP)")] = None,
    serve_grpc_port: Annotated[int | None, _port("--serve-grpc-port",
                                                 "Inference gRPC (Serve gRPC)")] = None,
    metrics_port: Annotated[int | None, _port("--metrics-port", "Job API metrics")] = None,
    dispatcher_metrics_port: Annotated[int | None, _port("--dispatcher-metrics-port",
                                                         "Dispatcher metrics")] = None,
    num_cpus: Annotated[int | None, typer.Option("--num-cpus", min=1,
                                                 help="CPUs Ray offers (default: all).")] = None,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", help="Seconds to wait for each component (default: 180).")] = None,
    api_auth: Annotated[bool | None, typer.Option(
        "--api-auth/--no-api-auth",
        help="Require bearer tokens on the job API; this machine's CLI uses the admin token "
             "in <state-dir>/run/admin-token (default: on). Off: development mode, loopback "
             "only, every caller a plain user.", show_default=False)] = None,
    redis_maxmemory: Annotated[str | None, typer.Option(
        "--redis-maxmemory", metavar="SIZE",
        help="Redis's memory cap, e.g. 2gb (the default) or 512mb; at the cap writes are "
             "refused (noeviction), nothing is dropped.")] = None,
    user_max_queued: Annotated[int | None, typer.Option(
        "--user-max-queued", min=0,
        help="Jobs one user may have queued (default 100; 0: no limit).")] = None,
    user_max_streams: Annotated[int | None, typer.Option(
        "--user-max-streams", min=0,
        help="Open WatchJob/StreamLogs streams per user (default 16; 0: no limit).")] = None,
    user_max_jobs: Annotated[int | None, typer.Option(
        "--user-max-jobs", min=0,
        help="Running jobs per user (default 4; 0: no limit).")] = None,
    job_retention_s: Annotated[int | None, typer.Option(
        "--job-retention-s", min=0,
        help="Seconds a finished job's events and worker logs are kept (default 604800, "
             "7 days; 0: forever).")] = None,
    inference_auth: Annotated[bool | None, typer.Option(
        "--inference-auth/--no-inference-auth",
        help="Require bearer tokens (`trainserve token create`) on the inference endpoints "
             "(default: open).", show_default=False)] = None,
    serve_mode: Annotated[str | None, typer.Option(
        "--serve-mode", help="How Ray Serve runs: throughput (HAProxy in front; the default) "
                             "or default (Serve's own proxies).")] = None,
    serve_replicas: Annotated[int | None, typer.Option(
        "--serve-replicas", min=1, help="Inference replicas (the minimum when autoscaling; "
                                        "default 1).")] = None,
    serve_max_replicas: Annotated[int | None, typer.Option(
        "--serve-max-replicas", min=0,
        help="Autoscale inference replicas up to this many (default 0: fixed).")] = None,
    serve_target_ongoing: Annotated[float | None, typer.Option(
        "--serve-target-ongoing", min=0.001,
        help="Autoscaling target: requests in flight per replica (default 16).")] = None,
    serve_cpus: Annotated[float | None, typer.Option(
        "--serve-cpus", min=0, help="CPUs each inference replica reserves (default 0).")] = None,
    serve_gpus: Annotated[float | None, typer.Option(
        "--serve-gpus", min=0,
        help="GPUs each inference replica reserves, fractions share one (default 0).")] = None,
    with_prometheus: Annotated[bool | None, typer.Option(
        "--with-prometheus/--without-prometheus",
        help="Also run a local Prometheus (the `prometheus` binary) scraping the API, the "
             "dispatcher and Ray (default: off).", show_default=False)] = None,
    prometheus_port: Annotated[int | None, _port("--prometheus-port",
                                                 "Prometheus")] = None,
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", metavar="HOST:PORT",
        help="Use this running Ray cluster (its GCS address) instead of starting a Ray head; "
             "e.g. one of cluster/local_cluster.py.")] = None,
    ray_token_file: Annotated[Path | None, typer.Option(
        "--ray-token-file", dir_okay=False,
        help="That cluster's Ray auth token (default: ~/.ray/auth_token).")] = None,
) -> None:
    """Start redis, Ray, the job API and the dispatcher (with Ray Serve) on this machine."""
    overrides = dict(api_port=api_port, redis_port=redis_port, ray_gcs_port=ray_port,
                     ray_dashboard_port=dashboard_port, serve_http_port=serve_http_port,
                     serve_grpc_port=serve_grpc_port, api_metrics_port=metrics_port,
                     dispatcher_metrics_port=dispatcher_metrics_port, ray_num_cpus=num_cpus,
                     inference_auth=inference_auth, api_auth=api_auth, serve_mode=serve_mode,
                     redis_maxmemory=redis_maxmemory, user_max_queued=user_max_queued,
                     user_max_streams=user_max_streams, user_max_jobs=user_max_jobs,
                     job_retention_s=job_retention_s,
                     serve_replicas=serve_replicas, serve_max_replicas=serve_max_replicas,
                     serve_target_ongoing_requests=serve_target_ongoing,
                     serve_num_cpus=serve_cpus, serve_num_gpus=serve_gpus,
                     with_prometheus=with_prometheus, prometheus_port=prometheus_port,
                     ray_external_address=ray_address,
                     ray_token_file=str(ray_token_file.expanduser().absolute())
                     if ray_token_file else None)
    config = _config(state_dir, overrides)
    console = render.stdout()
    stack = LocalStack(config, on_event=lambda name, msg: console.print(
        f"  {name}: {msg}", style="dim", highlight=False))
    if all(stack.is_running(name) for name in stack.components):
        console.print(f"the stack in {config.state_dir} is already up", highlight=False)
    else:
        console.print(f"starting the local stack in {config.state_dir}", highlight=False)
        stack.up(timeout=timeout)
    console.print(render.stack_table(stack.status(), config.state_dir))
    ray = (f"Ray cluster {config.ray_address}" if config.external_ray
           else f"Ray dashboard {config.dashboard_url}")
    console.print(f"\njob API {config.api_address} · inference http://{config.serve_http}/v2 "
                  f"· {ray}"
                  + (f" · Prometheus {config.prometheus_url}" if config.with_prometheus else "")
                  + "\n"
                  "try: trainserve submit examples/xor_mlp.yaml --wait", highlight=False)


_PROMETHEUS_FIELDS = ("with_prometheus", "prometheus_port", "prometheus_scrape_interval_s")


def _config(state_dir: Path | None, overrides: dict) -> Config:
    """The config to start with: the recorded one while any component of the stack in
    `state_dir` runs (changing its ports then is an error), else defaults + env + flags."""
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
    # Prometheus can be added to (or its port chosen for) a running stack while it is down.
    if not stack.is_running("prometheus"):
        recorded = recorded.replace(**{k: getattr(wanted, k) for k in _PROMETHEUS_FIELDS})
    if wanted != recorded:
        raise errors.FailedPrecondition(
            f"the stack in {recorded.state_dir} is running ({', '.join(running)}) with other "
            "settings; run `trainserve down` first to change them")
    return recorded


@app.command()
def down(state_dir: StateDir = None) -> None:
    """Stop every component `up` started (and nothing else)."""
    console = render.stdout()
    stack = LocalStack.from_state_dir(state_dir, on_event=lambda name, msg: console.print(
        f"  {name}: {msg}", style="dim", highlight=False))
    stopped = stack.down()
    where = stack.config.state_dir
    console.print(f"stopped {', '.join(stopped)}" if stopped else f"nothing running in {where}",
                  highlight=False)


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
