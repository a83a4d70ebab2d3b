"""spec.tracking at submission: what a job may name as its trackers, refused with field paths."""
import pytest

from trainserve.core import errors
from trainserve.core.spec import parse_spec
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


def test_a_search_is_refused_rather_than_left_untracked():
    err = _refused({"tensorboard": True},
                   search={"space": {"optimizer.lr": "loguniform(1e-3, 1e-1)"},
                           "num_samples": 2})
    assert err.field == "spec.tracking"


def test_a_misspelled_tracking_key_is_a_field_path_error():
    with pytest.raises(errors.InvalidArgument) as info:
        _submit({"tensorbaord": True})
    assert "tracking" in str(info.value)
