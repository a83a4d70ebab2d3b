"""What `Client.watch` yields: a job's events as objects a person can read. `print(event)`
gives one line ("12:03:04  epoch 3/20  train_loss 0.3123  val_loss 0.3501  val_accuracy 0.9");
`kind`, `metrics`, `epoch_number`, `state_name` and `text` are plain Python values; `raw` is the
`trainserve.v1.JobEvent` message, whose fields stay readable on the event itself
(`event.epoch.total_epochs`, `event.HasField("epoch")`), so code written for the messages
keeps working."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

from trainserve.client.messages import job_state_name
from trainserve.core.pb import job_pb2

# Shown first, in this order; the other metrics follow by name.
LEADING_METRICS = ("train_loss", "val_loss")


class WatchEvent:
    """One event of a job's history or progress; see the module's docstring."""

    __slots__ = ("raw",)

    def __init__(self, raw: job_pb2.JobEvent):
        self.raw = raw

    def __getattr__(self, name: str) -> Any:
        # Only for names the class does not define: the message's fields and methods.
        return getattr(self.raw, name)

    @property
    def kind(self) -> str:
        """"state", "epoch", "log" or "trial"."""
        return self.raw.WhichOneof("event") or ""

    @property
    def when(self) -> dt.datetime | None:
        """When it happened (local time), None if the server gave no time."""
        ts = self.raw.time
        if not ts.seconds and not ts.nanos:
            return None
        return dt.datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9)

    @property
    def metrics(self) -> dict[str, float]:
        """An epoch's metrics (a trial event: the trial's latest); {} for the other kinds."""
        if self.kind == "epoch":
            return dict(self.raw.epoch.metrics)
        if self.kind == "trial":
            return dict(self.raw.trial.trial.metrics)
        return {}

    @property
    def epoch_number(self) -> int | None:
        """The epoch an epoch event reports (1, 2, ...); None for the other kinds."""
        return self.raw.epoch.epoch if self.kind == "epoch" else None

    @property
    def total_epochs(self) -> int | None:
        return self.raw.epoch.total_epochs if self.kind == "epoch" else None

    @property
    def state_name(self) -> str | None:
        """"queued", "running", "succeeded", ... for a state change; None otherwise."""
        return job_state_name(self.raw.state.state) if self.kind == "state" else None

    @property
    def text(self) -> str:
        """A state change's message, a log line's text, a trial event's kind; '' otherwise."""
        if self.kind == "state":
            return self.raw.state.message
        if self.kind == "log":
            return self.raw.log.text
        return self.raw.trial.kind if self.kind == "trial" else ""

    def to_dict(self) -> dict[str, Any]:
        """A flat row (one column per metric) for a table, e.g. `pandas.DataFrame(rows)`."""
        return {"job_id": self.raw.job_id, "event_id": self.raw.event_id, "time": self.when,
                "kind": self.kind, "epoch": self.epoch_number, "total_epochs": self.total_epochs,
                "state": self.state_name, "text": self.text, **self.metrics}

    def __str__(self) -> str:
        when = self.when
        stamp = f"{when:%H:%M:%S}  " if when else ""
        return stamp + _DESCRIBE.get(self.kind, lambda e: "(empty event)")(self)

    def __repr__(self) -> str:
        return f"<WatchEvent {self}>"


def metrics_text(metrics: dict[str, float]) -> str:
    """"train_loss 0.3123  val_loss 0.3501  val_accuracy 0.9": losses first, then by name."""
    names = sorted(metrics, key=lambda k: (k not in LEADING_METRICS,
                                           LEADING_METRICS.index(k) if k in LEADING_METRICS
                                           else 0, k))
    return "  ".join(f"{k} {metrics[k]:.4g}" for k in names)


def _epoch(event: WatchEvent) -> str:
    e = event.raw.epoch
    of = f"/{e.total_epochs}" if e.total_epochs else ""
    return f"epoch {e.epoch}{of}  {metrics_text(event.metrics)}".rstrip()


def _state(event: WatchEvent) -> str:
    name, message = event.state_name or "", event.text
    shown = f": {message}" if message and message.lower() != name else ""
    return f"{name.upper()}{shown}"


def _log(event: WatchEvent) -> str:
    return f"{event.raw.log.level.lower() or 'info'}: {event.text}"


def _trial(event: WatchEvent) -> str:
    trial = event.raw.trial.trial
    config = "  ".join(f"{path}={_value(trial.config[path])}" for path in sorted(trial.config))
    state = f" ({trial.state.replace('_', ' ')})" if event.text == "ended" else ""
    parts = [f"trial {trial.id} {event.text}{state}", metrics_text(event.metrics), config]
    return "  ".join(p for p in parts if p)


def _value(text: str) -> str:
    """A sampled value (JSON) as it reads best: 0.01, [8, 8], relu."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, str) else json.dumps(value)


_DESCRIBE = {"epoch": _epoch, "state": _state, "log": _log, "trial": _trial}
