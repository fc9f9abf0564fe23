"""What params.yaml says about the data, in file names: which kind of source, which videos,
which frame shards, which labels. The stage table (stages.py) refers to these by name."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import params as params_mod
from ..errors import PipelineError
from ..naming import VIDEO_NAME, demo_video_names, list_videos

DEMO_TRUTH = "data/demo/truth.csv"
IMAGE_SETS = ("train", "test")


@dataclass
class Layout:
    root: Path
    source: str                       # demo | videos | images
    videos: dict[str, dict[str, str]]  # video name -> {"path": file}: one extract_frames job each
    demo_videos: list[str]            # render_demo's outputs
    shards: list[str]                 # every frame shard (.npy; each has a .csv index beside it)
    train_shards: list[str]           # what pretraining and cross-validation see
    indexes: list[str]
    labels: str | None                # annotate's labels source (a CSV or class folders)
    images_dir: str | None
    test_dir: str | None
    pretrain_init: str | None
    published_model: str | None
    firmware_libraries: str
    calibration_model: str | None

    # Flags the table's `when` names.
    @property
    def always(self) -> bool:
        return True

    @property
    def from_videos(self) -> bool:
        return self.source in ("demo", "videos")

    @property
    def demo(self) -> bool:
        return self.source == "demo"

    @property
    def images(self) -> bool:
        return self.source == "images"

    @property
    def compare(self) -> bool:
        return self.images and self.published_model is not None

    def image_shard(self, part: str, suffix: str = ".npy") -> str:
        return f"data/frames/images-{part}{suffix}"


def video_items(params: dict, root: Path) -> dict[str, dict[str, str]]:
    """Raw videos by name: the rendered demo videos, or the files in data.videos_dir."""
    data = params["data"]
    if data["source"] == "demo":
        return {n: {"path": f"data/demo/videos/{n}.mp4"} for n in demo_video_names(params["demo"]["videos"])}
    if data["source"] != "videos":
        return {}
    folder = Path(data["videos_dir"])
    videos = list_videos(root / folder)
    if not videos:
        raise PipelineError(f"{folder}: no videos found (data.source is videos); put your videos there "
                            f"or set data.source: demo")
    items: dict[str, dict[str, str]] = {}
    for v in videos:
        if not VIDEO_NAME.match(v.stem):
            raise PipelineError(f"{v}: rename it: video names may hold letters, digits, '.', '_' and '-' only")
        if v.stem in items:
            raise PipelineError(f"{v}: two videos named {v.stem} (different extensions)")
        items[v.stem] = {"path": (folder / v.name).as_posix()}
    return items


def layout(params: dict, root: Path) -> Layout:
    """The layout for params as written in params.yaml (the recipe applied where it decides)."""
    eff = params_mod.effective(params)
    data = params["data"]
    videos = video_items(params, root)
    source = data["source"]
    if source == "images":
        shards = [f"data/frames/images-{part}.npy" for part in IMAGE_SETS]
        train_shards = shards[:1]  # the test folder must not shape the model, even unlabelled
    else:
        shards = [f"data/frames/{name}.npy" for name in videos]
        train_shards = shards
    labels = DEMO_TRUTH if source == "demo" else (data["labels"] if source == "videos" else None)
    return Layout(
        root=root, source=source, videos=videos,
        demo_videos=[v["path"] for v in videos.values()] if source == "demo" else [],
        shards=shards, train_shards=train_shards, indexes=[s[: -len(".npy")] + ".csv" for s in shards],
        labels=labels,
        images_dir=data.get("images_dir") if source == "images" else None,
        test_dir=data.get("test_dir") if source == "images" else None,
        pretrain_init=eff["pretrain"]["init"],
        published_model=eff["compare"]["published_model"] if source == "images" else None,
        firmware_libraries=eff["firmware"]["libraries"],
        calibration_model=eff["firmware"]["calibration_model"],
    )
