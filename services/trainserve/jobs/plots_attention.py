"""The attention-map plot of a job whose `evaluation.npz` holds `training.attention`'s arrays
(a BERT model): one heat map per layer and head for the first sample of the final split,
queries down, keys across, each row summing to 1. Plain functions, arrays in, PNG out."""
from __future__ import annotations

from pathlib import Path

import numpy as np

ATTENTION = "attention.png"
MAX_HEADS = 8       # per layer, left to right
MAX_LABELED = 48    # tokens with a tick label; longer sequences are drawn unlabelled


def attention_plots(arrays: dict, out_dir: Path, title: str = "") -> list[Path]:
    """[the attention plot] when `arrays` has the attention arrays, else []."""
    if "attention_weights" not in arrays:
        return []
    return [plot_attention(arrays["attention_weights"], list(arrays["attention_tokens"]),
                           Path(out_dir) / ATTENTION, title)]


def _label(token: str) -> str:
    return {" ": "␣", "\n": "⏎", "\t": "⇥"}.get(token, token)


def plot_attention(weights: np.ndarray, tokens: list[str], path: Path, title: str = "") -> Path:
    """`weights` [layers, heads, n, n] as a grid of heat maps (a row per layer)."""
    from trainserve.jobs.figures import pyplot, save
    plt = pyplot()
    layers, heads = weights.shape[0], min(weights.shape[1], MAX_HEADS)
    size = 2.2 + 0.07 * len(tokens)
    fig, axes = plt.subplots(layers, heads, figsize=(size * heads, size * layers),
                             squeeze=False)
    labels = [_label(t) for t in tokens] if len(tokens) <= MAX_LABELED else None
    for li in range(layers):
        for hi in range(heads):
            ax = axes[li][hi]
            ax.imshow(weights[li, hi], cmap="viridis", vmin=0.0, vmax=1.0,
                      interpolation="nearest")
            ax.set_title(f"layer {li + 1}, head {hi + 1}", fontsize=9)
            _ticks(ax, labels)
    text = "".join(t for t in tokens if not t.startswith("["))
    fig.suptitle(f"{title + ': ' if title else ''}attention (rows: queries, columns: keys)\n"
                 f"{text[:80]!r}", fontsize=10)
    return save(fig, path)


def _ticks(ax, labels: list[str] | None) -> None:
    if labels is None:
        ax.set_xticks([])
        ax.set_yticks([])
        return
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels, fontsize=6, family="monospace")
    ax.set_yticks(ticks, labels, fontsize=6, family="monospace")
