"""Looking inside a network: the arrays `training.inside` saves (decision boundary, latent
space, conv filters and feature maps) against the model that made them, and the PNGs
`jobs.plots_inside` draws from them and from the diagnostics' curves: valid images with the
expected content."""
from __future__ import annotations

import struct

import matplotlib.image
import numpy as np
import pytest
import torch
from torch import nn

from trainserve.core.pb import job_pb2
from trainserve.core.spec import parse_spec
from trainserve.jobs import plots, plots_inside
from trainserve.training import inside
from trainserve.training.data import prepare_data
from trainserve.training.validate import check_spec
from trainserve.training.zoo import build_model

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path) -> np.ndarray:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 200 and height > 150, (width, height)
    return matplotlib.image.imread(path)


def prepared(doc: dict):
    spec = check_spec(parse_spec(doc))
    return spec, prepare_data(spec)


def tensors(data, split="test"):
    return (torch.from_numpy(getattr(data, f"x_{split}")),
            torch.from_numpy(getattr(data, f"y_{split}")))


# -- decision boundary ----------------------------------------------------------------------

class SignOfX0(nn.Module):
    """Class 1 where the (dataset-unit) x0 is above 0.5: a known boundary to find in a PNG."""

    def __init__(self, pre):
        super().__init__()
        self.shift, self.scale = pre.shift[0], pre.scale[0]
        self.w = nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        x0 = x[:, 0] * self.scale + self.shift  # back to dataset units
        logit = 20.0 * (x0 - 0.5) * self.w
        return torch.stack([torch.zeros_like(logit), logit], dim=1)


def test_the_boundary_grid_holds_the_model_s_predictions_and_the_plot_shows_them(tmp_path):
    spec, data = prepared({"dataset": {"name": "moons", "num_samples": 300},
                           "model": {"mlp": {"hidden": [4]}}})
    model = SignOfX0(data.preprocessing)
    x, y = tensors(data)
    arrays = inside.inside_arrays(spec, data, model, x, y)
    gx, gy, probs = arrays["boundary_x"], arrays["boundary_y"], arrays["boundary_probabilities"]
    assert probs.shape == (inside.GRID, inside.GRID, 2)
    # Every grid point's probabilities are the model's on that (normalized) point.
    i, j = 37, 101
    point = data.preprocessing.apply(np.array([[gx[j], gy[i]]], np.float32))
    expected = torch.softmax(model(torch.from_numpy(point)).double(), 1)[0].detach().numpy()
    assert np.allclose(probs[i, j], expected, atol=1e-6)
    assert (probs[:, gx < 0.4, 1] < 0.2).all() and (probs[:, gx > 0.6, 1] > 0.8).all()
    # The grid spans every point, which are the data in the dataset's units.
    test = arrays["boundary_test_points"]
    assert gx[0] < test[:, 0].min() and gx[-1] > test[:, 0].max()
    assert np.allclose(test, data.x_test * np.array(data.preprocessing.scale)
                       + np.array(data.preprocessing.shift), atol=1e-4)
    assert list(arrays["boundary_class_names"]) == ["0", "1"]
    image = assert_png(plots_inside.plot_decision_boundary(arrays, tmp_path / "b.png"))
    assert _hue_split(image) == ("tab:blue", "tab:orange")


def _hue_split(image: np.ndarray) -> tuple[str, str]:
    """Which class colour dominates the far left and far right of the plot's interior."""
    h, w = image.shape[:2]
    band = image[int(h * 0.3):int(h * 0.7)]
    left, right = band[:, int(w * 0.15):int(w * 0.22), :3], band[:, int(w * 0.9):int(w * 0.95), :3]

    def name(rgb):
        r, g, b = np.median(rgb.reshape(-1, 3), axis=0)
        return "tab:blue" if b > r else "tab:orange"
    return name(left), name(right)


def test_only_two_dimensional_classifiers_get_a_boundary():
    spec, data = prepared({"dataset": {"name": "breast_cancer"},
                           "model": {"mlp": {"hidden": [4]}}})
    model = build_model(spec, data.info)
    assert inside.inside_arrays(spec, data, model, *tensors(data)) == {}


def test_plots_false_saves_nothing():
    doc = {"dataset": {"name": "xor"}, "model": {"mlp": {"hidden": [4]}},
           "training": {"diagnostics": {"plots": False}}}
    spec, data = prepared(doc)
    assert inside.inside_arrays(spec, data, build_model(spec, data.info), *tensors(data)) == {}


# -- latent space ---------------------------------------------------------------------------

def test_wide_codes_are_projected_on_their_first_two_principal_components():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(200, 5)) * np.array([5.0, 2.0, 0.1, 0.1, 0.1])
    points, axes = inside.project_2d(codes)
    assert points.shape == (200, 2)
    var = points.var(axis=0)
    assert var[0] > var[1] > 0.1 and abs(np.corrcoef(points.T)[0, 1]) < 1e-6
    assert axes[0].startswith("PC1 (8") and axes[1].startswith("PC2 (1")
    same, names = inside.project_2d(codes[:, :2])
    assert np.array_equal(same, codes[:, :2]) and names == ["z0", "z1"]


def test_an_autoencoder_s_latent_space_is_its_test_codes_coloured_by_class(tmp_path):
    spec, data = prepared({"dataset": {"name": "digits"},
                           "model": {"autoencoder": {"hidden": [16], "latent_dim": 2}}})
    model = build_model(spec, data.info).eval()
    x, y = tensors(data)
    arrays = inside.inside_arrays(spec, data, model, x, y)
    with torch.no_grad():
        assert np.allclose(arrays["latent_codes"], model.encode(x).numpy(), atol=1e-5)
    assert np.array_equal(arrays["latent_labels"], y.numpy())
    assert list(arrays["latent_class_names"]) == [str(d) for d in range(10)]
    assert "filters" not in arrays and "boundary_x" not in arrays
    image = assert_png(plots_inside.plot_latent_space(arrays, tmp_path / "l.png"))
    assert len(np.unique(image[..., :3].reshape(-1, 3).round(2), axis=0)) > 10  # colours


# -- convolutions ---------------------------------------------------------------------------

def test_a_cnn_s_filters_and_feature_maps_are_its_first_convolutions(tmp_path):
    spec, data = prepared({"dataset": {"name": "digits"},
                           "model": {"cnn": {"channels": [6, 20, 8]}}})
    model = build_model(spec, data.info).eval()
    x, y = tensors(data)
    arrays = inside.inside_arrays(spec, data, model, x, y)
    assert np.array_equal(arrays["filters"], model.conv1.weight.detach().numpy())
    assert list(arrays["feature_layers"]) == ["conv1", "conv2"]
    with torch.no_grad():
        first = model.conv1(x[:1])[0].numpy()
    assert np.allclose(arrays["feature_maps_0"], first, atol=1e-5)
    assert arrays["feature_maps_1"].shape == (16, 4, 4)  # 20 channels kept to MAX_MAPS
    assert arrays["feature_image"].shape == (1, 8, 8)
    for name in plots_inside.evaluation_plots(arrays, tmp_path):
        assert_png(name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conv_filters.png",
                                                         "feature_maps.png"]


def test_lenet5_has_filters_too():
    spec, data = prepared({"dataset": {"name": "digits"}, "model": {"lenet5": {}}})
    model = build_model(spec, data.info).eval()
    arrays = inside.inside_arrays(spec, data, model, *tensors(data))
    assert arrays["filters"].shape == (6, 1, 5, 5)


# -- from the curves ------------------------------------------------------------------------

def diagnostic_epochs(epochs=4, layers=5):
    points = []
    for e in range(1, epochs + 1):
        metrics = {"train_loss": 1.0 / e, "val_loss": 1.2 / e}
        for k in range(1, layers + 1):
            metrics[f"grad_norm/{k:02d}_fc{k}"] = 10.0 ** (k - layers) / e
            metrics[f"act_mean/{k:02d}_act{k}"] = 0.5
            metrics[f"act_std/{k:02d}_act{k}"] = 0.1 * k
            metrics[f"act_saturated/{k:02d}_act{k}"] = 0.05 * e
        points.append(job_pb2.EpochMetrics(epoch=e, metrics=metrics))
    return points


def test_a_job_with_diagnostics_gets_their_plots_and_a_curves_plot_without_them(tmp_path):
    job = job_pb2.Job(id="j-1")
    job.spec.name = "deep"
    paths = plots.training_plots(job, diagnostic_epochs(), tmp_path)
    assert [p.name for p in paths] == ["curves.png", "gradient_norms.png", "activations.png"]
    for path in paths:
        assert_png(path)
    series = plots.metric_series(diagnostic_epochs())
    layers = plots_inside.per_layer(series, "grad_norm")
    assert list(layers) == [f"{k:02d}_fc{k}" for k in range(1, 6)]  # network order
    assert not any(plots_inside.is_diagnostic(b) for b in ("loss", "lr", "accuracy"))


def test_the_gradient_plot_is_log_scaled_with_a_line_per_layer(tmp_path, monkeypatch):
    seen = {}
    original = plots_inside._save

    def keep(fig, path):
        seen[path.name] = (fig.axes[0].get_yscale(), len(fig.axes[0].get_lines()))
        return original(fig, path)
    monkeypatch.setattr(plots_inside, "_save", keep)
    plots_inside.curve_plots(plots.metric_series(diagnostic_epochs(layers=7)), tmp_path)
    assert seen == {"gradient_norms.png": ("log", 7), "activations.png": ("linear", 7)}


def test_a_job_without_diagnostics_gets_only_its_curves(tmp_path):
    job = job_pb2.Job(id="j-2")
    points = [job_pb2.EpochMetrics(epoch=e, metrics={"train_loss": 1.0 / e}) for e in (1, 2)]
    assert [p.name for p in plots.training_plots(job, points, tmp_path)] == ["curves.png"]


@pytest.mark.parametrize("kind", ["classification", "reconstruction"])
def test_evaluation_plots_without_inside_arrays_are_unchanged(tmp_path, kind):
    if kind == "classification":
        arrays = {"kind": np.array(kind), "y_true": np.array([0, 1, 1, 0]),
                  "probabilities": np.array([[.9, .1], [.2, .8], [.4, .6], [.7, .3]],
                                            np.float32),
                  "class_names": np.array(["a", "b"])}
    else:
        arrays = {"kind": np.array(kind), "originals": np.zeros((2, 1, 4, 4), np.float32),
                  "reconstructions": np.zeros((2, 1, 4, 4), np.float32)}
    names = {p.name for p in plots.evaluation_plots(arrays, tmp_path)}
    assert not names & {plots_inside.DECISION_BOUNDARY, plots_inside.LATENT_SPACE,
                        plots_inside.CONV_FILTERS, plots_inside.FEATURE_MAPS}
