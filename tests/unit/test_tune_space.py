"""Search specs: parsing the space, applying values to the base spec, and every refusal naming
its field (no Ray needed: Tune domains are built only in `test_tune_domains_*`)."""
import json

import pytest

from trainserve.core import errors
from trainserve.core.spec import parse_spec
from trainserve.jobs.admission import check_submission
from trainserve.tune.algorithms import decode, param_space
from trainserve.tune.space import apply_values, parse_axis

BASE = {"dataset": {"name": "digits"}, "model": {"mlp": {"hidden": [64]}},
        "training": {"epochs": 4}}


def _search(**search) -> dict:
    return BASE | {"search": search}


def _submit(doc):
    return check_submission(parse_spec(doc))


def test_defaults_are_written_into_the_spec():
    spec = _submit(_search(space={"optimizer.lr": "loguniform(1e-4, 1e-1)"}))
    s = spec.search
    assert (s.algorithm, s.scheduler.name, s.metric, s.mode, s.num_samples) == \
        ("random", "fifo", "val_accuracy", "max", 8)
    assert s.trial_resources.cpus == 1.0
    reg = _submit({"dataset": {"name": "diabetes"}, "model": {"mlp": {}},
                   "search": {"space": {"optimizer.lr": "uniform(0.001, 0.01)"}}})
    assert (reg.search.metric, reg.search.mode) == ("val_loss", "min")


@pytest.mark.parametrize("text,kind,expect", [
    ("choice([[32], [64, 64]])", "choice", ([32], [64, 64])),
    ("grid([32, 64, 128])", "grid", (32, 64, 128)),
    ("uniform(0, 0.5)", "uniform", (0.0, 0.5)),
    ("loguniform(1e-4, 1e-1)", "loguniform", (1e-4, 1e-1)),
    ("randint(1, 4)", "randint", (1.0, 4.0)),
    ("quniform(0.0, 0.5, 0.1)", "quniform", (0.0, 0.5)),
])
def test_every_distribution_parses(text, kind, expect):
    axis = parse_axis("x", text)
    assert axis.kind == kind
    assert (axis.values if axis.categorical else (axis.low, axis.high)) == expect


@pytest.mark.parametrize("space,fragment", [
    ({"optimizer.lrr": "uniform(0.1, 0.2)"}, "no field 'lrr'"),
    ({"model.cnn.channels": "choice([[8]])"}, "uses model.mlp"),
    ({"optimizer.lr.x": "uniform(0.1, 0.2)"}, "is a value"),
    ({"model.mlp.hidden": "choice([])"}, "at least one value"),
    ({"optimizer.lr": "uniform(0.5, 0.1)"}, "low < high"),
    ({"optimizer.lr": "loguniform(0, 0.1)"}, "low > 0"),
    ({"optimizer.lr": "loguniform(-1, 0.1)"}, "low > 0"),
    ({"optimizer.lr": "gaussian(0, 1)"}, "known: choice, grid"),
    ({"optimizer.lr": "0.01"}, "expected a distribution"),
    ({"optimizer.lr": "uniform(__import__('os'), 1)"}, "literals"),
    ({"training.epochs": "randint(1.5, 4)"}, "integer bounds"),
    ({"model.mlp.dropout": "uniform(0.0, 1.5)"}, "model.mlp.dropout"),
    ({"model.mlp.hidden": "choice([[32], [0]])"}, "spec.model.mlp.hidden"),
    ({"training.batch_size": "choice(['big'])"}, "does not fit"),
    ({"name": "choice(['a', 'b'])"}, "cannot vary"),
])
def test_bad_entries_are_refused_naming_the_entry(space, fragment):
    with pytest.raises(errors.InvalidArgument) as info:
        _submit(_search(space=space))
    (path,) = space
    assert info.value.field == f'spec.search.space["{path}"]'
    assert fragment in info.value.reason


@pytest.mark.parametrize("search,field,fragment", [
    ({"space": {}}, "spec.search.space", "at least one entry"),
    ({"space": {"optimizer.lr": "uniform(0.001, 0.1)"}, "algorithm": "bohb"},
     "spec.search.algorithm", "known: grid, random, tpe"),
    ({"space": {"optimizer.lr": "uniform(0.001, 0.1)"}, "scheduler": {"name": "pb2"}},
     "spec.search.scheduler.name", "known: asha"),
    ({"space": {"optimizer.lr": "uniform(0.001, 0.1)"}, "metric": "val_r2"},
     "spec.search.metric", "val_accuracy"),
    ({"space": {"optimizer.lr": "uniform(0.001, 0.1)"}, "mode": "up"},
     "spec.search.mode", "known: max, min"),
    ({"space": {"optimizer.lr": "uniform(0.001, 0.1)"}, "algorithm": "grid"},
     'spec.search.space["optimizer.lr"]', "every entry must be grid"),
    ({"space": {"optimizer.lr": "grid([0.001, 0.1])"}, "algorithm": "tpe"},
     'spec.search.space["optimizer.lr"]', "takes no grid()"),
    ({"space": {"optimizer.lr": "grid([0.001, 0.1])"}, "algorithm": "grid", "num_samples": 3},
     "spec.search.num_samples", "exactly once"),
    ({"space": {"optimizer.lr": "uniform(0.001, 0.1)"}, "num_samples": 0},
     "spec.search.num_samples", "1 to"),
    ({"space": {"optimizer.lr": "uniform(0.001, 0.1)"}, "trial_resources": {"cpus": 0}},
     "spec.search.trial_resources.cpus", "(0,"),
    ({"space": {"optimizer.lr": "uniform(0.001, 0.1)"}, "trial_resources": {"gpus": 0.5}},
     "spec.search.trial_resources.gpus", "use_gpu"),
    ({"space": {"optimizer.lr": "uniform(0.001, 0.1)"}, "scheduler": {"name": "asha",
                                                                       "grace_period": 9}},
     "spec.search.scheduler.grace_period", "training.epochs"),
])
def test_bad_search_settings_name_their_field(search, field, fragment):
    with pytest.raises(errors.InvalidArgument) as info:
        _submit(_search(**search))
    assert info.value.field == field
    assert fragment in info.value.reason


def test_multi_worker_trials_take_their_resources_from_scaling():
    doc = _search(space={"optimizer.lr": "uniform(0.001, 0.01)"})
    doc["scaling"] = {"num_workers": 2, "cpus_per_worker": 0.5}
    assert _submit(doc).scaling.num_workers == 2
    with pytest.raises(errors.InvalidArgument) as info:
        _submit(doc | {"search": doc["search"] | {"trial_resources": {"cpus": 0.5}}})
    assert info.value.field == "spec.search.trial_resources"
    with pytest.raises(errors.InvalidArgument) as info:
        _submit(doc | {"search": doc["search"] | {"scheduler": {"name": "pbt"}}})
    assert info.value.field == "spec.scaling.num_workers"


def test_a_per_epoch_scheduler_is_refused_with_cross_validation():
    doc = {"dataset": {"name": "breast_cancer"}, "model": {"mlp": {}},
           "split": {"folds": 3}, "training": {"epochs": 3},
           "search": {"space": {"optimizer.lr": "loguniform(1e-4, 1e-2)"},
                      "scheduler": {"name": "asha"}}}
    with pytest.raises(errors.InvalidArgument) as info:
        _submit(doc)
    assert info.value.field == "spec.search.scheduler.name"
    assert "use fifo" in info.value.reason
    doc["search"] = {"space": {"optimizer.lr": "loguniform(1e-4, 1e-2)"},
                     "metric": "cv_auc_mean", "algorithm": "tpe"}
    assert _submit(doc).search.mode == "max"
    doc["search"]["metric"] = "val_auc"
    with pytest.raises(errors.InvalidArgument) as info:
        _submit(doc)
    assert info.value.field == "spec.search.metric" and "cv_auc_mean" in info.value.reason


def test_values_land_on_their_fields_with_their_types():
    spec = _submit(_search(space={"optimizer.lr": "uniform(0.001, 0.01)"}))
    trial = apply_values(spec, {"optimizer.lr": 0.005, "model.mlp.hidden": [8, 4],
                                "training.batch_size": 16.0,
                                "model": {"mlp": {"hidden": [8, 4], "dropout": 0.1}}})
    assert not trial.HasField("search")
    assert trial.optimizer.lr == 0.005 and trial.training.batch_size == 16
    assert list(trial.model.mlp.hidden) == [8, 4] and trial.model.mlp.dropout == 0.1
    again = apply_values(trial, {"model.mlp.hidden": [3]})
    assert list(again.model.mlp.hidden) == [3]  # replaced, not appended


def test_tune_domains_and_decoding_round_trip():
    spec = _submit(_search(space={"model.mlp.hidden": "choice([[32], [64, 64]])",
                                  "optimizer.lr": "loguniform(1e-4, 1e-1)",
                                  "training.batch_size": "grid([16, 32])",
                                  "training.epochs": "randint(2, 5)"}))
    from trainserve.tune.space import parse_space
    axes = parse_space(spec.search)
    space = param_space(axes)
    assert space["training.batch_size"] == {"grid_search": [0, 1]}
    assert space["model.mlp.hidden"].categories == [0, 1]
    values = decode(axes, {"model.mlp.hidden": 1, "optimizer.lr": 0.01,
                           "training.batch_size": 0, "training.epochs": 3})
    assert values == {"model.mlp.hidden": [64, 64], "optimizer.lr": 0.01,
                      "training.batch_size": 16, "training.epochs": 3}
    assert json.dumps(values)  # what the trial records store


@pytest.mark.parametrize("name", ["tune_digits_asha", "tune_breast_cancer_optuna"])
def test_search_examples_are_accepted_as_written(name):
    from pathlib import Path

    from trainserve.core.spec import load_spec_file
    spec = check_submission(load_spec_file(
        Path(__file__).resolve().parents[2] / "examples" / f"{name}.yaml"))
    assert spec.HasField("search") and spec.search.num_samples > 1


def test_flow_style_yaml_commas_get_a_hint():
    import yaml
    doc = yaml.safe_load("search: {space: {optimizer.lr: loguniform(1e-4, 1e-1)}}")
    with pytest.raises(errors.InvalidArgument) as info:
        parse_spec(BASE | doc)
    assert info.value.field == 'spec.search.space["optimizer.lr"]'
    assert "quote" in info.value.reason
