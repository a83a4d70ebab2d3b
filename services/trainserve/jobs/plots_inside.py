"""PNG plots that look inside a network (docs/interpretability.md), drawn like the rest of
`trainserve.jobs.plots`: arrays in, PNG paths out, no model runs.

From the job's curves (`training.diagnostics`, when the job recorded them):
- `gradient_norms.png`: each weight layer's gradient norm per epoch, log scale, coloured from
  the input side (dark) to the output side (light): the vanishing-gradient picture;
- `activations.png`: each activation layer's mean, standard deviation and saturated (or dead)
  fraction per epoch, coloured the same way.

From what the training run saved (`training.inside`, in `evaluation.npz`):
- `decision_boundary.png`: a 2-D classifier's predicted class over the input plane, shaded by
  its confidence, with the training and test points;
- `latent_space.png`: an autoencoder's test codes in two dimensions, coloured by class;
- `conv_filters.png`, `feature_maps.png`: a CNN's first-layer kernels, and one test image
  with the outputs of its first conv layers.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from trainserve.jobs.figures import (grid as _grid, pyplot as _pyplot, save as _save,
                                     show_image as _show_image)
from trainserve.training.diagnostics import (ACT_MEAN, ACT_SATURATED, ACT_STD, GRAD_NORM,
                                             split_name)

GRADIENT_NORMS = "gradient_norms.png"
ACTIVATIONS = "activations.png"
DECISION_BOUNDARY = "decision_boundary.png"
LATENT_SPACE = "latent_space.png"
CONV_FILTERS = "conv_filters.png"
FEATURE_MAPS = "feature_maps.png"
ACTIVATION_PANELS = ((ACT_MEAN, "mean"), (ACT_STD, "standard deviation"),
                     (ACT_SATURATED, "saturated (sigmoid, tanh) or dead (ReLU) fraction"))


def _heading(title: str, what: str) -> str:
    return f"{title + ': ' if title else ''}{what}"


def is_diagnostic(base: str) -> bool:
    """Whether a metric (split prefix dropped) is a per-layer statistic of the diagnostics."""
    return split_name(base) is not None


# -- from the curves ------------------------------------------------------------------------

def per_layer(series: dict, stat: str) -> dict[str, tuple[list[int], list[float]]]:
    """{layer: (epochs, values)} of `stat` from `plots.metric_series`' output, network order."""
    found = {}
    for base, splits in series.items():
        parsed = split_name(base)
        if parsed is not None and parsed[0] == stat and "" in splits:
            found[parsed[1]] = splits[""]
    return dict(sorted(found.items()))


def curve_plots(series: dict, out_dir: Path, title: str = "") -> list[Path]:
    """The diagnostics' plots of a job whose curves (`plots.metric_series`) have them."""
    paths = []
    grads = per_layer(series, GRAD_NORM)
    if grads:
        paths.append(plot_gradient_norms(grads, Path(out_dir) / GRADIENT_NORMS, title))
    panels = {stat: per_layer(series, stat) for stat, _ in ACTIVATION_PANELS}
    if any(panels.values()):
        paths.append(plot_activations(panels, Path(out_dir) / ACTIVATIONS, title))
    return paths


def _depth_colors(n: int) -> list:
    from matplotlib import colormaps
    cmap = colormaps["viridis"]
    return [cmap(i / max(n - 1, 1) * 0.9) for i in range(n)]


def _layer_lines(ax, layers: dict, log: bool = False) -> None:
    for color, (layer, (xs, ys)) in zip(_depth_colors(len(layers)), layers.items()):
        if log:  # a zero norm (a layer without gradient) has no place on a log scale
            kept = [(e, v) for e, v in zip(xs, ys) if v > 0]
            xs, ys = [e for e, _ in kept], [v for _, v in kept]
        ax.plot(xs, ys, color=color, label=layer, marker="o" if len(xs) < 30 else "",
                markersize=3)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3, which="both")


def plot_gradient_norms(layers: dict, path: Path, title: str = "") -> Path:
    """Gradient norm per layer against the epoch, log scale (input side dark)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    _layer_lines(ax, layers, log=True)
    ax.set(ylabel="gradient norm (mean over the epoch's steps)",
           title=_heading(title, "gradient norm per layer"))
    ax.legend(fontsize="small", ncol=2 if len(layers) > 8 else 1, title="input side first")
    return _save(fig, path)


def plot_activations(panels: dict, path: Path, title: str = "") -> Path:
    """One panel per activation statistic, a line per layer."""
    fig, axes = _grid(len(ACTIVATION_PANELS), cols=3, size=(4.8, 3.6))
    for ax, (stat, label) in zip(axes, ACTIVATION_PANELS):
        _layer_lines(ax, panels.get(stat, {}))
        ax.set_title(label, fontsize="medium")
    fig.suptitle(_heading(title, "activations per layer (probe batch)"))
    fig.tight_layout()
    handles, labels = max((ax.get_legend_handles_labels() for ax in axes),
                          key=lambda found: len(found[1]))
    if handles:  # one legend for the three panels, right of them
        fig.legend(handles, labels, fontsize="x-small", title="input side first",
                   loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(fig, path)


# -- from evaluation.npz --------------------------------------------------------------------

def evaluation_plots(arrays: dict, out_dir: Path, title: str = "") -> list[Path]:
    """The plots of the `training.inside` arrays present in `arrays`."""
    out_dir, paths = Path(out_dir), []
    if "boundary_probabilities" in arrays:
        paths.append(plot_decision_boundary(arrays, out_dir / DECISION_BOUNDARY, title))
    if "latent_codes" in arrays:
        paths.append(plot_latent_space(arrays, out_dir / LATENT_SPACE, title))
    if "filters" in arrays:
        paths.append(plot_filters(arrays["filters"], str(arrays["filters_layer"]),
                                  out_dir / CONV_FILTERS, title))
    if "feature_image" in arrays:
        paths.append(plot_feature_maps(arrays, out_dir / FEATURE_MAPS, title))
    return paths


def class_colors(n: int) -> list:
    from matplotlib import colormaps
    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def boundary_image(probabilities: np.ndarray) -> np.ndarray:
    """[G, G, 4] RGBA: each grid point the colour of its predicted class, faded towards white
    as the model's confidence falls to chance."""
    probs = np.asarray(probabilities, np.float64)
    classes = probs.shape[2]
    colors = np.array([c[:3] for c in class_colors(classes)])
    predicted, top = probs.argmax(axis=2), probs.max(axis=2)
    strength = (top - 1 / classes) / max(1 - 1 / classes, 1e-9)  # 0 at chance, 1 certain
    weight = (0.25 + 0.55 * strength)[..., None]
    rgb = colors[predicted] * weight + (1 - weight)
    return np.concatenate([rgb, np.ones((*rgb.shape[:2], 1))], axis=2)


def plot_decision_boundary(arrays: dict, path: Path, title: str = "") -> Path:
    """The predicted class over the plane (shaded by confidence, the 0.5 contour of a binary
    classifier drawn), training points small, test points outlined."""
    gx, gy, probs = arrays["boundary_x"], arrays["boundary_y"], arrays["boundary_probabilities"]
    names = [str(n) for n in arrays["boundary_class_names"]]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 6))
    ax.imshow(boundary_image(probs), origin="lower", aspect="auto", interpolation="bilinear",
              extent=(gx[0], gx[-1], gy[0], gy[-1]))
    if probs.shape[2] == 2:
        ax.contour(gx, gy, probs[:, :, 1], levels=[0.5], colors="black", linewidths=1.2)
    colors = class_colors(len(names))
    for which, size, edge in (("train", 8, "none"), ("test", 26, "black")):
        pts, labels = arrays[f"boundary_{which}_points"], arrays[f"boundary_{which}_labels"]
        for k, name in enumerate(names):
            sel = labels == k
            if sel.any():
                ax.scatter(*pts[sel].T, s=size, color=colors[k], edgecolors=edge,
                           linewidths=0.6, label=f"{name} ({which})", alpha=0.9)
    ax.set(xlim=(gx[0], gx[-1]), ylim=(gy[0], gy[-1]), xlabel="x0", ylabel="x1",
           title=_heading(title, "decision boundary (shade: confidence)"))
    ax.legend(fontsize="x-small", loc="upper right", ncol=2 if len(names) > 3 else 1)
    return _save(fig, path)


def plot_latent_space(arrays: dict, path: Path, title: str = "") -> Path:
    """The test codes in two dimensions, coloured by class when the dataset has classes."""
    codes, axes_names = arrays["latent_codes"], [str(a) for a in arrays["latent_axes"]]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 6))
    if "latent_labels" in arrays:
        labels, names = arrays["latent_labels"], [str(n) for n in arrays["latent_class_names"]]
        for k, (name, color) in enumerate(zip(names, class_colors(len(names)))):
            sel = labels == k
            if sel.any():
                ax.scatter(*codes[sel].T, s=10, color=color, alpha=0.75, label=name)
        ax.legend(fontsize="small", markerscale=2, loc="best", title="class")
    else:
        ax.scatter(*codes.T, s=10, color="tab:blue", alpha=0.6)
    ax.set(xlabel=axes_names[0], ylabel=axes_names[1],
           title=_heading(title, f"latent space ({len(codes)} test samples)"))
    ax.grid(alpha=0.3)
    return _save(fig, path)


def mosaic(tiles: np.ndarray, cols: int, gap: int = 1) -> np.ndarray:
    """Tiles [n, h, w] (or [n, h, w, 3]) laid out in rows of `cols`, `gap` NaN pixels
    between them: one image, drawn at once (an axes per tile costs ~20 ms each)."""
    n, h, w = tiles.shape[:3]
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, *tiles.shape[3:]), np.nan)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = tile
    return out


def _plain(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _cmap(name: str):
    from matplotlib import colormaps
    return colormaps[name].with_extremes(bad="white")  # the gaps between tiles


def plot_filters(filters: np.ndarray, layer: str, path: Path, title: str = "") -> Path:
    """The first conv layer's kernels in rows of 8 (RGB for 3 input channels, else the first
    input channel on a diverging scale centred at 0)."""
    bound = float(np.abs(filters).max()) or 1.0
    cols = min(8, len(filters))
    plt = _pyplot()
    rows = math.ceil(len(filters) / cols)
    fig, ax = plt.subplots(figsize=(0.8 * cols + 1.2, 0.8 * rows + 0.8))
    if filters.shape[1] == 3:
        rgb = np.transpose(filters, (0, 2, 3, 1)) / (2 * bound) + 0.5
        ax.imshow(np.nan_to_num(mosaic(rgb, cols), nan=1.0), interpolation="nearest")
    else:
        image = ax.imshow(mosaic(filters[:, 0], cols), cmap=_cmap("RdBu_r"), vmin=-bound,
                          vmax=bound, interpolation="nearest")
        fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    _plain(ax)
    ax.set_title(_heading(title, f"filters of {layer} ({filters.shape[1]}x{filters.shape[2]}"
                                 f"x{filters.shape[3]})"), fontsize="medium")
    return _save(fig, path)


def _scaled(maps: np.ndarray) -> np.ndarray:
    """Each map to [0, 1] on its own (a flat map to 0.5)."""
    lo = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - lo
    return np.where(span > 0, (maps - lo) / np.where(span > 0, span, 1), 0.5)


def plot_feature_maps(arrays: dict, path: Path, title: str = "") -> Path:
    """One test image, and a row per conv layer of its feature maps (each scaled on its own)."""
    layers = [str(n) for n in arrays["feature_layers"]]
    maps = [arrays[f"feature_maps_{i}"] for i in range(len(layers))]
    image = arrays["feature_image"]
    plt = _pyplot()
    fig, axes = plt.subplots(1 + len(maps), 1, figsize=(9, 1.6 + 1.3 * len(maps)),
                             squeeze=False, gridspec_kw={"height_ratios": [1.2] + [1] * len(maps)})
    _show_image(axes[0][0], image, float(image.min()), float(image.max()))
    axes[0][0].set_title("input (one test image)", fontsize="small")
    for ax, layer, fmap in zip(axes[1:, 0], layers, maps):
        ax.imshow(mosaic(_scaled(fmap), cols=16), cmap=_cmap("viridis"),
                  interpolation="nearest")
        _plain(ax)
        ax.set_title(f"{layer}: {len(fmap)} channels, {fmap.shape[1]}x{fmap.shape[2]}",
                     fontsize="small")
    fig.suptitle(_heading(title, "feature maps"), fontsize="medium")
    fig.tight_layout()
    return _save(fig, path)
