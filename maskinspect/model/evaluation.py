"""Classification metrics that do not hide the rare class: balanced accuracy, per-class
recall and the confusion matrix beside plain accuracy (the published test split is 72 %
no_mask, so a model that never says `bad` still scores 0.8 accuracy)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from maskinspect import CLASSES


def confusion(actual: Sequence[str], predicted: Sequence[str], classes: Sequence[str] = CLASSES) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    m = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for a, p in zip(actual, predicted):
        m[index[a], index[p]] += 1
    return m


def report(actual: Sequence[str], predicted: Sequence[str], classes: Sequence[str] = CLASSES) -> dict:
    """accuracy, balanced_accuracy (mean recall over the classes present), recall per class,
    confusion matrix (rows actual, columns predicted), count."""
    if len(actual) != len(predicted):
        raise ValueError("actual and predicted differ in length")
    m = confusion(actual, predicted, classes)
    support = m.sum(axis=1)
    recall = {c: (float(m[i, i] / support[i]) if support[i] else None) for i, c in enumerate(classes)}
    present = [r for r in recall.values() if r is not None]
    n = int(m.sum())
    return {
        "count": n,
        "accuracy": round(float(np.trace(m) / n), 4) if n else None,
        "balanced_accuracy": round(float(np.mean(present)), 4) if present else None,
        "recall": {c: (round(r, 4) if r is not None else None) for c, r in recall.items()},
        "confusion": {"classes": list(classes), "matrix": m.tolist()},
    }


def labels_of(logits: np.ndarray, classes: Sequence[str] = CLASSES) -> list[str]:
    return [classes[i] for i in np.asarray(logits).argmax(axis=1)]
