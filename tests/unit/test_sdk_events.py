"""The SDK as a student meets it in Python: `Client.watch` yields events that print as one
readable line each (the raw message still at hand), a client pointed at an address where
nothing listens fails within about 2 s with the CLI's hint, while one that has reached the
API keeps retrying a restart for `retry_for`."""
from __future__ import annotations

import time

import pytest

from tests.unit.test_cli_commands import finish
from tests.unit.test_client_sdk import client, fake_api  # noqa: F401 - fixtures
from trainserve.client import Client
from trainserve.client.events import WatchEvent
from trainserve.core import errors
from trainserve.core.pb import job_pb2
from trainserve.core.ports import free_port


def _event(**oneof) -> WatchEvent:
    raw = job_pb2.JobEvent(job_id="j-1", event_id="1-0", **oneof)
    raw.time.FromSeconds(1_700_000_000)
    return WatchEvent(raw)


def test_an_epoch_prints_as_one_line_losses_first():
    event = _event(epoch=job_pb2.EpochMetrics(
        epoch=3, total_epochs=20, metrics={"val_accuracy": 0.9, "train_loss": 0.31234,
                                           "val_loss": 0.35, "lr": 0.01}))
    text = str(event)
    assert text.endswith("epoch 3/20  train_loss 0.3123  val_loss 0.35  lr 0.01  "
                         "val_accuracy 0.9")
    assert "\n" not in text and "{" not in text
    assert event.kind == "epoch" and event.epoch_number == 3 and event.total_epochs == 20
    assert event.metrics["val_loss"] == 0.35 and event.state_name is None
    assert repr(event).startswith("<WatchEvent ")


def test_states_logs_and_trials_print_readably():
    state = _event(state=job_pb2.StateChanged(state=job_pb2.JOB_STATE_FAILED,
                                              message="loss diverged"))
    assert str(state).endswith("FAILED: loss diverged") and state.state_name == "failed"
    assert state.text == "loss diverged" and state.metrics == {}
    log = _event(log=job_pb2.LogLine(level="WARNING", text="restored epoch 7"))
    assert str(log).endswith("warning: restored epoch 7")
    trial = job_pb2.Trial(id="t-3", state="finished", config={"optimizer.lr": "0.01"},
                          metrics={"val_accuracy": 0.95})
    ended = _event(trial=job_pb2.TrialEvent(kind="ended", trial=trial))
    assert str(ended).endswith("trial t-3 ended (finished)  val_accuracy 0.95  "
                               "optimizer.lr=0.01")


def test_the_raw_message_stays_at_hand():
    event = _event(epoch=job_pb2.EpochMetrics(epoch=2, total_epochs=5))
    assert isinstance(event.raw, job_pb2.JobEvent)
    # Code written for the messages keeps working on the events.
    assert event.HasField("epoch") and event.WhichOneof("event") == "epoch"
    assert event.epoch.total_epochs == 5 and event.event_id == "1-0"
    row = event.to_dict()
    assert row["kind"] == "epoch" and row["epoch"] == 2 and row["job_id"] == "j-1"


def test_watch_yields_readable_events(client, fake_api):  # noqa: F811
    api, _ = fake_api
    job = api.add_job("j-1")
    finish(api, job)
    events = list(client.watch("j-1"))
    assert all(isinstance(e, WatchEvent) for e in events)
    lines = [str(e) for e in events]
    assert len(lines) == len(api.events["j-1"])  # one line an event, not a message dump
    assert any(line.endswith("epoch 3/3  train_loss 0.3333  val_accuracy 0.8")
               for line in lines)
    assert lines[-1].endswith("SUCCEEDED")
    seen = []
    client.wait("j-1", on_event=seen.append)
    assert [str(e) for e in seen] == lines


def test_nothing_listening_fails_within_two_seconds_with_the_hint():
    address = f"127.0.0.1:{free_port()}"
    start = time.monotonic()
    with Client(address, token="") as ts:  # the default retry_for: 15 s
        with pytest.raises(errors.Unavailable, match=r"is it running \(`trainserve up`\)"):
            ts.get_job("j-1")
    assert time.monotonic() - start < 2.5


def test_nothing_listening_fails_a_watch_quickly_too():
    start = time.monotonic()
    with Client(f"127.0.0.1:{free_port()}", token="") as ts:
        with pytest.raises(errors.Unavailable, match="trainserve up"):
            list(ts.watch("j-1"))
    assert time.monotonic() - start < 3.0


def test_an_api_that_answered_once_is_retried_for_retry_for(fake_api):  # noqa: F811
    """After a first answer, UNAVAILABLE is an API restarting: retried past the 2 s."""
    api, address = fake_api
    api.add_job("j-1")
    with Client(address, timeout=5, retry_for=20) as ts:
        ts.get_job("j-1")
        api.unavailable = 6  # answered UNAVAILABLE six times, with backoff in between
        start = time.monotonic()
        assert ts.get_job("j-1").id == "j-1"
    assert time.monotonic() - start > 1.5  # well past the window of a client never answered


def test_a_client_waiting_for_a_starting_api_says_so_with_connect_for():
    address = f"127.0.0.1:{free_port()}"
    for connect_for, low, high in ((1.5, 1.0, 3.5), (4.0, 3.5, 7.0)):
        start = time.monotonic()
        with Client(address, timeout=5, retry_for=20, connect_for=connect_for) as c:
            with pytest.raises(errors.Unavailable):
                c.list_datasets()
        assert low <= time.monotonic() - start <= high, connect_for
