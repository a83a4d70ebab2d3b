"""A job's downloadable files (jobs.artifacts: names, what gets written) and the capture of its
worker output (train.logcapture, reporting.LogLinesReporter), without servers: the log sink is
a list (the Redis stream behind it is covered by tests/integration/test_job_files.py)."""
from __future__ import annotations

import csv
import io
import json
import logging
import sys

import numpy as np
import pytest

from tests.unit.test_plots import assert_png, classification_arrays, epoch_events
from trainserve.core import errors
from trainserve.jobs import plots
from trainserve.jobs import artifacts
from trainserve.core.pb import job_pb2, spec_pb2
from trainserve.runtime import logcapture
from trainserve.runtime.context import JobContext
from trainserve.training.reporting import ListReporter, LogLinesReporter


@pytest.mark.parametrize("name", ["../metrics.json", "/etc/passwd", "plots/curves.png", "..",
                                  ".stamp", "a\x00.png", "..\\x.png", "x" * 300])
def test_artifact_names_that_could_be_paths_are_refused(name):
    with pytest.raises(errors.InvalidArgument) as exc:
        artifacts.check_name(name)
    assert exc.value.field == "name"


def test_empty_artifact_name_is_required():
    with pytest.raises(errors.InvalidArgument, match="name: required"):
        artifacts.check_name("")
    assert artifacts.check_name("curves.png") == "curves.png"


def test_a_succeeded_classifier_s_files(tmp_path):
    job = job_pb2.Job(id="j-1", spec=spec_pb2.JobSpec(name="bc"),
                      state=job_pb2.JOB_STATE_SUCCEEDED, metrics={"test_accuracy": 0.9})
    np.savez(tmp_path / "evaluation.npz", **classification_arrays(2))
    out = tmp_path / "out"
    out.mkdir()
    artifacts.write_files(job, epoch_events(4), tmp_path, out)
    assert sorted(p.name for p in out.iterdir()) == sorted([
        plots.TRAINING_CURVES, plots.CONFUSION, plots.ROC, plots.RELIABILITY, "metrics.json",
        "curves.csv"])
    for png in out.glob("*.png"):
        assert_png(png)
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["state"] == "succeeded" and doc["metrics"] == {"test_accuracy": 0.9}
    rows = list(csv.reader(io.StringIO((out / "curves.csv").read_text())))
    assert rows[0] == ["epoch", "lr", "train_accuracy", "train_loss", "val_accuracy", "val_loss"]
    assert [r[0] for r in rows[1:]] == ["1", "2", "3", "4"] and float(rows[1][3]) == 1.0


def test_a_search_shows_its_best_trial_s_evaluation(tmp_path):
    from tests.unit.test_plots import search_job
    job = search_job()
    (tmp_path / "trials" / "t-2").mkdir(parents=True)
    np.savez(tmp_path / "trials" / "t-2" / "evaluation.npz", **classification_arrays(3))
    out = tmp_path / "out"
    out.mkdir()
    artifacts.write_files(job, [], tmp_path, out)
    assert sorted(p.name for p in out.iterdir()) == sorted([
        plots.TRIAL_CURVES, plots.TRIAL_PARAMS, plots.CONFUSION, plots.RELIABILITY,
        "metrics.json"])
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["best_trial"] == "t-2" and doc["trials"]["t-3"]["state"] == "stopped_early"


def test_a_job_without_epochs_has_only_its_metrics(tmp_path):
    job = job_pb2.Job(id="j-2", state=job_pb2.JOB_STATE_QUEUED)
    artifacts.write_files(job, [], tmp_path, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


# -- worker output --------------------------------------------------------------------------

class ListSink:
    def __init__(self, redis_url, job_id, rank=0):
        self.rank, self.lines, self.closed = rank, [], False

    def write(self, text, source, level="info"):
        self.lines.append((self.rank, source, level, text))

    def close(self):
        self.closed = True


@pytest.fixture
def list_sink(monkeypatch):
    import trainserve.store.logs
    monkeypatch.setattr(trainserve.store.logs, "LogSink", ListSink)


def _ctx(redis_url="redis://127.0.0.1:1/0"):
    return JobContext(job_id="j-1", spec=spec_pb2.JobSpec(), redis_url=redis_url,
                      storage_dir="/tmp/ts")


def test_capture_sends_stdout_stderr_and_logging_lines_with_the_rank(list_sink):
    out, err = sys.stdout, sys.stderr
    with logcapture.capture_logs(_ctx(), rank=1) as sink:
        print("hello\nworld", end="")
        print(" !")
        sys.stderr.write("careful\n")
        logging.getLogger("trainserve.training.loop").info("epoch %d done", 3)
        logging.getLogger("trainserve.training.loop").debug("not this")
    assert sys.stdout is out and sys.stderr is err and sink.closed
    assert sink.lines == [(1, "stdout", "info", "hello"), (1, "stdout", "info", "world !"),
                          (1, "stderr", "info", "careful"),
                          (1, "logging", "info", "trainserve.training.loop: epoch 3 done")]
    handlers = logging.getLogger().handlers
    assert not any(isinstance(h, logcapture._SinkHandler) for h in handlers)


def test_capture_logs_an_escaping_exception_with_its_traceback(list_sink):
    with pytest.raises(ValueError):
        with logcapture.capture_logs(_ctx()) as sink:
            raise ValueError("bad batch")
    errors_ = [text for _, source, level, text in sink.lines if level == "error"]
    assert errors_[0].startswith("Traceback") and errors_[-1] == "ValueError: bad batch"


def test_no_redis_no_capture():
    with logcapture.capture_logs(_ctx(redis_url=None)) as sink:
        assert sink is None and not isinstance(sys.stdout, logcapture._LineWriter)


def test_log_lines_reporter_writes_progress_and_forwards():
    inner, lines = ListReporter(), []
    reporter = LogLinesReporter(inner, lambda *line: lines.append(line))
    reporter.log("training mlp on xor")
    reporter.epoch(2, 5, {"val_loss": 0.25, "train_loss": 0.5}, 100.0, 1.25)
    assert inner.logs == [("info", "training mlp on xor")] and len(inner.epochs) == 1
    assert lines == [("training mlp on xor", "progress", "info"),
                     ("epoch 2/5: train_loss=0.5 val_loss=0.25 (1.2 s)", "progress", "info")]
    assert reporter.cancel_requested() is False
