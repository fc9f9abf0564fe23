"""Stage pack_images: a folder of labelled images (<dir>/<class>/*.jpg, the published layout)
as a frame shard with its labels — the images source's counterpart of the frames stage.

In:  the folder; --exclude: the test folder (a training image that is also a test image is
     left out); params.yaml (frames.size, frames.crop)
Out: --frames .npy shard, --index .csv (frame_id is the file name without extension),
     --labels .csv (frame_id,label: the class folder)
"""
from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import numpy as np

from maskinspect import CLASSES, cli, params as params_mod
from maskinspect.atomic import save_npy, write_csv
from maskinspect.errors import PipelineError
from maskinspect.frames import INDEX_HEADER
from maskinspect.images import load_image, read_labelled_folder

PUBLISHED_NAME = re.compile(r"^(?P<video>.+)-(?P<frame>\d+)$")  # A-12430: video A, frame 12430


def without_test_images(items, test_items, folder: Path, test_folder: Path):
    """Training images minus any that is also a test image (same bytes): a frame seen in
    training says nothing when tested. The published train/ and dev/ share one (C-10352)."""
    digest = lambda path: hashlib.sha256(path.read_bytes()).hexdigest()  # noqa: E731
    test_digests = {digest(path) for path, _ in test_items}
    test_names = {path.stem: path for path, _ in test_items}
    kept = []
    for path, label in items:
        if digest(path) in test_digests:
            print(f"pack_images: {path} is also in {test_folder}: left out of training", file=sys.stderr)
            continue
        if path.stem in test_names:
            raise PipelineError(f"{path}: a different image of the same name is in {test_folder} "
                                f"({test_names[path.stem]}); frame names must be unique")
        kept.append((path, label))
    return kept


@cli.stage("pack_images")
def main(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("folder", type=Path)
    p.add_argument("--frames", required=True, type=Path)
    p.add_argument("--index", required=True, type=Path)
    p.add_argument("--labels", required=True, type=Path)
    p.add_argument("--exclude", type=Path, help="a folder (the test folder) whose images must not be used here")
    args = p.parse_args(argv)
    cfg = params_mod.load(args.params)["frames"]
    items = read_labelled_folder(args.folder, CLASSES)
    if args.exclude:
        items = without_test_images(items, read_labelled_folder(args.exclude, CLASSES), args.folder, args.exclude)
    images = np.stack([load_image(path, cfg["size"], cfg["crop"]) for path, _ in items])
    rows = []
    for n, (path, _) in enumerate(items):
        m = PUBLISHED_NAME.match(path.stem)
        # Video and frame number from published-style names keep near-duplicate frames of
        # one video together in cross-validation; other names are their own group.
        video, frame = (m["video"], int(m["frame"])) if m else (path.stem, n)
        rows.append((path.stem, video, frame, ""))
    save_npy(args.frames, images)
    write_csv(args.index, INDEX_HEADER, rows)
    write_csv(args.labels, ("frame_id", "label"), [(path.stem, label) for path, label in items])
    counts = ", ".join(f"{c} {sum(1 for _, label in items if label == c)}" for c in CLASSES)
    print(f"pack_images: {args.folder}: {len(items)} images ({counts}) at {cfg['size']} px", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
