"""Labels: a CSV (frame_id,label[,...]), a Label Studio export (label_studio.py) or labelled
folders (<dir>/<class>/<frame_id>.<ext>, the published layout), checked row by row.

Errors name the row: an unknown label, a frame labelled twice, a frame that does not exist.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from maskinspect import CLASSES
from maskinspect.errors import PipelineError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm")


@dataclass(frozen=True)
class Label:
    frame_id: str
    label: str
    where: str   # "labels.csv line 12" or the image path


def read_csv_labels(path: Path) -> list[Label]:
    try:
        f = path.open(newline="")
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read labels ({exc.strerror})") from None
    with f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        if "frame_id" not in fields or "label" not in fields:
            raise PipelineError(f"{path}: line 1: expected a header with frame_id and label, found {fields}")
        out = []
        for row in reader:
            where = f"{path} line {reader.line_num}"
            fid, label = (row.get("frame_id") or "").strip(), (row.get("label") or "").strip()
            if not fid:
                raise PipelineError(f"{where}: empty frame_id")
            if not label:
                continue  # not labelled yet (a to_label.csv being filled in)
            out.append(Label(fid, label, where))
    return out


def read_folder_labels(root: Path) -> list[Label]:
    out = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            raise PipelineError(f"{entry}: expected only class folders ({', '.join(CLASSES)}) in {root}")
        for image in sorted(entry.iterdir()):
            if image.suffix.lower() in IMAGE_SUFFIXES:
                out.append(Label(image.stem, entry.name, str(image)))
    return out


# A labels file or a Label Studio export comes from elsewhere: bounded before it is parsed. An
# export of 100,000 frames is about 100 MB; parsing 256 MB of JSON holds about 2 GB.
MAX_LABELS_BYTES = 256 << 20


def read_labels(path: str | Path) -> list[Label]:
    import csv as csv_module

    from maskinspect.data.label_studio import is_export, read_export

    path = Path(path)
    if not path.exists():
        return []
    if path.is_dir():
        return read_folder_labels(path)
    size = path.stat().st_size
    if size > MAX_LABELS_BYTES:
        raise PipelineError(f"{path}: {size / 1e6:,.0f} MB, more than a labels file or export may be "
                            f"({MAX_LABELS_BYTES / 1e6:.0f} MB): refused unread")
    try:
        if is_export(path):
            return [Label(fid, label, where) for fid, label, where in read_export(path)]
        return read_csv_labels(path)
    except RecursionError:
        raise PipelineError(f"{path}: nests deeper than any labels file or export: refused") from None
    except csv_module.Error as exc:
        raise PipelineError(f"{path}: not a readable CSV ({exc})") from None
    except UnicodeDecodeError as exc:
        raise PipelineError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def check(labels: list[Label], known: "FrameRanges | None" = None) -> dict[str, str]:
    """frame_id -> label, after checking each row; errors name the row."""
    result: dict[str, str] = {}
    first_seen: dict[str, str] = {}
    for lab in labels:
        if lab.label not in CLASSES:
            raise PipelineError(f"{lab.where}: unknown label {lab.label!r} for {lab.frame_id} "
                                f"(labels are {', '.join(CLASSES)})")
        if lab.frame_id in result:
            raise PipelineError(f"{lab.where}: {lab.frame_id} is labelled twice (first at {first_seen[lab.frame_id]})")
        if known is not None:
            problem = known.problem(lab.frame_id)
            if problem:
                raise PipelineError(f"{lab.where}: {problem}")
        result[lab.frame_id] = lab.label
        first_seen[lab.frame_id] = lab.where
    return result


class FrameRanges:
    """Which frame ids exist: every extracted frame, and every frame of a known video up to
    its last extracted frame (labels made at another sampling rate stay valid)."""

    def __init__(self, index_rows: list[dict]):
        self.ids = {r["frame_id"] for r in index_rows}
        self.last: dict[str, int] = {}
        self.gap: dict[str, int] = {}
        per_video: dict[str, list[int]] = {}
        for r in index_rows:
            per_video.setdefault(r["video"], []).append(int(r["frame"]))
        for video, numbers in per_video.items():
            numbers.sort()
            self.last[video] = numbers[-1]
            self.gap[video] = max([b - a for a, b in zip(numbers, numbers[1:])] or [1])

    def problem(self, fid: str) -> str | None:
        if fid in self.ids:
            return None
        video, _, number = fid.rpartition("-")
        if video not in self.last or not number.isdigit():
            return f"frame {fid} does not exist (no video {video or fid!r} among the extracted videos)"
        limit = self.last[video] + self.gap[video]
        if int(number) > limit:
            return f"frame {fid} does not exist (video {video} has frames 0 to {limit})"
        return None


def read_labelled(paths) -> tuple[list[str], list[str]]:
    """Frame ids and labels of the labels files stages wrote (frame_id,label), in file order: one
    path, or several (the videos' and the images' labels) read one after the other."""
    ids: list[str] = []
    labels: list[str] = []
    for path in (paths if isinstance(paths, (list, tuple)) else [paths]):
        with Path(path).open(newline="") as f:
            rows = list(csv.DictReader(f))
        ids += [r["frame_id"] for r in rows]
        labels += [r.get("label", "") for r in rows]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise PipelineError(f"frame {dup} is in more than one labels file ({', '.join(map(str, paths))})")
    return ids, labels


def shown(paths) -> str:
    """Paths as a person reads them in a message."""
    return ", ".join(map(str, paths)) if isinstance(paths, (list, tuple)) else str(paths)


def export_to_label(folder: Path, table: Path, ids: list[str], images) -> None:
    """Frames for a person: PNGs enlarged 4x (pixel for pixel), and a CSV to fill in."""
    import numpy as np
    from PIL import Image

    from maskinspect.atomic import atomic_path, write_csv

    with atomic_path(folder) as tmp:
        tmp.mkdir()
        for fid, img in zip(ids, images):
            pil = Image.fromarray(np.asarray(img))
            pil.resize((pil.width * 4, pil.height * 4), Image.NEAREST).save(tmp / f"{fid}.png")
    write_csv(table, ("frame_id", "label"), [(fid, "") for fid in ids])
