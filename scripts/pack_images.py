"""Stage pack_images: labelled image folders (<dir>/<class>/*.jpg, the published layout) as frame
shards with their labels: the images source's counterpart of extract_frames and annotate.

In:  --train-dir and --test-dir folders; params.yaml (frames.size, frames.crop)
Out: per folder a shard (--*-frames .npy), its index (--*-index .csv; frame_id is the file
     name without extension) and its labels (--*-labels .csv, frame_id,label: the class
     folder); and the images as the camera's sensor window holds them (--*-camera .npy at
     240 x 240, --*-camera-index .csv), for the figures through the camera's input path.
     A training image that is also a test image (same bytes) is left out, and said so.
"""
from __future__ import annotations

import sys

import numpy as np

from maskinspect import CLASSES
from maskinspect.workflow import runner as cli
from maskinspect.atomic import save_npy, write_csv
from maskinspect.data.frames import INDEX_HEADER
from maskinspect.device.camera import SENSOR
from maskinspect.workflow import pinned
from maskinspect.data.images import index_rows, load_image, load_sensor_image, read_labelled_folder, without_test_images


@cli.stage("pack_images")
def main(args, params):
    cfg = params["frames"]
    # a folder, or the pin of an outside input (its files fetched and checked against the pin)
    args.train_dir, args.test_dir = pinned.local(args.train_dir), pinned.local(args.test_dir)
    test_items = read_labelled_folder(args.test_dir, CLASSES)
    train_items = without_test_images(read_labelled_folder(args.train_dir, CLASSES), test_items,
                                      args.train_dir, args.test_dir)
    for part, items, folder in (("train", train_items, args.train_dir), ("test", test_items, args.test_dir)):
        out = {role: getattr(args, f"{part}_{role}") for role in ("frames", "index", "labels", "camera", "camera_index")}
        save_npy(out["frames"], np.stack([load_image(path, cfg["size"], cfg["crop"]) for path, _ in items]))
        write_csv(out["index"], INDEX_HEADER, index_rows(items))
        write_csv(out["labels"], ("frame_id", "label"), [(path.stem, label) for path, label in items])
        save_npy(out["camera"], np.stack([load_sensor_image(path, SENSOR) for path, _ in items]))
        write_csv(out["camera_index"], INDEX_HEADER, index_rows(items))
        counts = ", ".join(f"{c} {sum(1 for _, label in items if label == c)}" for c in CLASSES)
        print(f"pack_images: {folder}: {len(items)} images ({counts}) at {cfg['size']} px", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
