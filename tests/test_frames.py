"""The frames stage: counts, sizes, ids, determinism, other video formats, and bad files."""
import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import run_script, tiny_params, write_params
from maskinspect.data.frames import load_shards, read_index
from maskinspect.errors import PipelineError
from maskinspect.data.video import ffmpeg_exe


def make_video(path, *, size="320x240", rate=25, seconds=2, codec="mpeg4", extra=()):
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi",
                    "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}", "-c:v", codec, *extra, "-y",
                    str(path)], check=True)
    return path


@pytest.fixture()
def work(tmp_path):
    write_params(tmp_path / "params.yaml", tiny_params())
    return tmp_path


def extract(work, video, *, check=True, params=None):
    if params is not None:
        write_params(work / "params.yaml", params)
    return run_script("extract_frames.py", "--video", video, "--frames", "out/v.npy", "--index", "out/v.csv",
                      "--name", Path(video).stem, cwd=work,
                      check=check)


def test_demo_shards_hold_every_frame_at_the_stored_size(demo_data):
    params = tiny_params()
    frames = load_shards(sorted((demo_data / "frames").glob("*.npy")))
    per_video = int(params["demo"]["seconds"] * params["demo"]["fps"])
    assert frames.images.shape == (2 * per_video, 64, 64, 3) and frames.images.dtype == np.uint8
    assert frames.ids[:2] == ["demo-00-000000", "demo-00-000001"]
    assert frames.times[per_video - 1] == pytest.approx((per_video - 1) / params["demo"]["fps"])
    rows = read_index(demo_data / "frames" / "demo-01.csv")
    assert [r["video"] for r in rows] == ["demo-01"] * per_video


def random_shards(folder: Path, sizes, seed: int):
    """Shards v0, v1, ... of random 8 px frames, `sizes` frames each; their paths and every frame in order."""
    from maskinspect.data.frames import write_shard

    rng = np.random.default_rng(seed)
    parts = [rng.integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8) for n in sizes]
    paths = []
    for k, part in enumerate(parts):
        write_shard(folder / f"v{k}.npy", folder / f"v{k}.csv", f"v{k}", part, range(len(part)), [None] * len(part))
        paths.append(folder / f"v{k}.npy")
    return paths, np.concatenate(parts)


def test_shards_stay_mapped_and_any_frames_are_read_from_the_right_shard(tmp_path):
    paths, whole = random_shards(tmp_path, (5, 1, 7), seed=0)
    frames = load_shards(paths)
    assert all(isinstance(s, np.memmap) for s in frames.shards)
    positions = [12, 0, 5, 4, 6, 12, 5]     # across shard edges, repeated, out of order
    assert np.array_equal(frames.rows(positions), whole[positions])
    assert np.array_equal(frames.take(["v2-000006", "v1-000000", "v0-000000"]), whole[[12, 5, 0]])
    assert np.array_equal(frames.images, whole) and not isinstance(frames.images, np.memmap)
    assert np.array_equal(load_shards(paths, mmap=False).images, whole)


def test_a_frame_at_a_time_is_read_from_the_files_and_a_short_shard_is_named(tmp_path):
    """Frames[i] reads one frame from its shard's file (pretrain's pass over every frame), never
    the whole store; past the end is an IndexError; a shard cut short is one line naming it."""
    paths, whole = random_shards(tmp_path, (3, 1, 4), seed=1)
    frames = load_shards(paths)
    assert all(np.array_equal(frames[i], whole[i]) for i in range(len(whole)))
    assert frames._images is None  # nothing read but the frames asked for
    for outside in (len(whole), -1):
        with pytest.raises(IndexError):
            frames[outside]
    last = paths[2].read_bytes()
    paths[2].write_bytes(last[:-10])  # cut after the maps were made: the file no longer holds frame 7
    with pytest.raises(PipelineError, match=r"v2\.npy: shorter than its header says"):
        frames[7]


# The tiny demo's bytes, the same on every x86-64 machine: the renderer draws from a seed, and
# ffmpeg and x264 run at one fixed instruction set (maskinspect/data/video.py). A change here is a
# deliberate change to the renderer or the encoder (update the hashes and say why), or a result
# that depends on the machine: a reproducibility bug.
TINY_DEMO_SHA256 = {
    "videos/demo-00.mp4": "404cb9eed0eb2c0e7482d3e27a6995224f71bdc79de9e9f375710022a98204dc",
    "videos/demo-01.mp4": "3593bbf20b17536015ca70d8d50fa90d0bce9b92b0c28d10a50a675ef88ba343",
    "truth.csv": "aa404152a56dd8b3233700eb9bfb43d9437609978ae719944d530d054bfebf25",
    "frames/demo-00.npy": "2d92ce36d233a0d1d4b46626a9fa51a186c0d4fa9170e313a32c2a6c9832be06",
    "frames/demo-00.csv": "6cdc97514657721139496fdc98268efbac1d9f44476ca85fda340907f26826df",
    "frames/demo-01.npy": "d40afc7b86fef3109022f6456e5f0e4a6d4aa8d2c3a92058ff22561e9ac30b65",
    "frames/demo-01.csv": "396a0de30f18d0f89311934c41ec73c12da3bfd0e8f51c00e1b2f0bafd2cd254",
}


def test_tiny_demo_has_the_same_bytes_on_every_machine(demo_data):
    got = {name: hashlib.sha256((demo_data / name).read_bytes()).hexdigest() for name in TINY_DEMO_SHA256}
    assert got == TINY_DEMO_SHA256


def test_same_video_same_bytes(demo_data, work):
    video = sorted((demo_data / "videos").glob("*.mp4"))[0]
    extract(work, video)
    first = [hashlib.sha256((work / "out" / n).read_bytes()).hexdigest() for n in ("v.npy", "v.csv")]
    extract(work, video)
    assert [hashlib.sha256((work / "out" / n).read_bytes()).hexdigest() for n in ("v.npy", "v.csv")] == first
    assert first[0] == hashlib.sha256((demo_data / "frames" / f"{video.stem}.npy").read_bytes()).hexdigest()


def test_sampling_rate_keeps_source_frame_numbers(work):
    video = make_video(work / "clip.avi", rate=25, seconds=2)
    extract(work, video, params=tiny_params(**{"frames.fps": 5, "frames.size": 32}))
    rows = read_index(work / "out" / "v.csv")
    assert [int(r["frame"]) for r in rows] == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]
    assert rows[3]["frame_id"] == "clip-000015" and float(rows[3]["time"]) == pytest.approx(0.6)
    assert np.load(work / "out" / "v.npy").shape == (10, 32, 32, 3)


@pytest.mark.parametrize("name,size,rate,codec,extra", [
    ("mpeg4.avi", "320x240", 25, "mpeg4", ()),
    ("mjpeg.mov", "160x120", 30, "mjpeg", ("-pix_fmt", "yuvj420p")),
    ("portrait.mp4", "180x320", 15, "libx264", ("-pix_fmt", "yuv420p")),
])
def test_other_sizes_codecs_and_rates(work, name, size, rate, codec, extra):
    video = make_video(work / name, size=size, rate=rate, seconds=1, codec=codec, extra=extra)
    extract(work, video)
    frames = np.load(work / "out" / "v.npy")
    assert frames.shape == (rate, 64, 64, 3)
    assert frames.std() > 10  # real picture content, not a blank


def test_center_crop_keeps_the_middle(work):
    # Left third red, middle third green, right third blue: a centred square of a 3:1 frame is all green.
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error",
                    "-f", "lavfi", "-i", "color=red:size=60x60:rate=5:duration=1",
                    "-f", "lavfi", "-i", "color=green:size=60x60:rate=5:duration=1",
                    "-f", "lavfi", "-i", "color=blue:size=60x60:rate=5:duration=1",
                    "-filter_complex", "hstack=3", "-c:v", "libx264", "-pix_fmt", "yuv444p", "-crf", "0",
                    "-y", str(work / "rgb.mp4")], check=True)
    extract(work, work / "rgb.mp4", params=tiny_params(**{"frames.size": 16}))
    mean = np.load(work / "out" / "v.npy").reshape(-1, 3).mean(0)
    assert mean[1] > 100 and mean[0] < 20 and mean[2] < 20


def bad_file_cases(tmp_path, good_video):
    data = good_video.read_bytes()
    cases = {}
    (tmp_path / "empty.mp4").write_bytes(b"")
    cases["empty.mp4"] = "is empty (0 bytes)"
    (tmp_path / "notes.mp4").write_text("these are not the frames you are looking for\n" * 50)
    cases["notes.mp4"] = "not a readable video"
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) * 2 // 5])
    cases["truncated.mp4"] = "truncated"
    corrupt = bytearray(data)
    rng = np.random.default_rng(0)
    middle = len(corrupt) // 2
    corrupt[middle:middle + 4000] = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    (tmp_path / "corrupt.mp4").write_bytes(bytes(corrupt))
    cases["corrupt.mp4"] = "corrupt"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi",
                    "-i", "sine=frequency=440:duration=1", "-c:a", "aac", "-y", str(tmp_path / "audio.mp4")],
                   check=True)
    cases["audio.mp4"] = "has no video stream"
    return cases


def test_bad_files_stop_with_one_line_and_no_output(work, demo_data):
    good = sorted((demo_data / "videos").glob("*.mp4"))[0]
    for name, expected in bad_file_cases(work, good).items():
        result = extract(work, work / name, check=False)
        assert result.returncode == 1, name
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (name, lines)
        assert lines[0].startswith(f"extract_frames: error: {work / name}: ") and expected in lines[0], lines[0]
        assert not (work / "out").exists() or not any((work / "out").iterdir()), name
    missing = extract(work, work / "nowhere.mp4", check=False)
    assert missing.returncode == 1 and "no such file" in missing.stderr


@pytest.mark.parametrize("codec,extra", [("libx264", ("-pix_fmt", "yuv420p", "-g", "50")), ("mpeg4", ("-g", "30"))])
def test_frames_found_by_seeking_are_those_of_a_decode_from_the_start(tmp_path, codec, extra):
    """camera_frames seeks to the segments around the frames it needs; the pixels must be the
    same as decoding the whole video. Frames far apart (separate seeks), adjacent, first, last."""
    from maskinspect.data.video import frames_at, frames_by_number

    video = make_video(tmp_path / f"v.{'mp4' if codec == 'libx264' else 'avi'}", rate=25, seconds=30,
                       codec=codec, extra=extra)
    wanted = [0, 1, 37, 312, 313, 340, 620, 749]
    whole = frames_by_number(video, wanted, 96, "center")
    sought = frames_at(video, {n: n / 25 for n in wanted}, 96, "center")
    assert sorted(sought) == wanted
    for n in wanted:
        assert np.array_equal(sought[n], whole[n]), f"frame {n} differs"
    assert len({whole[n].tobytes() for n in wanted}) == len(wanted)  # testsrc2 moves: a wrong frame would show
