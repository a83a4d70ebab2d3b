"""spec.tracking in the worker, without servers: TensorBoard event files read back with
TensorBoard's own reader, the params, and a tracker that cannot be reached never failing the
job (its warning in the job's log lines)."""
import json

import pytest
from google.protobuf import json_format
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from trainserve.core.pb import spec_pb2
from trainserve.core.ports import free_port
from trainserve.jobs.artifacts import copy_event_files
from trainserve.runtime.context import JobContext
from trainserve.runtime.tracking import TENSORBOARD_DIR, flat_params, tracked
from trainserve.training.loop import train
from trainserve.training.reporting import ListReporter
from trainserve.training.validate import check_spec


def _spec(tracking: dict, epochs: int = 4) -> spec_pb2.JobSpec:
    doc = {"name": "xor-mlp", "dataset": {"name": "xor", "num_samples": 64},
           "model": {"mlp": {"hidden": [8]}}, "optimizer": {"lr": 0.05},
           "training": {"epochs": epochs}, "tracking": tracking, "labels": {"course": "w1"}}
    return check_spec(json_format.ParseDict(doc, spec_pb2.JobSpec()))


def _run(tmp_path, spec):
    ctx = JobContext(job_id="j-track", spec=spec, redis_url=None, storage_dir=tmp_path)
    inner = ListReporter()
    with tracked(ctx, inner) as reporter:
        result = reporter.finished(train(spec, ctx.paths.root, reporter))
    return ctx, inner, result


def _accumulator(folder):
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_event_files_hold_every_epoch_metric_and_the_final_ones(tmp_path):
    ctx, inner, result = _run(tmp_path, _spec({"tensorboard": True}))
    assert result.status == "succeeded" and len(inner.epochs) == 4
    acc = _accumulator(ctx.paths.root / TENSORBOARD_DIR)
    tags = set(acc.Tags()["scalars"])
    for name in inner.epochs[0].metrics:  # train_*, val_*, lr
        assert name in tags
        assert [(e.step, pytest.approx(e.value, rel=1e-6)) for e in acc.Scalars(name)] == \
            [(ev.epoch, ev.metrics[name]) for ev in inner.epochs]
    assert {"train_loss", "val_loss", "lr"} <= tags
    for name, value in result.metrics.items():
        [point] = acc.Scalars(f"final/{name}")
        assert point.step == 4 and point.value == pytest.approx(value, rel=1e-6)
    spec_text = acc.Tensors("spec/text_summary")[0].tensor_proto.string_val[0].decode()
    assert '"lr": 0.05' in spec_text
    # TensorBoard's HPARAMS tab: the run's params and its final metrics
    assert set(acc.PluginTagToContent("hparams")) == {
        "_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"}


def test_the_event_files_are_offered_among_the_jobs_artifacts(tmp_path):
    ctx, _, _ = _run(tmp_path, _spec({"tensorboard": True}, epochs=2))
    out = tmp_path / "out"
    out.mkdir()
    copy_event_files(ctx.paths.root, out)
    [copied] = list(out.iterdir())
    assert copied.name.startswith("events.out.tfevents.") and copied.suffix == ".tfevents"
    assert _accumulator(out).Scalars("train_loss")[-1].step == 2


def test_no_tracking_writes_nothing(tmp_path):
    spec = _spec({})
    spec.ClearField("tracking")
    ctx, inner, result = _run(tmp_path, spec)
    assert result.status == "succeeded" and not (ctx.paths.root / TENSORBOARD_DIR).exists()


def test_an_unreachable_mlflow_server_leaves_a_warning_and_the_job_trains(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    ctx, inner, result = _run(tmp_path, _spec({"tensorboard": True, "mlflow": {"uri": uri}}))
    assert result.status == "succeeded" and len(inner.epochs) == 4
    warnings = [text for level, text in inner.logs if level == "warning"]
    assert len(warnings) == 1 and warnings[0].startswith("MLflow: not tracking this job")
    assert (ctx.paths.root / TENSORBOARD_DIR).is_dir()  # the other tracker carries on


def test_params_are_the_resolved_spec_flattened():
    params = flat_params(_spec({"tensorboard": True, "mlflow": {"uri": "http://h:1"}}))
    assert params["optimizer.lr"] == 0.05 and params["optimizer.name"] == "adam"
    assert params["training.epochs"] == 4 and params["training.batch_size"] == 32
    assert json.loads(params["model.mlp.hidden"]) == [8]
    assert params["labels.course"] == "w1"
    assert not any(key.startswith("tracking") for key in params)


# --- a search's trials, and the plots ----------------------------------------------------

def _png(tmp_path, name="decision_boundary.png") -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [1, 0])
    fig.savefig(tmp_path / name, dpi=40)
    plt.close(fig)
    return (tmp_path / name).read_bytes()


def test_each_trial_of_a_search_is_a_run_of_its_own_with_its_hparams(tmp_path):
    from trainserve.runtime.tracking import trial_target, tracking_target
    job_root = tmp_path / "jobs" / "j-search"
    for trial, lr in (("t1", 0.01), ("t2", 0.1)):
        spec = _spec({"tensorboard": True}, epochs=2)
        spec.optimizer.lr = lr
        target = trial_target(job_root, job_root / "trials" / trial, trial, spec, None)
        with tracking_target(target, ListReporter()) as reporter:
            reporter.finished(train(spec, job_root / "trials" / trial, reporter))
    for trial, lr in (("t1", 0.01), ("t2", 0.1)):
        folder = job_root / TENSORBOARD_DIR / trial  # TensorBoard: one run per sub-folder
        [events] = list(folder.iterdir())
        assert events.name.endswith(f".{trial}.tfevents")
        acc = _accumulator(folder)
        assert [e.step for e in acc.Scalars("train_loss")] == [1, 2]
        assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")
        text = acc.Tensors("spec/text_summary")[0].tensor_proto.string_val[0].decode()
        assert f'"lr": {lr}' in text
    out = tmp_path / "out"
    out.mkdir()
    copy_event_files(job_root, out)  # offered as artifacts: the trial in each file's name
    assert sorted(p.name.rsplit(".", 2)[-2] for p in out.iterdir()) == ["t1", "t2"]


def test_the_plots_become_tensorboard_images(tmp_path):
    from trainserve.runtime.tracking import job_target, log_plots
    png = _png(tmp_path)
    target = job_target("j-plots", _spec({"tensorboard": True}), str(tmp_path), None)
    assert log_plots(target, {"decision_boundary.png": png, "curves.png": png}, 4) == []
    acc = EventAccumulator(str(target.tensorboard_dir), size_guidance={"images": 0})
    acc.Reload()
    assert set(acc.Tags()["images"]) == {"plots/decision_boundary", "plots/curves"}
    [image] = acc.Images("plots/decision_boundary")
    assert image.step == 4 and image.encoded_image_string == png
    assert (image.width, image.height) == (80, 60)


def test_plots_that_cannot_be_written_are_a_warning(tmp_path):
    from trainserve.runtime.tracking import job_target, log_plots
    target = job_target("j-bad", _spec({"tensorboard": True}), str(tmp_path), None)
    [warning] = log_plots(target, {"x.png": b"not a png"}, 1)
    assert warning.startswith("TensorBoard: could not add the plots")
