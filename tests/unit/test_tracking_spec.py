"""spec.tracking at submission: what a job may name as its trackers, refused with field paths."""
import pytest

from trainserve.core import errors
from trainserve.core.spec import parse_spec
from trainserve.core.tracking import StackTracking, effective_tracking
from trainserve.jobs.admission import check_submission


def _submit(tracking: dict, **extra):
    doc = {"dataset": {"name": "xor"}, "model": {"mlp": {}}, "tracking": tracking} | extra
    return check_submission(parse_spec(doc), {"CPU": 4.0})


def _refused(tracking: dict, **extra) -> errors.InvalidArgument:
    with pytest.raises(errors.InvalidArgument) as info:
        _submit(tracking, **extra)
    return info.value


def test_tensorboard_and_an_http_mlflow_server_are_accepted():
    spec = _submit({"tensorboard": True,
                    "mlflow": {"uri": "https://mlflow.example.org:5000/base/",
                               "experiment": "week 3"}})
    assert spec.tracking.tensorboard
    assert spec.tracking.mlflow.uri == "https://mlflow.example.org:5000/base/"
    assert _submit({"mlflow": {"uri": "http://127.0.0.1:5000"}}).tracking.mlflow.experiment == ""


@pytest.mark.parametrize("uri,why", [
    ("", "required"),
    ("file:///etc/cron.d/x", "only http:// and https://"),
    ("/var/lib/trainserve/mlruns", "only http:// and https://"),
    ("sqlite:///tmp/db.sqlite", "only http:// and https://"),
    ("databricks", "only http:// and https://"),
    ("ftp://host/x", "only http:// and https://"),
    ("http://", "names no host"),
    ("http://user:secret@host:5000", "user or password"),
    ("http://host:99999", "not an address"),
    ("http://host/ x", "no spaces"),
    ("http://host/\x00", "control characters"),
    ("http://host/?a=1", "no query"),
    ("http://h/" + "a" * 600, "at most 512 characters"),
])
def test_the_mlflow_address_is_checked_with_its_field_path(uri, why):
    err = _refused({"mlflow": {"uri": uri}})
    assert err.field == "spec.tracking.mlflow.uri"
    assert why in err.reason


def test_the_experiment_name_is_bounded():
    err = _refused({"mlflow": {"uri": "http://h:5000", "experiment": "x" * 300}})
    assert err.field == "spec.tracking.mlflow.experiment" and "256" in err.reason


def test_a_search_may_be_tracked():
    spec = _submit({"tensorboard": True, "mlflow": {"uri": "http://h:5000"}},
                   search={"space": {"optimizer.lr": "loguniform(1e-3, 1e-1)"},
                           "num_samples": 2})
    assert spec.tracking.tensorboard and spec.HasField("search")


STACK = StackTracking(mlflow_uri="http://mlflow.internal:5000", tensorboard=True,
                      credentials_file="/etc/trainserve/mlflow-credentials")


def test_a_job_naming_no_tracking_gets_the_stacks():
    spec = _submit({})
    spec.ClearField("tracking")
    got = effective_tracking(spec, STACK)
    assert got.tensorboard and got.mlflow.uri == "http://mlflow.internal:5000"
    assert got.mlflow.experiment == ""  # the job's name
    assert effective_tracking(spec, StackTracking()) is None
    assert effective_tracking(spec, None) is None


def test_a_jobs_own_tracking_replaces_the_stacks_and_an_empty_one_opts_out():
    assert effective_tracking(_submit({}), STACK) is None  # `tracking: {}`
    own = effective_tracking(_submit({"tensorboard": True}), STACK)
    assert own.tensorboard and not own.HasField("mlflow")


def test_an_empty_tracking_survives_the_wire_so_the_opt_out_holds():
    spec = _submit({})
    again = type(spec).FromString(spec.SerializeToString())
    assert again.HasField("tracking") and effective_tracking(again, STACK) is None


@pytest.mark.parametrize("uri,gets", [
    ("http://mlflow.internal:5000", True),
    ("HTTP://MLflow.internal:5000/", True),
    ("http://mlflow.internal:5001", False),
    ("https://mlflow.internal:5000", False),
    ("http://mlflow.internal:5000/other", False),
    ("http://attacker.example.org:5000", False),
])
def test_the_stacks_credentials_go_to_its_own_server_only(uri, gets):
    assert STACK.credentials_for(uri) == (STACK.credentials_file if gets else "")


def test_a_stack_tracking_address_is_checked_like_a_jobs():
    with pytest.raises(errors.InvalidArgument) as info:
        StackTracking(mlflow_uri="file:///srv/mlruns")
    assert info.value.field == "tracking_mlflow_uri"


def test_a_misspelled_tracking_key_is_a_field_path_error():
    with pytest.raises(errors.InvalidArgument) as info:
        _submit({"tensorbaord": True})
    assert "tracking" in str(info.value)
