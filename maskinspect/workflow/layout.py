"""What params.yaml says about the data, in file names: which kind of source, which videos,
which frame shards, which labels. The stage table (stages.py) refers to these by name."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from maskinspect.workflow import params as params_mod
from maskinspect.errors import PipelineError
from maskinspect.data.naming import VIDEO_NAME, demo_video_names, list_videos
from maskinspect.workflow import pinned

DEMO_TRUTH = "data/demo/truth.csv"


@dataclass
class Layout:
    root: Path
    source: str                       # demo | videos | images | videos+images
    videos: dict[str, dict[str, str]]  # video name -> {"path": file}: one extract_frames job each
    demo_videos: list[str]            # render_demo's outputs
    shards: list[str]                 # every frame shard (.npy; each has a .csv index beside it)
    train_shards: list[str]           # what pretraining and cross-validation see
    video_shards: list[str]
    video_files: list[str]
    indexes: list[str]                # the video shards' indexes (selection works on video frames)
    camera_shards: list[str]          # the labelled frames as the camera's sensor window holds them (240 px)
    selected: str | None              # the frames selected for labelling (videos only): the report shows them
    rounds: list[str]                 # rounds of active learning (maskinspect propose), in order: more frames to label
    embeddings: str | None            # ... and the embedding map of the video frames
    embedding_ids: str | None
    labels: str | None                # annotate's labels source (a CSV, a Label Studio export or class folders)
    train_labels: list[str]           # labels of the training frames (from annotate, pack_images or both)
    test_labels: list[str]
    images_dir: str | None
    test_dir: str | None
    pretrain_init: str | None
    published_model: str | None
    firmware_libraries: list[str]     # the pins of OpenMV's libtflm, one per commit the claims name
    calibration_model: str | None
    crossval_metrics: str | None      # the cross-validation's figures (real data): the report's learning curve

    # Flags the table's `when` names.
    @property
    def always(self) -> bool:
        return True

    @property
    def from_videos(self) -> bool:
        return self.source in ("demo", "videos", "videos+images")

    @property
    def demo(self) -> bool:
        return self.source == "demo"

    @property
    def images(self) -> bool:
        return "images" in self.source

    @property
    def real(self) -> bool:
        """Camera footage (videos, labelled images or both), not the synthetic demo."""
        return self.source != "demo"

    @property
    def compare(self) -> bool:
        return self.real and self.published_model is not None


VIDEO_LABELS = ("data/labels/videos-train.csv", "data/labels/videos-test.csv")
IMAGE_LABELS = ("data/labels/images-train.csv", "data/labels/images-test.csv")
IMAGE_SHARDS = ("data/frames/images-train.npy", "data/frames/images-test.npy")
CAMERA_VIDEOS = "data/frames/camera-videos.npy"
SELECTED = "data/selection/selected.csv"
CROSSVAL = "metrics/crossval.json"
ROUNDS = "data/selection/rounds"   # round-01.csv, round-02.csv, ...: written by `maskinspect propose`, kept in git
EMBEDDINGS = ("data/embeddings/embeddings.npy", "data/embeddings/ids.csv")
CAMERA_IMAGES = ("data/frames/camera-images-train.npy", "data/frames/camera-images-test.npy")


def video_items(params: dict, root: Path) -> dict[str, dict[str, str]]:
    """Raw videos by name: the rendered demo videos, or the files in data.videos_dir."""
    data = params["data"]
    if data["source"] == "demo":
        return {n: {"path": f"data/demo/videos/{n}.mp4"} for n in demo_video_names(params["demo"]["videos"])}
    if "videos" not in data["source"]:
        return {}
    folder = Path(data["videos_dir"])
    videos = list_videos(root / folder)
    if not videos:
        raise PipelineError(f"{folder}: no videos found (data.source is {data['source']}); put your videos there "
                            f"or set data.source")
    items: dict[str, dict[str, str]] = {}
    for v in videos:
        if not VIDEO_NAME.match(v.stem):
            raise PipelineError(f"{v}: rename it: video names may hold letters, digits, '.', '_' and '-' only")
        if v.stem in items:
            raise PipelineError(f"{v}: two videos named {v.stem} (different extensions)")
        items[v.stem] = {"path": (folder / v.name).as_posix()}
    return items


def outside(value: str | None, key: str, root: Path) -> str | None:
    """A params value that names a file or folder: `pinned:<name>` becomes the pin's path (what
    both front ends track; the stage fetches the files), anything else stays the path it is."""
    name = pinned.name_of(value)
    if name is None:
        return value
    path = pinned.pin_path(name)
    if not (root / path).is_file():
        known = sorted(p.stem for p in (root / pinned.PINS).glob("*.yaml"))
        raise PipelineError(f"params.yaml: {key}: {value}: no pin {path} (pinned inputs: {', '.join(known)})")
    return path


def library_pins(claims: list[dict], root: Path) -> list[str]:
    """The pin of each OpenMV libtflm the claimed firmwares link, in the order first claimed."""
    commits = list(dict.fromkeys(c["libtflm"] for c in claims))
    return [outside(f"{pinned.PREFIX}openmv-libtflm-{c}", "firmware.claims", root) for c in commits]


def layout(params: dict, root: Path) -> Layout:
    """The layout for params as written in params.yaml (the recipe applied where it decides)."""
    eff = params_mod.effective(params)
    data = params["data"]
    source = data["source"]
    videos = video_items(params, root)
    video_shards = [f"data/frames/{name}.npy" for name in videos]
    images = "images" in source
    image_shards = list(IMAGE_SHARDS) if images else []
    # The test folder must not shape the model, even unlabelled: pretraining sees training frames only.
    train_shards = video_shards + image_shards[:1]
    return Layout(
        root=root, source=source, videos=videos,
        demo_videos=[v["path"] for v in videos.values()] if source == "demo" else [],
        shards=video_shards + image_shards, train_shards=train_shards, video_shards=video_shards,
        video_files=[v["path"] for v in videos.values()],
        indexes=[s[: -len(".npy")] + ".csv" for s in video_shards],
        camera_shards=([CAMERA_VIDEOS] if videos else []) + (list(CAMERA_IMAGES) if images else []),
        selected=SELECTED if videos else None, embeddings=EMBEDDINGS[0] if videos else None,
        rounds=[p.relative_to(root).as_posix() for p in sorted((root / ROUNDS).glob("round-*.csv"))] if videos else [],
        embedding_ids=EMBEDDINGS[1] if videos else None,
        labels=(DEMO_TRUTH if source == "demo" else data["labels"]) if videos else None,
        train_labels=([VIDEO_LABELS[0]] if videos else []) + ([IMAGE_LABELS[0]] if images else []),
        test_labels=([VIDEO_LABELS[1]] if videos else []) + ([IMAGE_LABELS[1]] if images else []),
        images_dir=outside(data.get("images_dir"), "data.images_dir", root) if images else None,
        test_dir=outside(data.get("test_dir"), "data.test_dir", root) if images else None,
        pretrain_init=outside(eff["pretrain"]["init"], "pretrain.init", root),
        published_model=(outside(eff["compare"]["published_model"], "compare.published_model", root)
                         if source != "demo" else None),
        firmware_libraries=library_pins(eff["firmware"]["claims"], root),
        calibration_model=outside(eff["firmware"]["calibration_model"], "firmware.calibration_model", root),
        crossval_metrics=CROSSVAL if source != "demo" else None,
    )
