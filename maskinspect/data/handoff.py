"""The hand-off to a person: the frames that lack labels, written so they can be labelled in the
project's own page (`maskinspect label`), in Label Studio, or in a spreadsheet.

<folder>/ (data/labels/to_label/):
  queue.json             the frames in labelling order (the coreset's, most informative first,
                         then the test sample), with video, frame number and time
  images/<frame_id>.png  each frame large: decoded again from its video at the sensor's size
  context/<frame_id>.png its neighbours in the video (two before, two after), the frame outlined
  label-studio/          tasks.json and label_config.xml (maskinspect/data/label_studio.py)
<table> (data/labels/to_label.csv): frame_id,label with the label empty, to fill in by hand.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from maskinspect import CLASSES
from maskinspect.atomic import atomic_path, write_csv
from maskinspect.data.label_studio import label_config, tasks

FOLDER = "data/labels/to_label"   # the hand-off, beside the labels the annotate stage writes
TABLE = "data/labels/to_label.csv"
CONTEXT = 2          # neighbours each side
CONTEXT_PX = 96      # a neighbour's size in the strip
OUTLINE = (255, 196, 0)


def wanted(selected: list[str], test: list[str]) -> list[str]:
    """The frames to label, in labelling order: the selection's, then the test sample's."""
    chosen = set(selected)
    return selected + [t for t in test if t not in chosen]


def screen(missing: list[str], test: set[str], total: int, labels_file: str) -> str:
    """What a person reads when the build stops for labels: what is needed, and the command."""
    to_test = sum(1 for f in missing if f in test)
    by_hand = (f"fill in {TABLE} and save it as {labels_file}" if labels_file.endswith(".csv")
               else f"fill in {TABLE} and point data.labels at it")
    return (f"Labels needed: {len(missing)} of the {total} frames chosen for labelling have none yet "
            f"({len(missing) - to_test} to train on, {to_test} for the test sample).\n"
            f"  Label them in your browser:  scripts/venv.sh maskinspect label\n"
            f"  or in Label Studio:          import {FOLDER}/label-studio/ (README, \"Your own videos\")\n"
            f"  or by hand:                  {by_hand}\n"
            f"The answers go to {labels_file}. Then run the build again: it carries on from here.")


def missing_labels(root: Path, labels_file: str | None, selected_csv: str, test_csv: str) -> tuple[list[str], set[str], int]:
    """(frames without a label in labelling order, the test sample, how many were chosen) of a
    checkout whose selection exists; the labels file as it stands (problems in it are the annotate
    stage's to report)."""
    from .labels import read_labelled, read_labels

    selected, test = read_labelled(root / selected_csv)[0], read_labelled(root / test_csv)[0]
    chosen = wanted(selected, test)
    have = {lab.frame_id for lab in read_labels(root / labels_file)} if labels_file else set()
    return [f for f in chosen if f not in have], set(test), len(chosen)


def context_strip(neighbours: list[np.ndarray], centre: int) -> np.ndarray:
    """Neighbouring frames side by side, 4 px apart, the frame being labelled outlined."""
    from PIL import Image

    tiles = []
    for i, img in enumerate(neighbours):
        tile = np.asarray(Image.fromarray(np.asarray(img)).resize((CONTEXT_PX, CONTEXT_PX), Image.BILINEAR)).copy()
        if i == centre:
            tile[:3], tile[-3:], tile[:, :3], tile[:, -3:] = OUTLINE, OUTLINE, OUTLINE, OUTLINE
        tiles.append(tile)
        tiles.append(np.full((CONTEXT_PX, 4, 3), 255, np.uint8))
    return np.concatenate(tiles[:-1], axis=1)


def write(folder: Path, table: Path, labels_file: str, frames: list[dict], large: dict, context: dict,
          url_root: Path) -> None:
    """Write the hand-off for `frames` ({frame_id, video, frame, time, set, order}, in labelling
    order); large and context map frame_id to images. Task images are served from url_root (the
    checkout, as Label Studio's local-files document root)."""
    from PIL import Image

    with atomic_path(folder) as tmp:
        for sub in ("images", "context", "label-studio"):
            (tmp / sub).mkdir(parents=True)
        for f in frames:
            fid = f["frame_id"]
            Image.fromarray(np.asarray(large[fid])).save(tmp / "images" / f"{fid}.png")
            Image.fromarray(context[fid]).save(tmp / "context" / f"{fid}.png")
        queue = {"labels_file": labels_file, "classes": list(CLASSES), "frames": frames}
        (tmp / "queue.json").write_text(json.dumps(queue, indent=1) + "\n")
        relative = folder.resolve().relative_to(url_root.resolve()).as_posix() if folder.resolve().is_relative_to(
            url_root.resolve()) else folder.resolve().as_posix()

        def url(fid):
            return f"/data/local-files/?d={relative}/images/{fid}.png"

        (tmp / "label-studio" / "tasks.json").write_text(json.dumps(tasks(frames, url), indent=1) + "\n")
        (tmp / "label-studio" / "label_config.xml").write_text(label_config())
    write_csv(table, ("frame_id", "label"), [(f["frame_id"], "") for f in frames])
