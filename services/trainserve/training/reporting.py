"""Progress and cancellation: the `Reporter` protocol and its local implementations.

The training loop only talks to a `Reporter`. In a deployment the worker runtime builds one
that writes into the store (`trainserve.runtime.reporting.make_reporter`); tests and
notebooks use `ListReporter`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Protocol, runtime_checkable

from trainserve.training.diagnostics import split_name


@runtime_checkable
class Reporter(Protocol):
    """Receives a job's progress and says whether it should stop. `epoch` is called on every
    rank (with the same metrics), the rest on rank 0 only."""

    def epoch(self, epoch: int, total_epochs: int, metrics: Mapping[str, float],
              samples_per_second: float, elapsed_seconds: float) -> None:
        """Epoch `epoch` (1-based) of `total_epochs` finished; `metrics` are averaged over all
        ranks; `elapsed_seconds` counts from the start of this attempt's training."""

    def log(self, text: str, level: str = "info") -> None:
        """A human-readable line; `level` is "info", "warning" or "error"."""

    def cancel_requested(self) -> bool:
        """True once the job should stop; polled about every 0.5 s, so it must be cheap."""


class NullReporter:
    """Reports nothing and never cancels."""

    def epoch(self, epoch, total_epochs, metrics, samples_per_second, elapsed_seconds) -> None:
        pass

    def log(self, text: str, level: str = "info") -> None:
        pass

    def cancel_requested(self) -> bool:
        return False


@dataclass
class EpochEvent:
    epoch: int
    total_epochs: int
    metrics: dict[str, float]
    samples_per_second: float
    elapsed_seconds: float


@dataclass
class ListReporter:
    """Keeps every event in memory. Cancels when `cancel` is set or `cancel_when(self)` is true
    (e.g. `lambda r: len(r.epochs) >= 2` to cancel after the second epoch)."""
    epochs: list[EpochEvent] = field(default_factory=list)
    logs: list[tuple[str, str]] = field(default_factory=list)
    cancel: bool = False
    cancel_when: Callable[["ListReporter"], bool] | None = None
    cancel_checks: int = 0

    def epoch(self, epoch, total_epochs, metrics, samples_per_second, elapsed_seconds) -> None:
        self.epochs.append(EpochEvent(epoch, total_epochs, dict(metrics), samples_per_second,
                                      elapsed_seconds))

    def log(self, text: str, level: str = "info") -> None:
        self.logs.append((level, text))

    def cancel_requested(self) -> bool:
        self.cancel_checks += 1
        return self.cancel or bool(self.cancel_when and self.cancel_when(self))


class CancelFileReporter:
    """Wraps a reporter so that a flag file also requests cancellation: `run_job` creates it
    when its caller cancels, which reaches the workers whatever reporter they use."""

    def __init__(self, inner: Reporter, flag: Path):
        self.inner, self.flag = inner, Path(flag)

    def epoch(self, *args, **kwargs) -> None:
        self.inner.epoch(*args, **kwargs)

    def log(self, text: str, level: str = "info") -> None:
        self.inner.log(text, level=level)

    def cancel_requested(self) -> bool:
        return self.flag.exists() or self.inner.cancel_requested()


class LogLinesReporter:
    """Wraps a reporter so that its log lines and a line per epoch also reach the job's
    worker log (`write(text, source, level)`, e.g. `store.logs.LogSink.write`): what
    `trainserve logs` shows next to the worker's own output."""

    def __init__(self, inner: Reporter, write: Callable[[str, str, str], None]):
        self.inner, self.write = inner, write

    def epoch(self, epoch, total_epochs, metrics, samples_per_second, elapsed_seconds) -> None:
        self.inner.epoch(epoch, total_epochs, metrics, samples_per_second, elapsed_seconds)
        self.write(epoch_line(epoch, total_epochs, metrics, elapsed_seconds), "progress", "info")

    def log(self, text: str, level: str = "info") -> None:
        self.inner.log(text, level=level)
        self.write(text, "progress", level)

    def cancel_requested(self) -> bool:
        return self.inner.cancel_requested()


def epoch_line(epoch: int, total_epochs: int, metrics: Mapping[str, float],
               elapsed_seconds: float) -> str:
    """"epoch 3/10: train_loss=0.4127 val_loss=0.5 (2.1 s)", metrics by name. Per-layer
    statistics (`training.diagnostics`, up to 64 of them) are counted, not listed: the
    curves show them."""
    shown = {k: v for k, v in metrics.items() if split_name(k) is None}
    values = " ".join(f"{k}={float(v):.4g}" for k, v in sorted(shown.items()))
    layers = len(metrics) - len(shown)
    more = f" (+{layers} per-layer statistics)" if layers else ""
    return f"epoch {epoch}/{total_epochs}: {values}{more} ({elapsed_seconds:.1f} s)"
