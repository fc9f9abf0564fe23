"""Label Studio (https://labelstud.io), the field's labelling tool: the tasks the annotate stage
hands it, and its exports read back as labels.

Tasks: `tasks.json` (one task per frame to label; data.image is a local-files URL under the
project folder, data.frame_id names the frame) and `label_config.xml` (a Choices control named
`label` over the classes). Import both into a project whose local storage serves the checkout.

Exports read here, as label-studio-converter writes them:
- JSON (full): a list of tasks {id, data, annotations: [{result: [{type: "choices", from_name,
  value: {choices: [...]}}], was_cancelled, ...}]}
- JSON_MIN: a list of records, one per annotation: the task's data fields, `id`, the control's
  name holding the choice (a string, or {"choices": [...]}), annotator, annotation_id, ...
- CSV: the JSON_MIN records as columns (the choice a string), one row per annotation.
A frame is named by the task's `frame_id` field, else by its image's file name (Label Studio
prefixes an uploaded file's name with 8 hex digits and a dash; that prefix is dropped). A
cancelled annotation is ignored; two annotators who disagree on a frame are an error naming it.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from maskinspect import CLASSES
from maskinspect.errors import PipelineError

CONTROL = "label"   # the Choices control's name in label_config.xml
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")
# Columns Label Studio adds to a task's data in JSON_MIN and CSV exports: never a choice.
_BOOKKEEPING = {"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "frame_id",
                "image", "video", "frame", "time", "set", "order"}


def label_config() -> str:
    choices = "\n".join(f'    <Choice value="{c}" hotkey="{i + 1}"/>' for i, c in enumerate(CLASSES))
    return (f'<View>\n  <Image name="image" value="$image" zoom="true"/>\n  <Header value="$video at $time s ($set)"/>\n'
            f'  <Choices name="{CONTROL}" toName="image" choice="single" showInLine="true" required="true">\n'
            f"{choices}\n  </Choices>\n</View>\n")


def tasks(frames: list[dict], image_url) -> list[dict]:
    """Label Studio tasks for frames ({frame_id, video, frame, time, set, order}); image_url(frame_id)
    gives each task's image."""
    return [{"data": {"image": image_url(f["frame_id"]), **f}} for f in frames]


def is_export(path: Path) -> bool:
    """Whether a labels path is a Label Studio export rather than our own frame_id,label CSV."""
    if path.suffix.lower() == ".json":
        return True
    if path.suffix.lower() != ".csv" or not path.is_file():
        return False
    with path.open(newline="") as f:
        header = next(csv.reader(f), [])
    return "annotation_id" in header


def _frame_id(data: dict, where: str) -> str:
    if data.get("frame_id"):
        return str(data["frame_id"]).strip()
    image = str(data.get("image") or "")
    if not image:
        raise PipelineError(f"{where}: no frame_id and no image in the task's data")
    query = parse_qs(urlparse(image).query)
    name = Path(unquote(query["d"][0] if "d" in query else urlparse(image).path)).stem
    return _UPLOAD_PREFIX.sub("", name)


def _choice(value, where: str) -> str | None:
    if isinstance(value, dict):
        value = value.get("choices")
    if isinstance(value, list):
        if len(value) != 1:
            raise PipelineError(f"{where}: {len(value)} choices for one frame (the control must be single-choice)")
        value = value[0]
    return str(value).strip() if value not in (None, "") else None


def _control(record: dict) -> str | None:
    """The key holding the choice in a JSON_MIN record or CSV row: `label`, else the one other
    field whose value is a class."""
    if CONTROL in record:
        return CONTROL
    candidates = [k for k, v in record.items() if k not in _BOOKKEEPING and
                  (v in CLASSES or (isinstance(v, dict) and "choices" in v))]
    return candidates[0] if len(candidates) == 1 else None


def _from_full(task: dict, where: str) -> list[str]:
    found = []
    for annotation in task.get("annotations") or []:
        if annotation.get("was_cancelled"):
            continue
        for result in annotation.get("result") or []:
            if result.get("type") == "choices":
                choice = _choice(result.get("value"), where)
                if choice:
                    found.append(choice)
    return found


def _from_min(record: dict, where: str) -> list[str]:
    key = _control(record)
    choice = _choice(record.get(key), where) if key else None
    return [choice] if choice else []


MAX_DEPTH = 64   # an export nests about 6 deep; a hostile one could nest deep enough to crash the parser


def nesting(text: str) -> int:
    """How deep a JSON text's brackets nest, found without parsing it (strings left out): the C
    parser recurses once a level, and a deep enough text overflows its stack before Python can
    stop it."""
    import re

    import numpy as np

    bare = re.sub(r'"(?:[^"\\]|\\.)*"', "", text)  # strings out, escaped quotes included
    codes = np.frombuffer(bare.encode("utf-8", "replace"), dtype=np.uint8)
    step = np.zeros(len(codes), dtype=np.int32)
    step[(codes == ord("[")) | (codes == ord("{"))] = 1
    step[(codes == ord("]")) | (codes == ord("}"))] = -1
    return int(np.cumsum(step).max(initial=0))


def _records(path: Path) -> list[tuple[dict, list[str], str]]:
    """(task data, its labels, where) per task or annotation record of an export."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        return [(row, _from_min(row, f"{path} line {n + 2}"), f"{path} line {n + 2}") for n, row in enumerate(rows)]
    try:
        text = path.read_text()
        if nesting(text) > MAX_DEPTH:
            raise RecursionError
        items = json.loads(text)
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{path}: not a Label Studio JSON export ({exc})") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise PipelineError(f"{path}: not a Label Studio JSON export (expected a list of tasks)")
    out = []
    for n, item in enumerate(items):
        where = f"{path} task {item.get('id', n + 1)}"
        if "annotations" in item or "data" in item:
            out.append((item.get("data") or {}, _from_full(item, where), where))
        else:
            out.append((item, _from_min(item, where), where))
    return out


def read_export(path: str | Path) -> list[tuple[str, str, str]]:
    """(frame_id, label, where) of every labelled frame of a Label Studio export."""
    path = Path(path)
    by_frame: dict[str, tuple[str, str]] = {}
    for data, labels, where in _records(path):
        if not labels:
            continue  # a task nobody labelled (yet)
        fid = _frame_id(data, where)
        for label in labels:
            if fid in by_frame and by_frame[fid][0] != label:
                raise PipelineError(f"{where}: {fid} is {label!r} here but {by_frame[fid][0]!r} at "
                                    f"{by_frame[fid][1]} (annotators disagree: settle it in Label Studio)")
            by_frame.setdefault(fid, (label, where))
    return [(fid, label, where) for fid, (label, where) in by_frame.items()]
