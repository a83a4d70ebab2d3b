"""The attention-map plot of a job whose `evaluation.npz` holds `training.attention`'s arrays
(BERT, GPT, seq2seq with attention, the transformer encoder): one heat map per example, layer
and head, queries down, keys across, each row summing to 1, the tokens on the axes. Plain
functions, arrays in, PNG out."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

ATTENTION = "attention.png"
MAX_HEADS = 8       # per layer, left to right
MAX_LABELED = 48    # tokens with a tick label; longer sequences are drawn unlabelled
MAX_COLUMNS = 4     # panels in a row when there is one head


@dataclass(frozen=True)
class Panel:
    weights: np.ndarray   # [queries, keys]
    queries: list[str]
    keys: list[str]
    title: str


def attention_plots(arrays: dict, out_dir: Path, title: str = "") -> list[Path]:
    """[the attention plot] when `arrays` has the attention arrays, else []."""
    if "attention_weights" not in arrays:
        return []
    weights, queries, keys = _examples(arrays)
    axes = tuple(str(a) for a in arrays.get("attention_axes", ("queries", "keys")))
    return [plot_attention(weights, queries, keys, Path(out_dir) / ATTENTION, title, axes)]


def _examples(arrays: dict) -> tuple[np.ndarray, list[list[str]], list[list[str]]]:
    """[S, layers, heads, queries, keys] and each example's axis texts, from either layout
    (`training.attention`; the older one: one example, `attention_tokens` on both axes)."""
    weights = np.asarray(arrays["attention_weights"])
    if "attention_tokens" in arrays:
        tokens = [str(t) for t in arrays["attention_tokens"]]
        return weights[None], [tokens], [tokens]
    return (weights, [[str(t) for t in row] for row in arrays["attention_queries"]],
            [[str(t) for t in row] for row in arrays["attention_keys"]])


def _label(token: str) -> str:
    return {" ": "␣", "\n": "⏎", "\t": "⇥"}.get(token, token)


def _panels(weights: np.ndarray, queries: list[list[str]], keys: list[list[str]]
            ) -> list[Panel]:
    many = len(weights) > 1
    return [Panel(weights[s, li, hi], queries[s], keys[s],
                  f"{f'example {s + 1}, ' if many else ''}layer {li + 1}, head {hi + 1}")
            for s in range(len(weights)) for li in range(weights.shape[1])
            for hi in range(min(weights.shape[2], MAX_HEADS))]


def plot_attention(weights: np.ndarray, queries: list[list[str]], keys: list[list[str]],
                   path: Path, title: str = "",
                   axes: tuple[str, ...] = ("queries", "keys")) -> Path:
    """`weights` [examples, layers, heads, queries, keys] as a grid of heat maps: a row per
    example and layer, a column per head (one head: up to `MAX_COLUMNS` panels a row)."""
    from trainserve.jobs.figures import pyplot, save
    plt = pyplot()
    panels = _panels(weights, queries, keys)
    heads = min(weights.shape[2], MAX_HEADS)
    cols = heads if heads > 1 else min(len(panels), MAX_COLUMNS)
    rows = -(-len(panels) // cols)
    w = 2.2 + 0.07 * len(keys[0])
    h = 2.2 + 0.07 * len(queries[0])
    fig, grid = plt.subplots(rows, cols, figsize=(w * cols, h * rows + 0.6), squeeze=False,
                             layout="constrained")  # room for the title above the panels
    for ax in grid.flat[len(panels):]:
        ax.set_axis_off()
    for ax, panel in zip(grid.flat, panels):
        ax.imshow(panel.weights, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest",
                  aspect="auto")
        ax.set_title(panel.title, fontsize=9)
        _ticks(ax, panel.queries, panel.keys)
    fig.suptitle(f"{title + ': ' if title else ''}attention (rows: {axes[0]}, columns: "
                 f"{axes[1]}){_text(keys) or ''}", fontsize=10)
    return save(fig, path)


def _text(keys: list[list[str]]) -> str | None:
    """The one example's text on a line of its own, when its keys are characters."""
    chars = [t for t in keys[0] if not t.startswith("[")]
    if len(keys) > 1 or not all(len(t) == 1 for t in chars):
        return None
    return f"\n{''.join(chars)[:80]!r}"


def _ticks(ax, queries: list[str], keys: list[str]) -> None:
    for labels, set_ticks in ((queries, ax.set_yticks), (keys, ax.set_xticks)):
        if len(labels) > MAX_LABELED:
            set_ticks([])
        else:
            set_ticks(range(len(labels)), [_label(t) for t in labels], fontsize=6,
                      family="monospace")
