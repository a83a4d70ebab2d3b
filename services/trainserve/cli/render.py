"""How the CLI shows jobs, models, deployments and the stack: rich tables (`-o table`) or the
proto3 JSON of the messages (`-o json`, .proto field names, every field)."""
from __future__ import annotations

import enum
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from google.protobuf import json_format
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from trainserve.client.messages import job_state_name
from trainserve.core.metrics import search_metric
from trainserve.core.pb import deployment_pb2, job_pb2

STATE_STYLE = {"queued": "cyan", "running": "yellow", "succeeded": "green", "failed": "red",
               "cancelled": "magenta", "pending": "yellow", "ready": "green",
               "stopped": "dim", "not ready": "yellow"}
TRIAL_STATE_STYLE = {"running": "yellow", "finished": "green", "stopped_early": "blue",
                     "failed": "red", "cancelled": "magenta"}
# The one metric a list of jobs shows, first found wins: test beats validation beats training.
HEADLINE_METRICS = ("test_accuracy", "test_r2", "test_loss", "val_accuracy", "val_r2",
                    "val_loss", "train_accuracy", "train_loss")


class Output(str, enum.Enum):
    table = "table"
    json = "json"


def stdout() -> Console:
    # Made per call: CliRunner swaps sys.stdout between invocations.
    return Console(file=sys.stdout, highlight=False, soft_wrap=False)


def stderr() -> Console:
    return Console(file=sys.stderr, highlight=False)


def print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False) + "\n")


def to_json(message, **kwargs) -> dict[str, Any]:
    """proto3 JSON of a message with the .proto field names (so a job's spec can be fed back
    to `submit`) and every field, set or not."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True, **kwargs)


def print_messages(key: str | None, messages: Sequence | Any) -> None:
    """`-o json`: one message as its JSON, or a list wrapped as {key: [...]} like the
    List* responses."""
    if key is None:
        print_json(to_json(messages))
    else:
        print_json({key: [to_json(m) for m in messages]})


def show_one(message, output: Output, detail: Callable[[Any], list]) -> None:
    """A read command's answer for one message: its JSON, or the parts `detail` renders."""
    if output is Output.json:
        print_messages(None, message)
        return
    for part in detail(message):
        emit(part)


def emit(part) -> None:
    """Print `part` on stdout, never cutting an identifier: a table whose uncut columns need
    more than the terminal's width is printed at the width it needs (the terminal wraps the
    lines); into a pipe or a file, at its full width."""
    console = stdout()
    limit = output_width(console)
    measured = Measurement.get(console, console.options.update_width(10_000), part)
    width = measured.maximum if limit is None else max(limit, measured.minimum)
    if width != console.width:  # print(width=) cannot widen a console: make one as wide
        console = Console(file=sys.stdout, highlight=False, soft_wrap=False, width=width)
    console.print(part)


def show_list(key: str, messages: Sequence, output: Output, table: Callable[[Sequence], Any],
              empty: str) -> None:
    """A list command's answer: {key: [...]} as JSON, `empty` when there is nothing, or the
    `table` of the messages."""
    if output is Output.json:
        print_messages(key, messages)
    elif not messages:
        stdout().print(empty)
    else:
        emit(table(messages))


# -- tables that fit the terminal -----------------------------------------------------------

@dataclass(frozen=True)
class Col:
    """A column of a list table. `drop` 0: never dropped nor cut (identifiers, states); the
    others are dropped on a narrow terminal, highest `drop` first (as `kubectl get` does).
    `wrap`: the cells wrap onto more lines instead of being dropped while they can."""
    header: str
    drop: int = 0
    wrap: bool = False
    justify: str = "left"


# A column that wraps is dropped rather than squeezed below this (a word a line is unreadable).
WRAP_MIN_WIDTH = 24


def output_width(console: Console) -> int | None:
    """The width tables must fit: $COLUMNS, else the terminal's; None (no limit) when the
    output is a pipe or a file, so `| grep` sees every column."""
    if os.environ.get("COLUMNS", "").isdigit() or console.is_terminal:
        return console.width
    return None


def min_width(console: Console, renderable) -> int:
    """The fewest columns `renderable` takes without cutting a cell that may not wrap."""
    options = console.options.update_width(10_000)
    return Measurement.get(console, options, renderable).minimum


def fitted_table(cols: Sequence[Col], rows: Sequence[Sequence], width: int | None = None,
                 **table_kwargs) -> Table:
    """A table of `rows` (one cell per col) within `width` (default: `output_width`):
    columns are dropped, highest `drop` first, until the rest fit; identifiers stay whole."""
    console = stdout()
    width = output_width(console) if width is None else width
    keep = list(range(len(cols)))
    while True:
        table = _table([cols[i] for i in keep], [[row[i] for i in keep] for row in rows],
                       **table_kwargs)
        droppable = [i for i in keep if cols[i].drop]
        if width is None or not droppable or min_width(console, table) <= width:
            return table
        keep.remove(max(droppable, key=lambda i: (cols[i].drop, i)))


def _table(cols: Sequence[Col], rows: Sequence[Sequence], **table_kwargs) -> Table:
    table = Table(show_edge=False, **table_kwargs)
    for col in cols:
        table.add_column(col.header, no_wrap=not col.wrap, justify=col.justify,
                         overflow="fold" if col.wrap else "ellipsis",
                         min_width=WRAP_MIN_WIDTH if col.wrap else None)
    for row in rows:
        table.add_row(*row)
    return table


# -- small formatters ---------------------------------------------------------------------

def deployment_state_name(state: int) -> str:
    return deployment_pb2.DeploymentState.Name(state).removeprefix("DEPLOYMENT_STATE_").lower()


def styled_state(name: str) -> Text:
    return Text(name.upper(), style=STATE_STYLE.get(name, ""))


def timestamp(ts) -> str:
    """A proto Timestamp as local time, '' when unset."""
    if not ts.seconds and not ts.nanos:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts.seconds))


def age(ts, now: float | None = None) -> str:
    if not ts.seconds:
        return ""
    return duration((now or time.time()) - ts.seconds) + " ago"


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def number(value: float) -> str:
    return f"{value:.4g}"


def headline_metric(metrics) -> str:
    for key in HEADLINE_METRICS:
        if key in metrics:
            return f"{key} {number(metrics[key])}"
    return ""


def model_ref(name: str, version: int) -> str:
    return f"{name}:{version}" if name else ""


def architecture(spec) -> str:
    return spec.model.WhichOneof("arch") or ""


def kv_table(rows: Iterable[tuple[str, Any]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        if value not in ("", None):
            table.add_row(key, value if isinstance(value, Text) else str(value))
    return table


def metrics_table(metrics, title: str = "metrics") -> Table:
    table = Table(title=title, title_justify="left", show_edge=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(metrics):
        table.add_row(key, number(metrics[key]))
    return table


# -- jobs ---------------------------------------------------------------------------------

JOB_COLUMNS = (Col("JOB"), Col("NAME"), Col("STATE"), Col("EPOCH", 4), Col("METRIC", 3),
               Col("MODEL", 5), Col("CREATED", 6), Col("MESSAGE", 2, wrap=True))


def jobs_table(jobs: Sequence[job_pb2.Job], width: int | None = None) -> Table:
    now = time.time()
    rows = [(job.id, job.spec.name, styled_state(job_state_name(job.state)), job_epoch(job),
             headline_metric(job.metrics), model_ref(job.model_name, job.model_version),
             age(job.created_at, now), job.message) for job in jobs]
    return fitted_table(JOB_COLUMNS, rows, width)


def job_epoch(job: job_pb2.Job) -> str:
    """"3/20"; '' for a search (its epochs are its trials') or before the first epoch."""
    if is_search(job) or not job.total_epochs:
        return ""
    return f"{job.epoch}/{job.total_epochs}"


def job_detail(job: job_pb2.Job, curves: job_pb2.JobCurves | None = None) -> list:
    """The job's fields, its final (test) metrics, the metrics of its last epoch (training
    and validation, from `curves`) and a search's trials."""
    spec = job.spec
    took = ""
    if job.started_at.seconds and job.finished_at.seconds:
        took = duration(job.finished_at.seconds - job.started_at.seconds)
    rows = [
        ("job", job.id), ("name", spec.name), ("state", styled_state(job_state_name(job.state))),
        ("message", job.message),
        ("dataset", spec.dataset.name), ("architecture", architecture(spec)),
        ("optimizer", spec.optimizer.name), ("workers", spec.scaling.num_workers or ""),
        ("epoch", job_epoch(job)),
        ("created", timestamp(job.created_at)), ("started", timestamp(job.started_at)),
        ("finished", timestamp(job.finished_at)), ("took", took),
        ("attempts", job.attempts if job.attempts > 1 else ""),
        ("cancel requested", "yes" if job.cancel_requested else ""),
        ("model", model_ref(job.model_name, job.model_version)),
        ("deployment", job.deployment), ("request id", job.request_id),
    ]
    if is_search(job):
        at = [key for key, _ in rows].index("epoch")
        rows[at:at] = search_rows(job)
    out: list = [kv_table(rows)]
    if job.metrics:
        out.append(metrics_table(job.metrics, title="final metrics"))
    epoch, last = last_epoch(job, curves)
    if last:
        out.append(metrics_table(last, title=f"last epoch ({epoch})"))
    if job.trials:
        metric, mode = search_metric(job.spec)
        out.append(trials_table(job.trials, metric, mode, job.best_trial, title="trials"))
    return out


def last_epoch(job: job_pb2.Job, curves: job_pb2.JobCurves | None
               ) -> tuple[int, dict[str, float]]:
    """The last epoch reported and each metric's value there (a search's: its best trial's);
    (0, {}) without curves."""
    if curves is None:
        return 0, {}
    by_name = curves.metrics
    if is_search(job) and curves.best_trial in curves.trials:
        by_name = curves.trials[curves.best_trial].metrics
    ends = {name: (c.epochs[-1], c.values[-1]) for name, c in by_name.items() if c.epochs}
    epoch = max((e for e, _ in ends.values()), default=0)
    return epoch, {name: v for name, (e, v) in ends.items() if e == epoch}


# -- searches -------------------------------------------------------------------------------

def is_search(job: job_pb2.Job) -> bool:
    return job.spec.HasField("search")


def search_rows(job: job_pb2.Job) -> list[tuple[str, Any]]:
    s = job.spec.search
    metric, mode = search_metric(job.spec)
    fields = ", ".join(sorted(s.space))
    best = next((t for t in job.trials if t.id == job.best_trial), None)
    return [("search", f"{s.algorithm or 'random'} over {fields}, scheduler "
                       f"{s.scheduler.name or 'fifo'}"),
            ("ranked by", f"{metric} ({mode})"), ("trials", trial_counts(job.trials)),
            ("best trial", trial_summary(best, metric) if best else "")]


def trial_metric(trial: job_pb2.Trial, metric: str) -> float | None:
    """The trial's latest `metric`: from its metrics, else its curve's last point with it."""
    if metric in trial.metrics:
        return trial.metrics[metric]
    return next((p.metrics[metric] for p in reversed(trial.curve) if metric in p.metrics), None)


def sort_trials(trials: Iterable[job_pb2.Trial], metric: str, mode: str) -> list:
    """Best first by `metric` (`mode` "max" or "min"); trials without it last, in order."""
    trials = list(trials)
    scored = [(v, i) for i, t in enumerate(trials)
              if (v := trial_metric(t, metric)) is not None and v == v]
    sign = -1 if mode == "max" else 1
    ranked = [i for _, i in sorted(scored, key=lambda vi: (sign * vi[0], vi[1]))]
    rest = sorted(set(range(len(trials))) - set(ranked))
    return [trials[i] for i in ranked + rest]


def config_value(text: str) -> str:
    """A sampled value (JSON) for a table cell: floats to 4 digits, the rest as JSON."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, float):
        return number(value)
    return value if isinstance(value, str) else json.dumps(value)


def config_text(config) -> str:
    return "  ".join(f"{path}={config_value(config[path])}" for path in sorted(config))


def trial_state(state: str) -> Text:
    return Text(state.replace("_", " ").upper(), style=TRIAL_STATE_STYLE.get(state, ""))


def trial_counts(trials: Iterable[job_pb2.Trial]) -> str:
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state] = counts.get(t.state, 0) + 1
    parts = ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in counts.items())
    total = sum(counts.values())
    return f"{total} ({parts})" if total else "0"


def trial_summary(trial: job_pb2.Trial, metric: str) -> str:
    """'t-3: val_accuracy 0.95  optimizer.lr=0.01'."""
    value = trial_metric(trial, metric)
    scored = f"{metric} {number(value)}" if value is not None else f"no {metric}"
    return f"{trial.id}: {scored}  {config_text(trial.config)}".rstrip()


def trials_table(trials: Sequence[job_pb2.Trial], metric: str, mode: str, best: str = "",
                 title: str | None = None) -> Table:
    """A leaderboard: one row per trial, best first; the `best` trial's id marked '*'."""
    paths = sorted({path for t in trials for path in t.config})
    messages = any(t.message for t in trials)
    table = Table(title=title, title_justify="left", show_edge=False,
                  caption="* best trial" if best else None, caption_justify="left")
    table.add_column("TRIAL", no_wrap=True)
    table.add_column("STATE", no_wrap=True)
    table.add_column("EPOCHS", justify="right")
    table.add_column(f"{metric} ({mode})", justify="right", no_wrap=True)
    for path in paths:
        table.add_column(path, no_wrap=True)
    if messages:
        table.add_column("MESSAGE", overflow="ellipsis")
    for t in sort_trials(trials, metric, mode):
        value = trial_metric(t, metric)
        cells = [t.id + (" *" if t.id == best else ""), trial_state(t.state),
                 str(t.epochs or ""), "" if value is None else number(value),
                 *(config_value(t.config[p]) if p in t.config else "" for p in paths)]
        table.add_row(*cells, *([t.message] if messages else []),
                      style="bold" if t.id == best else None)
    return table


# -- models -------------------------------------------------------------------------------

MODEL_COLUMNS = (Col("MODEL"), Col("VERSION", justify="right"), Col("TASK", 4),
                 Col("ARCHITECTURE", 3), Col("METRIC", 2), Col("JOB", 1), Col("CREATED", 5))


def models_table(models, width: int | None = None) -> Table:
    now = time.time()
    rows = [(mv.name, str(mv.version), mv.task, architecture(mv.spec),
             headline_metric(mv.metrics), mv.job_id, age(mv.created_at, now)) for mv in models]
    return fitted_table(MODEL_COLUMNS, rows, width)


def tensor_specs(specs) -> str:
    """`name DATATYPE [shape]` each; an optional output (`attention`) says it comes on request."""
    return "; ".join(f"{t.name} {t.datatype} {list(t.shape)}"
                     + (" (on request)" if getattr(t, "optional", False) else "") for t in specs)


def model_detail(mv) -> list:
    classes = ", ".join(mv.class_names[:12]) + (" …" if len(mv.class_names) > 12 else "")
    rows = [
        ("model", model_ref(mv.name, mv.version)), ("task", mv.task),
        ("architecture", architecture(mv.spec)), ("dataset", mv.spec.dataset.name),
        ("classes", classes), ("inputs", tensor_specs(mv.inputs)),
        ("outputs", tensor_specs(mv.outputs)),
        ("preprocessing", mv.preprocessing.kind), ("job", mv.job_id),
        *dataset_lineage(mv), ("seed", mv.seed),
        ("created", timestamp(mv.created_at)), ("artifact", mv.artifact_uri),
    ]
    out: list = [kv_table(rows)]
    if mv.metrics:
        out.append(metrics_table(mv.metrics))
    return out


def dataset_lineage(mv) -> list[tuple[str, str]]:
    """The two hashes of a model's data, each labelled for what it hashes: an uploaded file's
    SHA-256 (pinned in the spec) and the hash of the arrays it was trained on (after
    loading and splitting: never equal to the file's)."""
    rows = []
    if mv.spec.dataset.uploaded.sha256:
        rows.append(("dataset file sha256", mv.spec.dataset.uploaded.sha256))
    if mv.dataset_hash:
        rows.append(("training arrays sha256", f"{mv.dataset_hash} (the loaded x and y "
                                               "arrays, not a file)"))
    return rows


# -- deployments --------------------------------------------------------------------------

DEPLOYMENT_COLUMNS = (Col("ENDPOINT"), Col("MODEL"), Col("STATE"), Col("REST", 3),
                      Col("GRPC", 4), Col("UPDATED", 5), Col("MESSAGE", 2, wrap=True))


def deployments_table(deployments, width: int | None = None) -> Table:
    now = time.time()
    rows = [(dep.name, model_ref(dep.model_name, dep.model_version),
             styled_state(deployment_state_name(dep.state)), dep.rest_url, dep.grpc_target,
             age(dep.updated_at if dep.updated_at.seconds else dep.created_at, now),
             dep.message) for dep in deployments]
    return fitted_table(DEPLOYMENT_COLUMNS, rows, width)


def deployment_detail(dep) -> list:
    rows = [
        ("endpoint", dep.name), ("model", model_ref(dep.model_name, dep.model_version)),
        ("state", styled_state(deployment_state_name(dep.state))), ("message", dep.message),
        ("REST", dep.rest_url), ("gRPC", dep.grpc_target),
        ("created", timestamp(dep.created_at)), ("updated", timestamp(dep.updated_at)),
    ]
    if dep.canary_version:
        rows[2:2] = [("canary", f"{model_ref(dep.model_name, dep.canary_version)} takes "
                                f"{dep.canary_percent}% once loaded"),
                     ("canary state", styled_state(deployment_state_name(dep.canary_state)))]
    if dep.options.max_batch_size > 1:
        wait = dep.options.batch_wait_ms if dep.options.HasField("batch_wait_ms") else 2.0
        rows.append(("batching", f"up to {dep.options.max_batch_size} instances, "
                                 f"waiting {wait:g} ms"))
    return [kv_table(rows)]


# -- predictions --------------------------------------------------------------------------

def predictions_table(outputs: dict) -> Table:
    """One row per instance, one column per output (vectors shortened)."""
    table = Table(show_edge=False)
    table.add_column("#", justify="right")
    for name in outputs:
        table.add_column(name)
    n = min((len(arr) for arr in outputs.values()), default=0)
    for i in range(n):
        table.add_row(str(i), *(_cell(arr[i]) for arr in outputs.values()))
    return table


def _cell(value) -> str:
    import numpy as np
    arr = np.asarray(value)
    if arr.ndim == 0:
        item = arr.item()
        if isinstance(item, bytes):
            return item.decode("utf-8", "replace")
        return number(item) if isinstance(item, float) else str(item)
    flat = arr.reshape(-1)
    text = " ".join(_cell(x) for x in flat[:8])
    return text + (" …" if flat.size > 8 else "")


# -- the local stack ----------------------------------------------------------------------

def stack_table(statuses, state_dir=None) -> Table:
    table = Table(show_edge=False, title=f"local stack in {state_dir}" if state_dir else None,
                  title_justify="left")
    for column in ("COMPONENT", "STATE", "PID", "ADDRESS", "LOG"):
        table.add_column(column, no_wrap=column != "ADDRESS")
    for st in statuses:
        log = st.log.relative_to(state_dir) if state_dir else st.log
        table.add_row(st.name, styled_state(st.state), str(st.pid or ""), st.address, str(log))
    return table


def stack_json(statuses) -> list[dict]:
    return [{"name": st.name, "state": st.state, "running": st.running, "ready": st.ready,
             "pid": st.pid, "address": st.address, "log": str(st.log)} for st in statuses]
