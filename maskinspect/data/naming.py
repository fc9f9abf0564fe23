"""Names shared by the graph (workflow/) and the stages: videos, frames, demo files. No imports
beyond the standard library, so reading the graph stays cheap."""
from __future__ import annotations

import re
from pathlib import Path

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mjpeg", ".mpg", ".mpeg", ".ts")
VIDEO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a video's name becomes part of file names and ids


def demo_video_names(count: int) -> list[str]:
    return [f"demo-{i:02d}" for i in range(count)]


def frame_id(video: str, frame: int) -> str:
    """`A-012430`: video name, dash, source frame number (the published naming)."""
    return f"{video}-{frame:06d}"


def list_videos(folder: str | Path) -> list[Path]:
    """The videos of a raw-video folder, sorted by name (hidden files ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in VIDEO_SUFFIXES)
