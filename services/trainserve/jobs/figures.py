"""What every PNG plot of a job shares (`jobs.plots`, `jobs.plots_inside`): matplotlib's Agg
backend, imported on first use; the resolution files are saved at; panel grids and images."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

DPI = 110


def pyplot():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    pyplot().close(fig)
    return path


def grid(n: int, cols: int = 3, size: tuple[float, float] = (4.6, 3.4)):
    """A figure with `n` panels in rows of at most `cols`; the unused panels hidden."""
    plt = pyplot()
    ncols = min(n, cols)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows),
                             squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def show_image(ax, image: np.ndarray, vmin: float, vmax: float) -> None:
    """One [C, H, W] image, grey for one channel, colour (scaled to [0, 1]) for three."""
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray_r", vmin=vmin, vmax=vmax, interpolation="nearest")
    else:
        rgb = (np.transpose(image, (1, 2, 0)) - vmin) / max(vmax - vmin, 1e-12)
        ax.imshow(np.clip(rgb, 0, 1), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
