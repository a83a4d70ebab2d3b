"""The stack-wide trackers: from the one setting (`Config.tracking_*`) through the
dispatcher's command line to the `JobContext` every job's workers get."""
from __future__ import annotations

import pytest

from trainserve.core.pb import job_pb2
from trainserve.core.tracking import StackTracking
from trainserve.dispatch import __main__ as dispatch_main
from trainserve.dispatch.runner import JobRunner
from trainserve.local import Config, LocalStack
from trainserve.local.component import LocalStackError
from trainserve.local.components.dispatcher import DISPATCHER


def _dispatcher_args(config: Config) -> list[str]:
    argv = LocalStack(config).launch("dispatcher").argv
    return argv[argv.index("trainserve.dispatch") + 1:]


def _parsed(argv: list[str]) -> StackTracking:
    parser = dispatch_main._parser()
    return dispatch_main._tracking(parser, parser.parse_args(argv))


def test_the_setting_reaches_the_dispatcher_as_flags(tmp_path):
    creds = tmp_path / "mlflow-credentials"
    config = Config(state_dir=tmp_path, tracking_mlflow_uri="http://mlflow.internal:5000",
                    tracking_tensorboard=True, tracking_credentials_file=str(creds))
    argv = _dispatcher_args(config)
    assert f"--tracking-credentials-file={creds}" in argv  # the path, never the secret
    assert _parsed(argv) == config.stack_tracking() == StackTracking(
        "http://mlflow.internal:5000", True, str(creds))


def test_no_setting_no_flags_no_trackers(tmp_path):
    argv = _dispatcher_args(Config(state_dir=tmp_path))
    assert not [a for a in argv if a.startswith("--tracking")]
    assert _parsed(argv) == StackTracking() and StackTracking().spec() is None


def test_a_bad_address_is_refused_before_the_stack_starts(tmp_path, capsys):
    config = Config(state_dir=tmp_path, tracking_mlflow_uri="file:///srv/mlruns")
    with pytest.raises(LocalStackError, match="--tracking-mlflow-uri: .*http"):
        DISPATCHER.precheck(LocalStack(config))  # what `up` runs before starting anything
    with pytest.raises(SystemExit):
        _parsed(["--tracking-mlflow-uri", "file:///srv/mlruns"])
    assert "--tracking-mlflow-uri" in capsys.readouterr().err


def test_the_runner_hands_the_stacks_trackers_to_the_job(tmp_path):
    class Store:
        r = None
    seen = []
    stack = StackTracking("http://mlflow.internal:5000")
    runner = JobRunner(Store(), None, None, "redis://unused", str(tmp_path),
                       run_job=seen.append, tracking=stack)
    runner._train(job_pb2.Job(id="j1"))
    assert seen[0].tracking == stack and seen[0].job_id == "j1"
