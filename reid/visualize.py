"""Pictures: ranked-result sheets (each query with its top-k, matches framed green), identity
sheets (one row of crops per identity) and training curves.

Drawn through matplotlib's object API (a `Figure` of its own, rendered to PNG by Agg), so
importing this module switches no backend and leaves pyplot's global figures alone: a notebook
that imports the engine keeps its own backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from reid.files import atomic_open
from reid.images import ImageLike, as_rgb, read_image
from reid.rules import PositiveInt, checked

GREEN, RED, GREY = "#1a9e3a", "#d62728", "#888888"


def _framed(ax, image: np.ndarray, colour: str, title: str) -> None:
    ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(4)
    ax.set_title(title, fontsize=7, color=colour)


def _save(fig: Figure, path: Path, title: str) -> Path:
    """Title, lay out and write as PNG (atomically, like every file the project writes)."""
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_open(path) as f:
        fig.savefig(f, dpi=80, format="png")
    return path


@checked
def ranked_sheet(path: Path, distmat: np.ndarray, query_paths: Sequence[Path], gallery_paths: Sequence[Path],
                 query_labels: np.ndarray | None = None, gallery_labels: np.ndarray | None = None,
                 n_queries: PositiveInt = 8, top_k: PositiveInt = 10, title: str = "") -> Path:
    """Write a PNG: one row per query (the first `n_queries`), its `top_k` nearest gallery images.

    With labels, a match is framed green and a non-match red; without, frames are grey.
    """
    n_queries, top_k = min(n_queries, len(distmat)), min(top_k, distmat.shape[1])
    order = np.argsort(distmat[:n_queries], axis=1, kind="stable")[:, :top_k]
    fig = Figure(figsize=(1.1 * (top_k + 1), 2.0 * n_queries))
    axes = fig.subplots(n_queries, top_k + 1, squeeze=False)
    for row in range(n_queries):
        _framed(axes[row, 0], read_image(query_paths[row]), "black", "query")
        for col, g in enumerate(order[row], start=1):
            if query_labels is None or gallery_labels is None:
                colour = GREY
            else:
                colour = GREEN if gallery_labels[g] == query_labels[row] else RED
            _framed(axes[row, col], read_image(gallery_paths[g]), colour, f"{col}: {distmat[row, g]:.3f}")
    return _save(fig, path, title)


@checked
def identity_sheet(path: Path, paths: Sequence[ImageLike], labels: np.ndarray, truth: np.ndarray | None = None,
                   max_rows: PositiveInt = 24, per_row: PositiveInt = 12, title: str = "") -> Path:
    """Write a PNG: one row per identity, largest first (the first `max_rows`), up to `per_row`
    of its crops. With ground truth, a crop of the identity's most common true player is
    framed green and any other red; without, frames are grey. `paths` may be images in memory."""
    ids, sizes = np.unique(labels, return_counts=True)
    order = ids[np.argsort(-sizes, kind="stable")][:max_rows]
    fig = Figure(figsize=(1.0 * per_row, 1.9 * max(len(order), 1)))
    axes = fig.subplots(max(len(order), 1), per_row, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for row, identity in enumerate(order):
        members = np.flatnonzero(labels == identity)
        major = None if truth is None else pd.Series(truth[members]).mode().iloc[0]
        for col, i in enumerate(members[:per_row]):
            colour = GREY if truth is None else GREEN if truth[i] == major else RED
            axes[row, col].axis("on")
            _framed(axes[row, col], as_rgb(paths[i], i), colour, f"{identity} ({len(members)})" if col == 0 else "")
    return _save(fig, path, title)


CURVES = {"mAP": "plain", "mAP_kr": "k-reciprocal", "mAP_hw": "hard-weight"}


def training_curves(history: pd.DataFrame, path: Path, title: str = "") -> Path:
    """Write a PNG of a run's metrics.csv: loss, learning rate and validation mAP per epoch
    (plain and, where the run measured them, after each re-ranking)."""
    fig = Figure(figsize=(12, 3.2))
    axes = fig.subplots(1, 3)
    epochs = history["epoch"]
    axes[0].plot(epochs, history["loss"], marker="o")
    axes[0].set_title("training loss")
    axes[1].plot(epochs, history["lr"], marker="o")
    axes[1].set_title("learning rate (end of epoch)")
    axes[1].ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    for column, label in CURVES.items():
        if column in history:
            axes[2].plot(epochs, 100 * history[column], marker="o", label=label)
    axes[2].set_title("validation mAP (%)")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    return _save(fig, path, title)
