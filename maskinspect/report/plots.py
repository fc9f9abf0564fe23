"""PNG figures with stable bytes: Agg backend, fixed size and DPI, no timestamp or version metadata."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from maskinspect.atomic import atomic_path


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=(width, height), dpi=100)


def _save(plt, fig, path: str | Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)


def embedding_map(path: str | Path, xy: np.ndarray, selected: Sequence[int], test: Sequence[int],
                  title: str) -> None:
    plt, fig = _figure(6.4, 5.2)
    ax = fig.add_subplot(1, 1, 1)
    # Before any label: roles in shapes and neutral tones (the class colours, red, green and blue,
    # mean bad, good and no mask everywhere else)
    ax.scatter(xy[:, 0], xy[:, 1], s=3, c="#bbbbbb", label=f"all frames ({len(xy)})", linewidths=0)
    if len(test):
        ax.scatter(xy[test, 0], xy[test, 1], s=12, c="white", edgecolors="#444444", marker="s", linewidths=0.8,
                   label=f"test sample ({len(test)})")
    if len(selected):
        ax.scatter(xy[selected, 0], xy[selected, 1], s=14, c="#222222", marker="o",
                   label=f"selected to label ({len(selected)})", linewidths=0)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    _save(plt, fig, path)


def confusion_matrix(path: str | Path, matrix: np.ndarray, classes: Sequence[str], title: str) -> None:
    plt, fig = _figure(4.6, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    row_sums = matrix.sum(axis=1, keepdims=True)
    share = matrix / np.maximum(row_sums, 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{int(matrix[i, j])}", ha="center", va="center",
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    _save(plt, fig, path)
